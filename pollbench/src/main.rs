//! pollbench: the benchmark pipeline. `pollbench suite NAME` runs every cell of a suite against a
//! fresh bench-server with `load-gen run` (both as processes), `pollbench report DIR` rebuilds a run
//! directory's report, and `pollbench compare OLD NEW` compares two runs cell by cell.

mod binaries;
mod cell;
mod charts;
mod compare;
mod process;
mod report;
mod suite;
mod sweep_charts;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The pollbench benchmark pipeline: suites of cells (backend x load), their reports and their
/// comparison.
#[derive(Parser)]
#[command(name = "pollbench", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a benchmark suite (scripts/suites/NAME.toml): every cell against a fresh bench-server,
    /// results in results/<UTC time>-<host>-<suite>/ with meta.json, cells/ and report.md.
    ///
    /// Exit status: 0 when every cell that could run here completed; 1 if any failed; 2 for a
    /// suite that cannot be found or read; 130 when interrupted (the report of the cells completed
    /// is written).
    Suite(SuiteArgs),
    /// Rebuild report.md of a results directory from its data.
    Report(ReportArgs),
    /// Compare two results directories cell by cell: msgs/s and p99 deltas, with regressions flagged
    /// beyond the thresholds. Prints a Markdown table.
    ///
    /// Exit status: 0 when no cell regressed; 1 when one did (or a directory cannot be read).
    Compare(compare::CompareArgs),
}

fn main() {
    let cli: Cli = pollbench_common::parse_args_or_exit("pollbench");
    let code = match cli.command {
        Command::Suite(args) => run_suite(args),
        Command::Compare(args) => compare::run(args),
        Command::Report(args) => match report::write_report(&args.dir) {
            Ok(p) => {
                println!("report: {}", p.display());
                0
            }
            Err(e) => {
                eprintln!("pollbench: {e}");
                1
            }
        },
    };
    std::process::exit(code);
}

#[derive(Parser, Debug)]
struct SuiteArgs {
    /// A suite name (quick, full, smoke: scripts/suites/NAME.toml) or a path to a .toml file.
    #[arg(value_name = "SUITE")]
    suite: String,

    /// Where run directories go. [default: results/ beside scripts/]
    #[arg(long, value_name = "DIR")]
    results: Option<PathBuf>,
}

#[derive(Parser, Debug)]
struct ReportArgs {
    /// A run directory written by `pollbench suite`.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

fn run_suite(args: SuiteArgs) -> i32 {
    // From here on, SIGINT/SIGTERM end the current cell (its processes killed) and the suite
    // writes the report of the cells it completed; a panic kills the children too.
    process::install_cleanup();
    let fail = |msg: String| {
        eprintln!("pollbench: {msg}");
        1
    };
    // A suite that cannot be found or read is bad input: one line, exit 2, nothing started.
    let bad_input = |msg: String| {
        eprintln!("pollbench: {msg}");
        2
    };
    let path = match suite::Suite::locate(&args.suite) {
        Ok(p) => p,
        Err(e) => return bad_input(e),
    };
    let suite = match suite::Suite::load(&path) {
        Ok(s) => s,
        Err(e) => return bad_input(e),
    };
    let bins = match binaries::Binaries::find_or_build() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let name = path
        .file_stem()
        .map_or("suite".into(), |s| s.to_string_lossy().to_string());
    let results = args.results.unwrap_or_else(|| {
        // results/ beside the scripts/ the suite came from, or here.
        path.canonicalize()
            .ok()
            .and_then(|p| {
                p.ancestors()
                    .find(|a| a.join("scripts").is_dir())
                    .map(|a| a.join("results"))
            })
            .unwrap_or_else(|| PathBuf::from("results"))
    });
    let started = std::time::SystemTime::now();
    let stamp = humantime::format_rfc3339_seconds(started)
        .to_string()
        .replace([':', '-'], "");
    let dir = match report::new_run_dir(&results, &stamp, &name) {
        Ok(d) => d,
        Err(e) => {
            return fail(format!(
                "cannot create a run directory in {}: {e}",
                results.display()
            ))
        }
    };
    let cells = suite.cells();
    let suite_text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut meta = report::collect_meta(
        &name,
        suite_text,
        humantime::format_rfc3339_seconds(started).to_string(),
        cells.clone(),
    );
    eprintln!(
        "suite {name}: {} cells, results in {}",
        cells.len(),
        dir.display()
    );
    // Written before the first cell and after every one, so an interrupted suite (even one
    // interrupted in its first cell) still leaves a directory its report can be built from.
    let save_meta = |meta: &pollbench_schema::results::Meta| {
        pollbench_schema::file::write_json_atomically(&dir.join("meta.json"), meta)
            .map_err(|e| format!("cannot write meta.json: {e}"))
    };
    if let Err(e) = save_meta(&meta) {
        return fail(e);
    }
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new(cells.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "[{elapsed_precise}] {wide_bar} {pos}/{len} cells, {eta} left  {msg}",
            )
            .expect("valid template"),
        );
        bar
    });
    let mut failed = 0;
    let mut interrupted = false;
    for (i, cell) in cells.iter().enumerate() {
        if let Some(bar) = &bar {
            bar.set_message(cell.id.clone());
        }
        let outcome = match cell::run_cell(cell, &suite, &bins, &dir.join("cells")) {
            Ok(outcome) => outcome,
            Err(_) => {
                interrupted = true;
                break;
            }
        };
        let line = format!(
            "[{}/{}] {}: {}{}",
            i + 1,
            cells.len(),
            cell.id,
            outcome.status,
            outcome
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        match &bar {
            Some(bar) => {
                bar.println(line);
                bar.inc(1);
            }
            None => eprintln!("{line}"),
        }
        failed += usize::from(outcome.status == pollbench_schema::results::CellStatus::Failed);
        meta.outcomes.push(outcome);
        if let Err(e) = save_meta(&meta) {
            return fail(e);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match report::write_report(&dir) {
        Ok(p) => println!("report: {}", p.display()),
        Err(e) => return fail(e),
    }
    if interrupted {
        eprintln!(
            "pollbench: interrupted after {} of {} cells; the report covers those",
            meta.outcomes.len(),
            cells.len()
        );
        return 130;
    }
    if failed > 0 {
        eprintln!(
            "pollbench: {failed} of {} cells failed (see the report)",
            cells.len()
        );
        return 1;
    }
    0
}

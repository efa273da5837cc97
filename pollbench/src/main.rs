//! pollbench: the benchmark pipeline. `pollbench suite NAME` runs every cell of a suite against a
//! fresh bench-server with `load-gen run` (both as processes), `pollbench report DIR` rebuilds a run
//! directory's report, and `pollbench compare OLD NEW` compares two runs cell by cell.

mod analysis;
mod place;
mod render;
mod run;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use pollbench_schema::results::Meta;

/// The pollbench benchmark pipeline: suites of cells (backend x load), their reports and their
/// comparison.
#[derive(Parser)]
#[command(name = "pollbench", version = pollbench_common::VERSION, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a benchmark suite (scripts/suites/NAME.toml): every cell against a fresh bench-server,
    /// results in results/<UTC time>-<host>-<suite>/ with meta.json, suite.toml (the suite as it
    /// ran), cells/, summary.json, summary.csv and report.md.
    ///
    /// Exit status: 0 when every cell that could run here completed; 1 if any failed; 2 for a
    /// suite that cannot be found or read; 130 when interrupted (the report of the cells completed
    /// is written).
    Suite(SuiteArgs),
    /// Rebuild report.md of a results directory from its data (and summary.json, summary.csv, the
    /// charts, and suite.toml where the run has none).
    Report(ReportArgs),
    /// Compare two results directories cell by cell: msgs/s and p99 deltas, with regressions flagged
    /// beyond the thresholds. Prints a Markdown table.
    ///
    /// Exit status: 0 when no cell regressed; 1 when one did (or a directory cannot be read).
    Compare(analysis::compare::CompareArgs),
    /// Tally repeated runs of one suite: in each, every column against its sweep's first column
    /// on each metric, counted over the runs (how often a planted difference was found, how often
    /// an A/A pair read no clear difference). Prints a Markdown table. `scripts/calibrate` runs the
    /// calibrate suite and this.
    ///
    /// Exit status: 0; 1 when a directory's summary.json cannot be read.
    Calibration(analysis::calibration::CalibrationArgs),
}

fn main() {
    let cli: Cli = pollbench_common::parse_args_or_exit("pollbench");
    let code = match cli.command {
        Command::Suite(args) => run_suite(args),
        Command::Compare(args) => analysis::compare::run(args),
        Command::Calibration(args) => analysis::calibration::run(args),
        Command::Report(args) => match rebuild_report(&args.dir) {
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
    /// A suite name (quick, full, smoke, calibrate, completion, ...: scripts/suites/NAME.toml)
    /// or a path to a .toml file; a run directory's suite.toml reruns that run's suite as it ran.
    #[arg(value_name = "SUITE")]
    suite: String,

    /// Where run directories go. [default: results/ beside scripts/]
    #[arg(long, value_name = "DIR")]
    results: Option<PathBuf>,

    /// Run only this sweep of the suite (repeat the option for several), every round as the
    /// suite says: to rerun one part of a long suite. The run directory is named after the suite
    /// and the sweeps (…-full-accept), and meta.json and the report say which ran.
    #[arg(long = "sweep", value_name = "NAME")]
    sweeps: Vec<String>,

    /// The command of the suite's column `external:NAME`, a server this repository does not
    /// build (liburing's example echo server, say): words split at spaces, `{port}` where the
    /// port goes; it must listen on 127.0.0.1 at that port, and be the server itself (not a
    /// script that starts it in the background: its CPU time and its stop are the process
    /// started's). It runs in bench-server's place, one thread pinned to the server's core,
    /// against the same load-gen; its CPU time is read from /proc at every whole second. Without this option (or the suite's `[external]` table, which
    /// a run directory's suite.toml writes) the column's cells are skipped, saying so. Repeat for
    /// several.
    #[arg(long = "external", value_name = "NAME=COMMAND")]
    externals: Vec<String>,
}

/// `pollbench report`: suite.toml where the run has none, summary.json and summary.csv, then
/// report.md and its charts, from the run's meta.json and its cells' files; the path of report.md.
fn rebuild_report(dir: &Path) -> Result<PathBuf, String> {
    let meta = Meta::read(dir)?;
    run::suite::write_as_ran(dir, &meta)?;
    let summary = analysis::summary::write(dir, &meta)?;
    render::report::write(dir, &meta, &summary)
}

#[derive(Parser, Debug)]
struct ReportArgs {
    /// A run directory written by `pollbench suite`.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// `pollbench suite`: exit 0 when every cell that could run completed, 1 when one failed or the
/// run directory could not be written, 2 for a suite that cannot be found or read, 130 when
/// interrupted.
fn run_suite(args: SuiteArgs) -> i32 {
    // From here on, SIGINT/SIGTERM end the current cell (its processes killed) and the suite
    // writes the report of the cells it completed; a panic kills the children too.
    run::process::install_cleanup();
    // A suite that cannot be found or read is bad input: one line, exit 2, nothing started.
    let (path, suite) = match run::suite::Suite::locate(&args.suite).and_then(|path| {
        let mut suite = run::suite::Suite::load(&path)?;
        if !args.sweeps.is_empty() {
            suite.only(&args.sweeps)?;
        }
        suite.use_externals(&args.externals)?;
        Ok((path, suite))
    }) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("pollbench: {e}");
            return 2;
        }
    };
    let outcome = run::binaries::Binaries::find_or_build().and_then(|mut bins| {
        let mut run =
            run::runner::SuiteRun::start(&path, &suite, &args.sweeps, &mut bins, args.results)?;
        let interrupted = run.run_cells(&suite, &bins)?;
        run.finish(interrupted)
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pollbench: {e}");
            1
        }
    }
}

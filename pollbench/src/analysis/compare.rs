//! `pollbench compare OLD NEW`: per-cell deltas between two run directories, with regressions flagged
//! beyond a threshold, for tuning an event loop change by change.
//!
//! Cells are matched by id. A cell regresses when its throughput falls by more than the throughput
//! threshold, its p99 grows by more than the latency threshold, or it completed in OLD and not in
//! NEW. Figures are the medians of summary.json (computed for runs written before it); when both runs
//! ran their cells in several rounds, a delta beyond the threshold whose medians' intervals still
//! overlap is reported as noise, not as a regression.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Parser;
use pollbench_common::{human_count, parse_percent};
use serde::Serialize;

use pollbench_common::human_us;
use pollbench_schema::file::read_json;
use pollbench_schema::results::{CellStatus, Meta};
use pollbench_schema::summary::{Estimate, Summary};

#[derive(Parser, Debug)]
pub struct CompareArgs {
    /// The baseline run directory (written by `pollbench suite`).
    #[arg(value_name = "OLD")]
    old: PathBuf,

    /// The run to judge against it.
    #[arg(value_name = "NEW")]
    new: PathBuf,

    /// A cell regresses when its msgs/s fall by more than this.
    #[arg(long, default_value = "10%", value_parser = parse_percent, value_name = "PERCENT")]
    threshold: f64,

    /// A cell regresses when its p99 latency grows by more than this (tails are noisier than
    /// throughput, hence the wider default).
    #[arg(long, default_value = "25%", value_parser = parse_percent, value_name = "PERCENT")]
    latency_threshold: f64,

    /// Also write the comparison as JSON to FILE (atomically; schema pollbench.compare/1).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// One side of a cell: what the report shows for it.
#[derive(Serialize, Clone, Debug)]
struct Side {
    status: CellStatus,
    msgs_per_s: Option<f64>,
    p99_us: Option<f64>,
    /// The interval of the median over the cell's rounds (summary.json's lo and hi: 95%, or the
    /// extremes with fewer than 6 rounds), when it ran more than once.
    msgs_per_s_range: Option<(f64, f64)>,
    p99_us_range: Option<(f64, f64)>,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Verdict {
    Regression,
    Improvement,
    /// Beyond a threshold, but the two medians' intervals overlap.
    Noise,
    Same,
    /// Failed or skipped in both.
    NotComparable,
}

#[derive(Serialize)]
struct CellDelta {
    id: String,
    old: Side,
    new: Side,
    /// new / old - 1
    msgs_per_s_change: Option<f64>,
    p99_change: Option<f64>,
    verdict: Verdict,
    why: String,
}

#[derive(Serialize)]
struct Comparison {
    schema: &'static str,
    old: PathBuf,
    new: PathBuf,
    threshold: f64,
    latency_threshold: f64,
    cells: Vec<CellDelta>,
    only_in_old: Vec<String>,
    only_in_new: Vec<String>,
    regressions: usize,
}

/// A run's summary: its summary.json, or computed from its files for runs written before it.
fn summary_of(dir: &Path, meta: &Meta) -> Result<Summary, String> {
    let path = dir.join("summary.json");
    if path.exists() {
        read_json(&path)
    } else {
        crate::analysis::summary::summarize(dir, meta)
    }
}

fn load(dir: &Path) -> Result<(Meta, BTreeMap<String, Side>), String> {
    let meta = Meta::read(dir)?;
    let summary = summary_of(dir, &meta)?;
    let mut sides = BTreeMap::new();
    for cell in &meta.cells {
        let Some(outcome) = meta.outcome(&cell.id) else {
            continue; // never reached (an interrupted run)
        };
        let figures = summary.cell(&cell.id).filter(|_| outcome.is_ok());
        let median = |e: Option<Estimate>| e.map(|e| e.median);
        // The median's interval, as the report shows it: with a single run there is none.
        let interval = |e: Option<Estimate>| {
            e.filter(|_| figures.is_some_and(|f| f.rounds > 1))
                .map(|e| (e.lo, e.hi))
        };
        let msgs = figures.and_then(|f| f.msgs_per_s);
        let p99 = figures.and_then(|f| f.p99_us);
        sides.insert(
            cell.id.clone(),
            Side {
                status: outcome.status,
                msgs_per_s: median(msgs),
                p99_us: median(p99),
                msgs_per_s_range: interval(msgs),
                p99_us_range: interval(p99),
            },
        );
    }
    Ok((meta, sides))
}

fn overlap(a: Option<(f64, f64)>, b: Option<(f64, f64)>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a.0 <= b.1 && b.0 <= a.1)
}

fn judge(id: &str, old: &Side, new: &Side, args: &CompareArgs) -> CellDelta {
    let change = |o: Option<f64>, n: Option<f64>| match (o, n) {
        (Some(o), Some(n)) if o > 0.0 => Some(n / o - 1.0),
        _ => None,
    };
    let msgs = change(old.msgs_per_s, new.msgs_per_s);
    let p99 = change(old.p99_us, new.p99_us);
    let ok = CellStatus::Ok;
    let (verdict, why) = match (old.status == ok, new.status == ok) {
        (true, false) => (Verdict::Regression, format!("now {}", new.status)),
        (false, true) => (Verdict::Improvement, format!("was {}", old.status)),
        (false, false) => (Verdict::NotComparable, format!("{} in both", new.status)),
        (true, true) => {
            let mut worse = Vec::new();
            let mut better = Vec::new();
            let mut noise = Vec::new();
            if let Some(d) = msgs {
                let ranges = overlap(old.msgs_per_s_range, new.msgs_per_s_range);
                if d < -args.threshold {
                    if ranges { &mut noise } else { &mut worse }.push("msgs/s");
                } else if d > args.threshold {
                    if ranges { &mut noise } else { &mut better }.push("msgs/s");
                }
            }
            if let Some(d) = p99 {
                let ranges = overlap(old.p99_us_range, new.p99_us_range);
                if d > args.latency_threshold {
                    if ranges { &mut noise } else { &mut worse }.push("p99");
                } else if d < -args.latency_threshold {
                    if ranges { &mut noise } else { &mut better }.push("p99");
                }
            }
            if !worse.is_empty() {
                (Verdict::Regression, worse.join(", "))
            } else if !better.is_empty() {
                (Verdict::Improvement, better.join(", "))
            } else if !noise.is_empty() {
                (
                    Verdict::Noise,
                    format!("{}: the intervals overlap", noise.join(", ")),
                )
            } else {
                (Verdict::Same, String::new())
            }
        }
    };
    CellDelta {
        id: id.to_string(),
        old: old.clone(),
        new: new.clone(),
        msgs_per_s_change: msgs,
        p99_change: p99,
        verdict,
        why,
    }
}

fn side_text(s: &Side, value: Option<f64>, human: fn(f64) -> String) -> String {
    match value {
        Some(v) if s.status == CellStatus::Ok => human(v),
        _ => s.status.to_string(),
    }
}

fn percent(change: Option<f64>) -> String {
    change.map_or(String::new(), |d| format!("{:+.1}%", d * 100.0))
}

fn describe(meta: &Meta) -> String {
    format!(
        "suite {}, {}, commit {}, {} ({} cores)",
        meta.suite,
        meta.started_utc,
        meta.commit_text(),
        meta.cpu_model.as_deref().unwrap_or("unknown CPU"),
        meta.cores
    )
}

/// Run `pollbench compare`: 0 without regressions, 1 with at least one (or an unreadable run).
pub fn run(args: CompareArgs) -> i32 {
    let loaded = load(&args.old).and_then(|old| Ok((old, load(&args.new)?)));
    let ((old_meta, old), (new_meta, new)) = match loaded {
        Ok(v) => v,
        Err(e) => {
            eprintln!("pollbench: {e}");
            return 1;
        }
    };
    let comparison = Comparison::of(&args, &old, &new);
    print!("{}", comparison.markdown(&old_meta, &new_meta));
    if let Some(path) = &args.json {
        if let Err(e) = pollbench_schema::file::write_json_atomically(path, &comparison) {
            eprintln!("pollbench: cannot write {}: {e}", path.display());
            return 1;
        }
    }
    i32::from(comparison.regressions > 0)
}

impl Comparison {
    /// Every cell in both runs judged, and the cells only one of them has.
    fn of(
        args: &CompareArgs,
        old: &BTreeMap<String, Side>,
        new: &BTreeMap<String, Side>,
    ) -> Comparison {
        let cells: Vec<CellDelta> = old
            .iter()
            .filter_map(|(id, o)| Some(judge(id, o, new.get(id)?, args)))
            .collect();
        let only_in = |a: &BTreeMap<String, Side>, b: &BTreeMap<String, Side>| -> Vec<String> {
            a.keys().filter(|k| !b.contains_key(*k)).cloned().collect()
        };
        Comparison {
            schema: "pollbench.compare/1",
            old: args.old.clone(),
            new: args.new.clone(),
            threshold: args.threshold,
            latency_threshold: args.latency_threshold,
            regressions: cells
                .iter()
                .filter(|c| c.verdict == Verdict::Regression)
                .count(),
            cells,
            only_in_old: only_in(old, new),
            only_in_new: only_in(new, old),
        }
    }

    fn count(&self, v: Verdict) -> usize {
        self.cells.iter().filter(|c| c.verdict == v).count()
    }

    /// The comparison as people read it: the two runs, a table row per cell, the tally.
    fn markdown(&self, old_meta: &Meta, new_meta: &Meta) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "OLD {}: {}", self.old.display(), describe(old_meta));
        let _ = writeln!(out, "NEW {}: {}", self.new.display(), describe(new_meta));
        if (&old_meta.cpu_model, old_meta.cores, &old_meta.kernel)
            != (&new_meta.cpu_model, new_meta.cores, &new_meta.kernel)
        {
            let _ = writeln!(
                out,
                "note: the runs come from different machines or kernels; deltas mix both changes"
            );
        }
        let _ = writeln!(
            out,
            "\n| cell | msgs/s OLD → NEW | change | p99 OLD → NEW | change | verdict |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for c in &self.cells {
            out.push_str(&c.row());
        }
        let _ = writeln!(
            out,
            "\n{} cells in both: {} regressed, {} improved, {} within noise, {} unchanged \
             (thresholds: msgs/s -{:.0}%, p99 +{:.0}%), {} not comparable.",
            self.cells.len(),
            self.regressions,
            self.count(Verdict::Improvement),
            self.count(Verdict::Noise),
            self.count(Verdict::Same),
            self.threshold * 100.0,
            self.latency_threshold * 100.0,
            self.count(Verdict::NotComparable),
        );
        if !self.only_in_old.is_empty() {
            let _ = writeln!(out, "Only in OLD: {}", self.only_in_old.join(", "));
        }
        if !self.only_in_new.is_empty() {
            let _ = writeln!(out, "Only in NEW: {}", self.only_in_new.join(", "));
        }
        out
    }
}

impl CellDelta {
    /// The cell's table row.
    fn row(&self) -> String {
        let human_rate: fn(f64) -> String = human_count;
        let human_lat: fn(f64) -> String = human_us;
        let verdict = match self.verdict {
            Verdict::Regression => format!("**REGRESSION** ({})", self.why),
            Verdict::Improvement => format!("better ({})", self.why),
            Verdict::Noise => format!("noise ({})", self.why),
            Verdict::Same => String::new(),
            Verdict::NotComparable => self.why.clone(),
        };
        format!(
            "| {} | {} → {} | {} | {} → {} | {} | {verdict} |\n",
            self.id,
            side_text(&self.old, self.old.msgs_per_s, human_rate),
            side_text(&self.new, self.new.msgs_per_s, human_rate),
            percent(self.msgs_per_s_change),
            side_text(&self.old, self.old.p99_us, human_lat),
            side_text(&self.new, self.new.p99_us, human_lat),
            percent(self.p99_change),
        )
    }
}

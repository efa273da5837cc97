//! The report's header: the title, the machine, how the cells ran, what else the machine did,
//! and where the processes ran.

use std::fmt::Write as _;
use std::path::Path;

use pollbench_schema::results::{Meta, SuiteSettings};

use super::markdown::Markdown;
use crate::analysis::stats::interval_in_words;
use crate::run::suite::RUN_SUITE_FILE;

impl Markdown<'_> {
    /// The title, the machine, and how to read what follows.
    pub(super) fn header(&mut self) {
        let SuiteSettings { repeat, pin } = suite_settings(self.run.meta);
        self.title_and_machine();
        self.rerun();
        self.how_cells_ran(repeat);
        self.disturbance();
        self.placement(pin);
        self.libkqueue();
    }

    /// The title (the suite, the sweeps that ran, when) and the machine the suite ran on.
    fn title_and_machine(&mut self) {
        let (md, meta) = (&mut self.md, self.run.meta);
        let _ = writeln!(
            md,
            "# pollbench: suite `{}`{}, {}\n",
            meta.suite,
            chosen_sweeps(meta).map_or(String::new(), |s| format!(" ({s} only)")),
            meta.started_utc
        );
        // First of all, whether the run can be reproduced from its commit.
        if let Some(warning) = reproducibility(meta) {
            let _ = writeln!(md, "{warning}\n");
        }
        let _ = writeln!(
            md,
            "Machine: {} ({} cores, {:.1} GiB), Linux {}, {}, open-files limit {}. Commit {}.\n",
            meta.cpu_model.as_deref().unwrap_or("unknown CPU"),
            meta.cores,
            meta.memory_bytes.unwrap_or(0) as f64 / (1u64 << 30) as f64,
            meta.kernel.as_deref().unwrap_or("?"),
            meta.rustc.as_deref().unwrap_or("rustc ?"),
            meta.fd_limit.map_or("?".into(), |l| l.to_string()),
            meta.commit_text(),
        );
    }

    /// The command that reruns the suite as it ran, from the run directory's suite.toml; or why
    /// there is none.
    fn rerun(&mut self) {
        let (md, meta) = (&mut self.md, self.run.meta);
        let _ = match crate::run::suite::as_ran(meta) {
            Ok(_) => writeln!(
                md,
                "To rerun it: `pollbench suite {}`{} ({RUN_SUITE_FILE} holds the suite as it \
                 ran{}).{}\n",
                rerun_path(self.run.dir),
                meta.git_commit.as_ref().map_or(String::new(), |_| format!(
                    " on a checkout of commit {}",
                    meta.short_commit()
                )),
                if meta.sweeps.is_some() {
                    ": only the sweeps that ran"
                } else {
                    ""
                },
                if meta.git_dirty == Some(true) {
                    " That checkout lacks the uncommitted changes this run was built with."
                } else {
                    ""
                },
            ),
            Err(why) => writeln!(md, "No {RUN_SUITE_FILE} reruns it: {why}.\n"),
        };
    }

    /// What a cell is, and how its runs (rounds, or `repeat` runs back to back) make its figures.
    fn how_cells_ran(&mut self, repeat: usize) {
        let (md, meta) = (&mut self.md, self.run.meta);
        let _ = writeln!(
            md,
            "Each cell: a fresh bench-server, then `load-gen run` against it; figures exclude the \
             warm-up. Latency in open loop runs from each message's intended send time (corrected \
             for coordinated omission). Data: `cells/`.\n"
        );
        if let Some(rounds) = &meta.rounds {
            let began = rounds.order.len();
            // A run interrupted in a round began more rounds than its cells completed, or fewer
            // than it was to run, or left cells without an outcome (interrupted in round 1).
            let (n, most) = completed_rounds(meta).unwrap_or((began, began));
            let whole = n == began && began >= repeat && meta.outcomes.len() >= meta.cells.len();
            let ran = if whole {
                format!("Every cell ran once in each of {n} rounds.")
            } else {
                format!(
                    "The run was interrupted in round {began}: each cell's figures are from the \
                     rounds it completed ({}).",
                    if n == most {
                        format!("{n}")
                    } else {
                        format!("{n} or {most}")
                    }
                )
            };
            let order = if rounds.blocks.is_some() {
                "In a round each row of a sweep (the cells its verdicts compare) ran as a block, \
                 its cells back to back in a shuffled order, the blocks in a shuffled order"
            } else {
                "In a round the cells ran in an order shuffled per round"
            };
            let spread = if rounds.blocks.is_some() {
                "what is compared runs side by side in time, and a slow phase of the machine \
                 spreads over the rounds"
            } else {
                "a slow phase of the machine spreads over every cell"
            };
            let _ = writeln!(
                md,
                "{ran} {order} (seed {}; each round's order is \
                 in meta.json): {spread}. Each figure is the median over the rounds; [lo–hi] \
                 beside it is the interval of that median: {} (order statistics, \
                 distribution-free: from 6 rounds on the narrowest interval of 95% or more, below \
                 6 the extremes), and the charts draw it as error bars. A verdict compares two \
                 columns of a row that differ in one dimension (the server, or one of its settings, \
                 or one setting of the load; the same server twice is the A/A pair), pairing them round by round: the \
                 median of the per-round ratio a/b and its interval, a clear difference where the \
                 interval leaves out 1; a sweep's ratio chart draws them against its first column. \
                 The cells' ID.* files are the median round by msgs/s; a latency spectrum draws \
                 each cell's histogram of all its rounds' measured windows, merged.\n",
                rounds.seed,
                interval_in_words(n),
            );
            self.pairs_judged(n);
        } else if repeat > 1 {
            let _ = writeln!(
                md,
                "Every cell ran {repeat} times. Tables and charts show the median run by msgs/s; \
                 ±x% is the farthest any run's msgs/s was from that median.\n"
            );
        }
    }

    /// What else the machine did while the suite ran: stolen time, context switches, load.
    fn disturbance(&mut self) {
        let (md, meta) = (&mut self.md, self.run.meta);
        if let Some(d) = &meta.disturbance {
            let rounds = meta.rounds.as_ref().map_or(String::new(), |r| {
                let shares: Vec<String> = r
                    .disturbance
                    .iter()
                    .map(|d| format!("{:.1}%", 100.0 * d.steal_share(meta.cores)))
                    .collect();
                if shares.is_empty() {
                    String::new()
                } else {
                    format!(" (by round: {})", shares.join(", "))
                }
            });
            let _ = writeln!(
                md,
                "The machine while it ran ({}): {:.1}% of CPU time stolen by the hypervisor{rounds}, \
                 {} context switches/s, load average {:.2} at the start and {:.2} at the end.\n",
                if d.wall_s < 120.0 {
                    format!("{:.1} s", d.wall_s)
                } else {
                    format!("{:.0} min", d.wall_s / 60.0)
                },
                100.0 * d.steal_share(meta.cores),
                pollbench_common::human_count(d.context_switches as f64 / d.wall_s.max(1e-9)),
                d.load_avg_start,
                d.load_avg_end,
            );
        }
    }

    /// Where the processes ran: `pin`ned to cores or not, and on which network and hosts.
    fn placement(&mut self, pin: bool) {
        let (md, meta) = (&mut self.md, self.run.meta);
        if pin {
            let _ = writeln!(
                md,
                "Pinned: the server's loops on the first cores, load-gen's threads on the cores after \
                 them (shared when none are left).\n"
            );
        }
        if let Some(hosts) = &meta.hosts {
            // Launched hosts: the machine line above is the runner's; these ran the programs.
            let _ = writeln!(
                md,
                "Network: {}.",
                meta.topology.as_deref().unwrap_or("hosts")
            );
            let _ = writeln!(
                md,
                "The machine above ran the suite runner only; the programs ran on these hosts:\n"
            );
            for h in hosts {
                let unknown = || "?".to_string();
                let _ = writeln!(
                    md,
                    "- {} (`{}`): {}, {} cores, {}",
                    h.role,
                    h.launch,
                    h.kernel.clone().unwrap_or_else(unknown),
                    h.cores.map_or_else(unknown, |c| c.to_string()),
                    h.cpu.clone().unwrap_or_else(unknown)
                );
            }
            md.push('\n');
        } else if let Some(topology) = &meta.topology {
            let _ = writeln!(
                md,
                "Network: {topology}. Not loopback: each connection crosses two veths and a bridge.\n"
            );
        }
        for (name, command) in meta.externals.iter().flatten() {
            let _ = writeln!(
                md,
                "**{name} (external)** is a server this repository does not build, run in \
                 bench-server's place as `{}` (`pollbench suite ... --external {name}=COMMAND`), \
                 one thread{}. It counts nothing for pollbench: its CPU time per message is its CPU \
                 time from /proc/PID/stat (all threads, in ticks of 10 ms: over a 2 s span about \
                 1% of a half-busy core) between the whole seconds inside load-gen's window, over \
                 load-gen's messages in that span; it has no system calls, events or wake-ups.\n",
                command.join(" "),
                if pin { ", pinned to the server's core" } else { "" }
            );
        }
    }

    /// What kqueue is on Linux, where the suite ran it.
    fn libkqueue(&mut self) {
        let meta = self.run.meta;
        if meta.cells.iter().any(|c| c.label.contains("(libkqueue)")) {
            let _ = writeln!(
                self.md,
                "**kqueue (libkqueue)** is the kqueue backend on Linux through libkqueue, a translation \
                 layer that runs on epoll: its figures are epoll's plus that layer's cost, not native \
                 kqueue's (macOS, FreeBSD).\n"
            );
        }
    }
}

/// The suite's settings: as meta.json records them, or in runs from before it did, as the suite's
/// text says them (repeat 1, not pinned, where that text does not parse).
fn suite_settings(meta: &Meta) -> SuiteSettings {
    /// The settings' keys in a suite file, with the suite's defaults.
    #[derive(serde::Deserialize)]
    struct Written {
        #[serde(default = "one")]
        repeat: usize,
        #[serde(default)]
        pin: bool,
    }
    fn one() -> usize {
        1
    }
    meta.suite_settings.unwrap_or_else(|| {
        let written = toml::from_str(&meta.suite_file).unwrap_or(Written {
            repeat: 1,
            pin: false,
        });
        SuiteSettings {
            repeat: written.repeat,
            pin: written.pin,
        }
    })
}

/// What the report says first when a run cannot be reproduced from its commit, or may not be:
/// None only when the tree was known to be clean.
fn reproducibility(meta: &Meta) -> Option<String> {
    match meta.git_dirty {
        Some(false) => None,
        Some(true) => Some(format!(
            "**Not reproducible: built from a tree with uncommitted changes.** It ran commit {} \
             plus changes that nothing here records.",
            meta.short_commit()
        )),
        None => Some(
            "**Reproducibility unknown: it is not known whether the tree it was built from had \
             uncommitted changes** (git could not say when it ran)."
                .into(),
        ),
    }
}

/// The path of run directory `dir`'s suite.toml as `pollbench suite` takes it: from the results/
/// that holds the run (`results/RUN/suite.toml`, `results/CALIBRATION/RUN/suite.toml`), or
/// beside the run where no results/ does (`RUN/suite.toml`). Never the absolute path, so a
/// rebuilt report reads the same wherever the run directory is.
fn rerun_path(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let from = match dir
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "results"))
    {
        Some(results) => results.parent(),
        None => dir.parent(),
    }
    .unwrap_or(Path::new(""));
    let inside = dir.strip_prefix(from).unwrap_or(&dir);
    let parts: Vec<String> = inside
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .chain([RUN_SUITE_FILE.to_string()])
        .collect();
    parts.join("/")
}

/// "sweep `a`" or "sweeps `a`, `b`" when `--sweep` chose some of the suite's sweeps.
pub(super) fn chosen_sweeps(meta: &Meta) -> Option<String> {
    let sweeps = meta.sweeps.as_ref()?;
    let names: Vec<String> = sweeps.iter().map(|s| format!("`{s}`")).collect();
    let noun = if names.len() == 1 { "sweep" } else { "sweeps" };
    Some(format!("{noun} {}", names.join(", ")))
}

/// The fewest and the most rounds any completed cell of the run has; None where no cell completed.
fn completed_rounds(meta: &Meta) -> Option<(usize, usize)> {
    let counts = meta
        .outcomes
        .iter()
        .filter(|o| o.is_ok())
        .map(|o| o.repeats.len().max(1));
    Some((counts.clone().min()?, counts.max()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run is called reproducible only from a tree known to be clean: a dirty one says it is
    /// not, first, and one git could not judge says that is unknown.
    #[test]
    fn a_run_from_a_dirty_or_unknown_tree_says_so_first() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../results/20261123T210857Z-vm-full");
        let mut meta = Meta::read(&path).unwrap();
        assert_eq!(meta.git_dirty, Some(false));
        assert_eq!(reproducibility(&meta), None);
        assert_eq!(meta.commit_text(), "83db320991d3");
        meta.git_dirty = Some(true);
        let dirty = reproducibility(&meta).unwrap();
        assert!(
            dirty.starts_with(
                "**Not reproducible: built from a tree with uncommitted changes.** It ran commit \
                 83db320991d3 plus"
            ),
            "{dirty}"
        );
        assert_eq!(
            meta.commit_text(),
            "83db320991d3 (with uncommitted changes)"
        );
        meta.git_dirty = None;
        let unknown = reproducibility(&meta).unwrap();
        assert!(
            unknown.starts_with("**Reproducibility unknown: "),
            "{unknown}"
        );
        assert_eq!(
            meta.commit_text(),
            "83db320991d3 (uncommitted changes unknown)"
        );
    }

    /// A run interrupted in its third round says so, and counts the rounds its cells completed,
    /// not the round it began; a whole run reads as before.
    #[test]
    fn an_interrupted_run_counts_the_rounds_its_cells_completed() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../results/20261202T125637Z-vm-completion");
        let meta = Meta::read(&path).unwrap();
        let summary: pollbench_schema::summary::Summary =
            pollbench_schema::file::read_json(&path.join("summary.json")).unwrap();
        let data = std::collections::BTreeMap::new();
        let header = |meta: &Meta| {
            let run = super::super::run::Run::new(&path, meta, &summary, &data);
            let mut md = Markdown::new(&run);
            md.header();
            md.md
        };
        let whole = header(&meta);
        assert!(
            whole.contains("Every cell ran once in each of 6 rounds."),
            "{whole}"
        );
        // Round 3 began; the first cell completed it, the others only rounds 1 and 2.
        let mut cut = meta.clone();
        cut.rounds.as_mut().unwrap().order.truncate(3);
        for (i, o) in cut.outcomes.iter_mut().filter(|o| o.is_ok()).enumerate() {
            o.repeats.truncate(if i == 0 { 3 } else { 2 });
        }
        assert_eq!(completed_rounds(&cut), Some((2, 3)));
        let text = header(&cut);
        assert!(
            text.contains(
                "The run was interrupted in round 3: each cell's figures are from the rounds it \
                 completed (2 or 3)."
            ),
            "{text}"
        );
        assert!(!text.contains("each of 3 rounds"), "{text}");
        assert!(text.contains(&interval_in_words(2)), "{text}");
        // Interrupted in round 1: the cells that completed have that one round, and the others
        // none at all.
        let mut first = meta.clone();
        first.rounds.as_mut().unwrap().order.truncate(1);
        first.outcomes.truncate(3);
        for o in first.outcomes.iter_mut() {
            o.repeats.truncate(1);
        }
        let text = header(&first);
        assert!(
            text.contains("The run was interrupted in round 1: each cell's figures are from the rounds it completed (1)."),
            "{text}"
        );
    }

    /// The rerun command names suite.toml from the results/ that holds the run, wherever that
    /// is, or beside the run.
    #[test]
    fn the_rerun_path_starts_at_the_results_directory() {
        let path = |p: &str| rerun_path(Path::new(p));
        assert_eq!(path("/nowhere/results/R1"), "results/R1/suite.toml");
        assert_eq!(path("/x/results/CAL/R2"), "results/CAL/R2/suite.toml");
        assert_eq!(path("/x/results/a/results/R3"), "results/R3/suite.toml");
        assert_eq!(path("/tmp/out/R4"), "R4/suite.toml");
        assert_eq!(path("results/R5"), "results/R5/suite.toml");
        assert_eq!(path("R6"), "R6/suite.toml");
    }

    #[test]
    fn suite_settings_come_from_meta_json_else_from_the_suite_text() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../results/20261123T210857Z-vm-full");
        let mut meta = Meta::read(&path).unwrap();
        // A run from before meta.json recorded them: the suite text's.
        assert_eq!(meta.suite_settings, None);
        let from_text = SuiteSettings {
            repeat: 6,
            pin: true,
        };
        assert_eq!(suite_settings(&meta), from_text);
        // Recorded: those, whatever the text says.
        let recorded = SuiteSettings {
            repeat: 2,
            pin: false,
        };
        meta.suite_settings = Some(recorded);
        assert_eq!(suite_settings(&meta), recorded);
        // Neither recorded nor readable: one run, not pinned.
        meta.suite_settings = None;
        meta.suite_file = "repeat = ".into();
        let unreadable = SuiteSettings {
            repeat: 1,
            pin: false,
        };
        assert_eq!(suite_settings(&meta), unreadable);
    }
}

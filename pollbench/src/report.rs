//! A run directory's Markdown report, rebuilt from meta.json and the cells' files by
//! `pollbench report DIR`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use pollbench_schema::file::read_json;
use pollbench_schema::results::{Cell, CellStatus, Meta, Outcome, SuiteSettings};
use pollbench_schema::run::{ClientPart, RunReport};
use pollbench_schema::summary::{CellSummary, Estimate, Judgement, Summary};

/// The load-gen run of cell `id` in run directory `dir`: None when the cell left no such file (it
/// failed before load-gen wrote it, or was skipped); an error naming the file and field when the
/// file is there but not a run document.
pub fn cell_run(dir: &Path, id: &str) -> Result<Option<RunReport>, String> {
    let path = dir.join("cells").join(format!("{id}.json"));
    if !path.exists() {
        return Ok(None);
    }
    read_json(&path).map(Some)
}

/// Write report.md of run directory `dir` (and the charts it shows) from its meta.json, its
/// summary and the cells' files; the path of report.md.
pub fn write(dir: &Path, meta: &Meta, summary: &Summary) -> Result<PathBuf, String> {
    // Every cell's data, read once for the tables and the charts.
    let mut data: BTreeMap<&str, RunReport> = BTreeMap::new();
    for c in &meta.cells {
        if let Some(run) = cell_run(dir, &c.id)? {
            data.insert(c.id.as_str(), run);
        }
    }
    let outcomes: BTreeMap<&str, &Outcome> =
        meta.outcomes.iter().map(|o| (o.id.as_str(), o)).collect();
    let completed = data
        .iter()
        .filter(|(id, _)| outcomes.get(*id).is_some_and(|o| o.is_ok()))
        .map(|(id, run)| (*id, run))
        .collect();
    let mut report = Report {
        dir,
        meta,
        summary,
        outcomes,
        data: &data,
        completed,
        md: String::new(),
        notes: Vec::new(),
    };
    report.header();
    let mut sweeps: Vec<&str> = meta.cells.iter().map(|c| c.sweep.as_str()).collect();
    sweeps.dedup();
    for sweep in sweeps {
        report.sweep(sweep);
    }
    report.clients();
    report.notes_and_suite();
    let path = dir.join("report.md");
    pollbench_schema::file::write_atomically(&path, report.md.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// A report being written: the run's data, and the Markdown so far.
struct Report<'a> {
    dir: &'a Path,
    meta: &'a Meta,
    /// Every cell's figures over its rounds, and the verdicts: what summary.json holds.
    summary: &'a Summary,
    outcomes: BTreeMap<&'a str, &'a Outcome>,
    /// The load-gen run of every cell that left one.
    data: &'a BTreeMap<&'a str, RunReport>,
    /// The runs of the cells that completed: what the charts plot.
    completed: BTreeMap<&'a str, &'a RunReport>,
    md: String,
    /// Cells that did not complete, numbered in the tables, explained at the end.
    notes: Vec<String>,
}

impl Report<'_> {
    /// The title, the machine, and how to read what follows.
    fn header(&mut self) {
        let (md, meta) = (&mut self.md, self.meta);
        let _ = writeln!(
            md,
            "# pollbench: suite `{}`{}, {}\n",
            meta.suite,
            chosen_sweeps(meta).map_or(String::new(), |s| format!(" ({s} only)")),
            meta.started_utc
        );
        let _ = writeln!(
            md,
            "Machine: {} ({} cores, {:.1} GiB), Linux {}, {}, open-files limit {}. Commit {}{}.\n",
            meta.cpu_model.as_deref().unwrap_or("unknown CPU"),
            meta.cores,
            meta.memory_bytes.unwrap_or(0) as f64 / (1u64 << 30) as f64,
            meta.kernel.as_deref().unwrap_or("?"),
            meta.rustc.as_deref().unwrap_or("rustc ?"),
            meta.fd_limit.map_or("?".into(), |l| l.to_string()),
            meta.short_commit(),
            if meta.git_dirty == Some(true) {
                " (with uncommitted changes)"
            } else {
                ""
            },
        );
        let _ = writeln!(
            md,
            "Each cell: a fresh bench-server, then `load-gen run` against it; figures exclude the warm-up. \
             Latency is the corrected p99 (from the intended send time in open loop). Data: `cells/`.\n"
        );
        let SuiteSettings { repeat, pin } = suite_settings(meta);
        if let Some(rounds) = &meta.rounds {
            let _ = writeln!(
                md,
                "Every cell ran once in each of {} rounds, in an order shuffled per round (seed {}; \
                 each round's order is in meta.json), so a slow phase of the machine spreads over \
                 every cell. Each figure is the median over the rounds; [lo–hi] is the interval of \
                 the msgs/s median from order statistics (95% from 6 rounds on, else the extremes \
                 with the confidence they have), and the charts draw it as error bars. The latency \
                 spectrum and the cells' ID.* files are the median round by msgs/s.\n",
                rounds.order.len(),
                rounds.seed
            );
        } else if repeat > 1 {
            let _ = writeln!(
                md,
                "Every cell ran {repeat} times. Tables and charts show the median run by msgs/s; \
                 ±x% is the farthest any run's msgs/s was from that median.\n"
            );
        }
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
        if meta.cells.iter().any(|c| c.label.contains("(libkqueue)")) {
            let _ = writeln!(
                md,
                "**kqueue (libkqueue)** is the kqueue backend on Linux through libkqueue, a translation \
                 layer that runs on epoll: its figures are epoll's plus that layer's cost, not native \
                 kqueue's (macOS, FreeBSD).\n"
            );
        }
    }

    /// One sweep: its heading, its charts, and its table (a column per label, a row per
    /// connection or idle count).
    fn sweep(&mut self, sweep: &str) {
        let meta = self.meta;
        let cells: Vec<&Cell> = meta.cells.iter().filter(|c| c.sweep == sweep).collect();
        let by_idle = cells.iter().any(|c| c.idle > 0);
        let mut columns: Vec<String> = Vec::new();
        for c in &cells {
            if !columns.contains(&c.label) {
                columns.push(c.label.clone());
            }
        }
        let x = if by_idle {
            "idle connections"
        } else {
            "connections"
        };
        let rate = cells.first().and_then(|c| c.rate);
        let one_rate = cells.iter().all(|c| c.rate == rate);
        let _ = writeln!(
            self.md,
            "## {sweep}: msgs/s and p99 against {x}{}\n",
            match (rate, one_rate) {
                (_, false) => " (open loop at the rate in each column)".to_string(),
                (Some(r), true) => format!(" (open loop, {r} msgs/s)"),
                (None, true) => " (closed loop)".to_string(),
            }
        );
        let view = crate::sweep_charts::SweepView {
            dir: self.dir,
            name: sweep,
            x,
            cells: &cells,
            columns: &columns,
            by_idle,
            completed: &self.completed,
            summary: self.summary,
            rounds: meta.rounds.is_some(),
        };
        let (shown, linked) = view.charts();
        for (file, alt) in &shown {
            let _ = writeln!(self.md, "![{alt}]({file})\n");
        }
        if !linked.is_empty() {
            let links: Vec<String> = linked
                .iter()
                .map(|(file, alt)| format!("[{alt}]({file})"))
                .collect();
            let _ = writeln!(self.md, "More charts: {}.\n", links.join(", "));
        }
        self.table(sweep, x, &cells, &columns, by_idle);
    }

    /// A sweep's table: msgs/s / p99 per cell, or why it did not complete. With rounds, the medians
    /// over rounds, msgs/s with its interval, and a row's clear winner in bold; then the cost and
    /// lateness tables, the A/A pairs' verdicts, and every pair's. Older runs show the median run
    /// ± spread.
    fn table(&mut self, sweep: &str, x: &str, cells: &[&Cell], columns: &[String], by_idle: bool) {
        let mut rows: Vec<usize> = cells.iter().map(|c| c.row(by_idle)).collect();
        rows.sort();
        rows.dedup();
        let _ = writeln!(self.md, "| {x} | {} |", columns.join(" | "));
        let _ = writeln!(self.md, "|---|{}", "---|".repeat(columns.len()));
        let mut verdicts = Vec::new();
        for &row in &rows {
            let at_row: Vec<Option<&Cell>> = columns
                .iter()
                .map(|col| {
                    cells
                        .iter()
                        .copied()
                        .find(|c| c.label == *col && c.row(by_idle) == row)
                })
                .collect();
            let judged = self.judge_row(sweep, row, &at_row);
            let mut line = format!("| {row} |");
            for (i, cell) in at_row.iter().enumerate() {
                let text = cell.map_or(String::new(), |c| self.cell_text(c));
                if judged.winner == Some(i) {
                    let _ = write!(line, " **{text}** |");
                } else {
                    let _ = write!(line, " {text} |");
                }
            }
            let _ = writeln!(self.md, "{line}");
            verdicts.extend(
                judged
                    .lines
                    .into_iter()
                    .map(|(aa, l)| (aa, format!("- {row} {x}: {l}"))),
            );
        }
        self.md.push('\n');
        let grid = Grid {
            x,
            cells,
            columns,
            rows: &rows,
            by_idle,
        };
        self.cost_table(&grid);
        self.lateness_table(&grid);
        self.churn_table(&grid);
        if verdicts.is_empty() {
            return;
        }
        // The A/A pairs first, in the open: their verdict is the noise floor every other verdict
        // stands on. Then every pair, folded (8 columns make 28 pairs a row).
        if verdicts.iter().any(|(aa, _)| *aa) {
            let _ = writeln!(
                self.md,
                "A/A, the same server twice (its verdict is this run's noise floor; the ratio a/b per \
                 round, its median and interval):\n"
            );
            for (_, v) in verdicts.iter().filter(|(aa, _)| *aa) {
                let _ = writeln!(self.md, "{v}");
            }
            self.md.push('\n');
        }
        let _ = writeln!(
            self.md,
            "<details><summary>Verdicts on msgs/s: every pair of columns at each row ({} pairs), \
             paired by round (the ratio a/b per round, its median and interval; bold above: better \
             than every other column of its row)</summary>\n",
            verdicts.len()
        );
        for (_, v) in &verdicts {
            let _ = writeln!(self.md, "{v}");
        }
        let _ = writeln!(self.md, "\n</details>\n");
    }

    /// A sweep's cost table, where the server recorded its CPU time or system calls: per message,
    /// the server's CPU (with its interval when there are rounds) and system calls, events per
    /// wait, and the client's CPU.
    fn cost_table(&mut self, grid: &Grid) {
        let recorded = |s: &CellSummary| {
            s.server_cpu_us_per_msg.is_some() || s.server_syscalls_per_msg.is_some()
        };
        if !grid
            .cells
            .iter()
            .any(|c| self.completed_summary(c).is_some_and(recorded))
        {
            return;
        }
        self.summary_table(
            grid,
            "Cost per message: the server's CPU time (user + system over its life in the cell, \
             median [interval] over rounds), its system calls and events per wait (its own \
             counters), and load-gen's CPU time. When both sides saturate the machine, these say \
             which mechanism costs less.",
            |_, s| cost_text(s),
        );
    }

    /// A sweep's client-lateness table, in open loop where load-gen recorded it: how late load-gen
    /// sent (actual minus intended send time, p50 and p99), beside the latency p50 it is part of.
    /// A cell whose client lateness is more than a quarter of its latency p50 is flagged: part of
    /// that latency is the client's, not the server's.
    fn lateness_table(&mut self, grid: &Grid) {
        let recorded = |s: &CellSummary| s.send_lateness_p50_us.is_some();
        if !grid
            .cells
            .iter()
            .any(|c| self.completed_summary(c).is_some_and(recorded))
        {
            return;
        }
        self.summary_table(
            grid,
            "Client send lateness (open loop): how late load-gen itself sent, p50 / p99, against the \
             latency p50 it is counted in (latency runs from the intended send time). ⚠ marks a cell \
             where the client's p50 lateness is over a quarter of the latency p50 although the \
             server kept the rate: there, part of the latency is the client's. (behind) marks a \
             server below 95% of the rate, whose backlog makes messages wait for their connection: \
             that lateness is the server's.",
            |c, s| c.rate.map_or(String::new(), |rate| lateness_text(s, rate)),
        );
    }

    /// A sweep's churn table, where connections came and went (load-gen
    /// --messages-per-connection): connections per second with the interval, connect latency,
    /// how unevenly the loops accepted, and the listener wake-ups that found nothing to accept.
    fn churn_table(&mut self, grid: &Grid) {
        if !grid
            .cells
            .iter()
            .any(|c| c.messages_per_connection.is_some())
        {
            return;
        }
        self.summary_table(
            grid,
            "Connection churn: connections established per second (median [interval]), connect \
             latency p50 / p99 (connect() to established), the spread of accepts over the loops \
             ((max - min) / mean: 0 is even), and listener wake-ups that accepted nothing, per \
             connection accepted (the thundering herd).",
            |_, s| churn_text(s),
        );
    }

    /// A table of the sweep's rows and columns after `intro`: each completed cell's entry is
    /// `text` of its summary, the others are empty.
    fn summary_table(
        &mut self,
        grid: &Grid,
        intro: &str,
        text: impl Fn(&Cell, &CellSummary) -> String,
    ) {
        let _ = writeln!(self.md, "{intro}\n");
        let _ = writeln!(self.md, "| {} | {} |", grid.x, grid.columns.join(" | "));
        let _ = writeln!(self.md, "|---|{}", "---|".repeat(grid.columns.len()));
        for &row in grid.rows {
            let mut line = format!("| {row} |");
            for col in grid.columns {
                let entry = grid
                    .cells
                    .iter()
                    .find(|c| c.label == *col && c.row(grid.by_idle) == row)
                    .and_then(|c| Some((c, self.completed_summary(c)?)))
                    .map_or(String::new(), |(c, s)| text(c, s));
                let _ = write!(line, " {entry} |");
            }
            let _ = writeln!(self.md, "{line}");
        }
        self.md.push('\n');
    }

    /// The summary of a cell that completed.
    fn completed_summary(&self, c: &Cell) -> Option<&CellSummary> {
        self.summary
            .cell(&c.id)
            .filter(|s| s.status == CellStatus::Ok)
    }

    /// The summary of a completed cell whose figures come from interleaved rounds.
    fn with_rounds(&self, c: &Cell) -> Option<&CellSummary> {
        self.meta.rounds.as_ref()?;
        self.summary
            .cell(&c.id)
            .filter(|s| s.status == CellStatus::Ok && s.rounds >= 2)
    }

    /// The verdicts of every pair of a row's columns, and the column clearly better than all
    /// others.
    fn judge_row(&self, sweep: &str, row: usize, at_row: &[Option<&Cell>]) -> RowVerdicts {
        let column = |label: &str| {
            at_row
                .iter()
                .position(|c| c.is_some_and(|c| c.label == label))
        };
        let mut judged = RowVerdicts::default();
        let mut wins = vec![0usize; at_row.len()];
        let mut judged_columns = vec![false; at_row.len()];
        for v in self
            .summary
            .verdicts
            .iter()
            .filter(|v| v.sweep == sweep && v.row == row)
        {
            let (Some(a), Some(b)) = (column(&v.a), column(&v.b)) else {
                continue;
            };
            judged_columns[a] = true;
            judged_columns[b] = true;
            let said = match v.verdict {
                Judgement::ABetter => {
                    wins[a] += 1;
                    format!("{} better", v.a)
                }
                Judgement::BBetter => {
                    wins[b] += 1;
                    format!("{} better", v.b)
                }
                Judgement::NoClearDifference if v.ratio.confidence < crate::stats::CONFIDENCE => {
                    format!(
                        "not judged (the interval has {:.0}% confidence; 6 rounds give 95%)",
                        100.0 * v.ratio.confidence
                    )
                }
                Judgement::NoClearDifference => "no clear difference".into(),
            };
            judged.lines.push((
                same_server(&v.a, &v.b),
                format!(
                    "{} vs {}: {:.2} [{:.2}, {:.2}], {said}",
                    v.a, v.b, v.ratio.median, v.ratio.lo, v.ratio.hi
                ),
            ));
        }
        let comparable = judged_columns.iter().filter(|&&j| j).count();
        judged.winner = (comparable >= 2)
            .then(|| wins.iter().position(|&w| w + 1 == comparable))
            .flatten();
        judged
    }

    /// What a table shows for one cell; a cell that did not complete gets a numbered note.
    fn cell_text(&mut self, c: &Cell) -> String {
        let run = self.data.get(c.id.as_str());
        match (self.outcomes.get(c.id.as_str()), run) {
            (Some(o), Some(run)) if o.status == CellStatus::Ok => {
                let human = pollbench_common::human_count;
                match self.with_rounds(c) {
                    Some(CellSummary {
                        msgs_per_s: Some(m),
                        p99_us: Some(p99),
                        ..
                    }) => format!(
                        "{} [{}–{}] / {}",
                        human(m.median),
                        human(m.lo),
                        human(m.hi),
                        pollbench_common::human_us(p99.median)
                    ),
                    _ => {
                        let msgs = run.throughput_msgs_per_s;
                        format!(
                            "{}{} / {}",
                            human(msgs),
                            spread(o, msgs),
                            pollbench_common::human_us(run.latency_us.p99 as f64)
                        )
                    }
                }
            }
            (Some(o), run) => {
                let mut reason = o.reason.clone().unwrap_or_default();
                // Older runs recorded no error breakdown; the cell's data has it.
                if let Some(run) = run.filter(|_| !reason.contains("errors:")) {
                    let summary = run
                        .failure_summary()
                        .unwrap_or_else(|| "no errors recorded".into());
                    reason.push_str(&format!("; {summary}"));
                }
                self.notes
                    .push(format!("`{}`: {} ({reason})", c.id, o.status));
                format!("{} [{}]", o.status, self.notes.len())
            }
            (None, _) => "not run".into(),
        }
    }

    /// Cells run by several clients: their parts, where the clients disagree by more than the
    /// noise (see [`clients_disagree`]); one line where none does.
    fn clients(&mut self) {
        let runs: Vec<(&str, &Vec<ClientPart>)> = self
            .completed
            .iter()
            .filter_map(|(id, run)| run.clients.as_ref().map(|parts| (*id, parts)))
            .collect();
        let Some((_, first)) = runs.first() else {
            return;
        };
        let _ = writeln!(
            self.md,
            "## Clients
"
        );
        let disagreeing: Vec<_> = runs
            .iter()
            .filter(|(_, parts)| clients_disagree(parts))
            .collect();
        if disagreeing.is_empty() {
            let _ = writeln!(
                self.md,
                "{} load-gen clients per cell; in every cell their msgs/s per connection agreed \
                 within {:.0}% and none had errors (each cell's parts are under `clients` in its \
                 JSON).\n",
                first.len(),
                (CLIENT_DISAGREEMENT - 1.0) * 100.0
            );
            return;
        }
        let _ = writeln!(
            self.md,
            "Cells whose clients' msgs/s per connection differ by more than {:.0}% (the noise of \
             this kind of machine), or where a client had errors: the cell's figures are over all \
             its clients, and these are the parts.\n",
            (CLIENT_DISAGREEMENT - 1.0) * 100.0
        );
        let _ = writeln!(
            self.md,
            "| cell | client | connections | msgs/s | per connection | p99 | errors |\n|---|---|---|---|---|---|---|"
        );
        for (id, parts) in disagreeing {
            for part in parts.iter() {
                let _ = writeln!(
                    self.md,
                    "| {id} | {} | {} | {} | {} | {} | {} |",
                    part.host,
                    part.connections,
                    pollbench_common::human_count(part.throughput_msgs_per_s),
                    pollbench_common::human_count(
                        part.throughput_msgs_per_s / part.connections.max(1) as f64
                    ),
                    pollbench_common::human_us(part.p99_us as f64),
                    part.errors
                );
            }
        }
        self.md.push('\n');
    }

    /// The cells that did not complete, then the suite as it ran.
    fn notes_and_suite(&mut self) {
        if !self.notes.is_empty() {
            let _ = writeln!(self.md, "## Cells that did not complete\n");
            for (i, n) in self.notes.iter().enumerate() {
                let _ = writeln!(self.md, "{}. {n}", i + 1);
            }
            self.md.push('\n');
        }
        let _ = writeln!(self.md, "## The suite\n");
        if let Some(sweeps) = chosen_sweeps(self.meta) {
            let _ = writeln!(
                self.md,
                "Only {sweeps} of it ran (`pollbench suite {} {}`).\n",
                self.meta.suite,
                self.meta
                    .sweeps
                    .iter()
                    .flatten()
                    .map(|s| format!("--sweep {s}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        let _ = writeln!(self.md, "```toml\n{}\n```", self.meta.suite_file.trim_end());
    }
}

/// How far apart clients' msgs/s per connection may be (the ratio of the highest to the lowest)
/// before the report lists them: 25%, the top of this project's run-to-run noise per cell.
const CLIENT_DISAGREEMENT: f64 = 1.25;

/// Whether a cell's clients disagree by more than the noise: msgs/s per connection further apart
/// than [`CLIENT_DISAGREEMENT`], or errors at any client.
fn clients_disagree(parts: &[ClientPart]) -> bool {
    let per_connection: Vec<f64> = parts
        .iter()
        .map(|p| p.throughput_msgs_per_s / p.connections.max(1) as f64)
        .collect();
    let lo = per_connection.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = per_connection.iter().copied().fold(0.0, f64::max);
    parts.iter().any(|p| p.errors > 0) || hi > lo * CLIENT_DISAGREEMENT
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

/// "sweep `a`" or "sweeps `a`, `b`" when `--sweep` chose some of the suite's sweeps.
fn chosen_sweeps(meta: &Meta) -> Option<String> {
    let sweeps = meta.sweeps.as_ref()?;
    let names: Vec<String> = sweeps.iter().map(|s| format!("`{s}`")).collect();
    let noun = if names.len() == 1 { "sweep" } else { "sweeps" };
    Some(format!("{noun} {}", names.join(", ")))
}

/// Whether two column labels name the same server, one of them a backend listed again
/// (`epoll` and `epoll #2`, `epoll 64B` and `epoll #2 64B`): an A/A pair.
fn same_server(a: &str, b: &str) -> bool {
    let plain = |label: &str| -> Vec<String> {
        label
            .split_whitespace()
            .filter(|w| !(w.starts_with('#') && w[1..].parse::<usize>().is_ok()))
            .map(str::to_string)
            .collect()
    };
    a != b && plain(a) == plain(b)
}

/// A sweep's table layout: its x axis, cells, columns and rows.
struct Grid<'g> {
    x: &'g str,
    cells: &'g [&'g Cell],
    columns: &'g [String],
    rows: &'g [usize],
    by_idle: bool,
}

/// The verdicts of one row of a sweep's table.
#[derive(Default)]
struct RowVerdicts {
    /// One line per judged pair of columns, and whether the pair is an A/A pair.
    lines: Vec<(bool, String)>,
    /// The column clearly better than every other judged column of the row.
    winner: Option<usize>,
}

/// One cell's entry in a cost table: "server 4.1 µs [3.9–4.4], 3.1 syscalls, 1.2 events/wait;
/// client 6.0 µs".
fn cost_text(s: &CellSummary) -> String {
    let interval = |e: Estimate| {
        if s.rounds >= 2 {
            format!(" [{:.1}–{:.1}]", e.lo, e.hi)
        } else {
            String::new()
        }
    };
    let mut parts = Vec::new();
    if let Some(cpu) = s.server_cpu_us_per_msg {
        parts.push(format!("server {:.1} µs{}", cpu.median, interval(cpu)));
    }
    if let Some(calls) = s.server_syscalls_per_msg {
        parts.push(format!("{:.1} syscalls", calls.median));
    }
    if let Some(events) = s.events_per_wait {
        parts.push(format!("{:.1} events/wait", events.median));
    }
    let client = s
        .client_cpu_us_per_msg
        .map_or(String::new(), |c| format!("; client {:.1} µs", c.median));
    format!("{}{client}", parts.join(", "))
}

/// One cell's entry in a churn table: "9.1k/s [8.7k–9.8k], connect 41 µs / 180 µs, spread 0.12,
/// 0.98 empty wake-ups".
fn churn_text(s: &CellSummary) -> String {
    let mut parts = Vec::new();
    if let Some(rate) = s.connections_per_s {
        let human = pollbench_common::human_count;
        parts.push(if s.rounds >= 2 {
            format!(
                "{}/s [{}–{}]",
                human(rate.median),
                human(rate.lo),
                human(rate.hi)
            )
        } else {
            format!("{}/s", human(rate.median))
        });
    }
    if let (Some(p50), Some(p99)) = (s.connect_p50_us, s.connect_p99_us) {
        let us = pollbench_common::human_us;
        parts.push(format!("connect {} / {}", us(p50.median), us(p99.median)));
    }
    if let Some(spread) = s.accept_spread {
        parts.push(format!("spread {:.2}", spread.median));
    }
    if let Some(empty) = s.empty_wakeups_per_accept {
        parts.push(format!("{:.2} empty wake-ups", empty.median));
    }
    parts.join(", ")
}

/// The share of a cell's latency p50 above which its client's send lateness is flagged.
const LATE_SHARE: f64 = 0.25;

/// One cell's entry in a lateness table: "2 µs / 15 µs of 80 µs", flagged "⚠" when the client's
/// lateness is a large share of the latency while the server kept up with the `rate`. A server that
/// fell behind makes messages wait for their connection, which shows as lateness too: marked
/// "(behind)" instead, the server's doing.
fn lateness_text(s: &CellSummary, rate: u64) -> String {
    let (Some(late50), Some(late99)) = (s.send_lateness_p50_us, s.send_lateness_p99_us) else {
        return String::new();
    };
    let us = pollbench_common::human_us;
    let behind = s
        .msgs_per_s
        .is_some_and(|m| m.median < BEHIND_SHARE * rate as f64);
    let (of, flag) = match s.p50_us {
        Some(p50) => (
            format!(" of {}", us(p50.median)),
            if behind {
                " (behind)"
            } else if late50.median > LATE_SHARE * p50.median {
                " ⚠"
            } else {
                ""
            },
        ),
        None => (String::new(), ""),
    };
    format!("{} / {}{of}{flag}", us(late50.median), us(late99.median))
}

/// A cell whose msgs/s are below this share of its rate fell behind it.
const BEHIND_SHARE: f64 = 0.95;

/// " ±x%" for a repeated cell: the farthest run's msgs/s from the median's.
fn spread(o: &Outcome, median: f64) -> String {
    if o.repeats.len() < 2 || median <= 0.0 {
        return String::new();
    }
    let far = o
        .repeats
        .iter()
        .map(|r| (r.msgs_per_s - median).abs())
        .fold(0.0, f64::max);
    format!(" ±{:.0}%", 100.0 * far / median)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_loop_cell(msgs: f64, p50: f64, late50: f64) -> CellSummary {
        let at = |v: f64| {
            Some(Estimate {
                median: v,
                lo: v,
                hi: v,
                confidence: 0.969,
            })
        };
        CellSummary {
            id: "idle-epoll-c10-idle0".into(),
            sweep: "idle".into(),
            column: "epoll".into(),
            backend: "epoll".into(),
            row: 0,
            status: CellStatus::Ok,
            reason: None,
            rounds: 6,
            msgs_per_s: at(msgs),
            p50_us: at(p50),
            p99_us: at(p50 * 3.0),
            server_cpu_us_per_msg: None,
            server_syscalls_per_msg: None,
            events_per_wait: None,
            client_cpu_us_per_msg: None,
            send_lateness_p50_us: at(late50),
            send_lateness_p99_us: at(late50 * 4.0),
            connections_per_s: None,
            connect_p50_us: None,
            connect_p99_us: None,
            accept_spread: None,
            empty_wakeups_per_accept: None,
        }
    }

    #[test]
    fn client_lateness_is_flagged_only_where_it_is_the_clients() {
        // A punctual client: no mark.
        assert_eq!(
            lateness_text(&open_loop_cell(20_000.0, 80.0, 2.0), 20_000),
            "2 µs / 8 µs of 80 µs"
        );
        // Late by more than a quarter of the latency, the server keeping the rate: the client's.
        assert!(lateness_text(&open_loop_cell(20_000.0, 80.0, 40.0), 20_000).ends_with(" ⚠"));
        // The same lateness behind a server that fell behind the rate: the server's backlog.
        assert!(
            lateness_text(&open_loop_cell(9_000.0, 80_000.0, 70_000.0), 20_000)
                .ends_with(" (behind)")
        );
    }

    #[test]
    fn a_backend_listed_again_is_the_same_server_and_others_are_not() {
        assert!(same_server("epoll", "epoll #2"));
        assert!(same_server("epoll 64B", "epoll #2 64B"));
        assert!(same_server("epoll #2", "epoll #3"));
        assert!(!same_server("epoll", "epoll"));
        assert!(!same_server("epoll 64B", "epoll #2 32KiB"));
        assert!(!same_server("epoll", "poll"));
        assert!(!same_server("kqueue (libkqueue)", "epoll #2"));
    }

    #[test]
    fn clients_disagree_past_the_noise_or_with_errors() {
        let part = |connections: usize, msgs_per_s: f64, errors: u64| ClientPart {
            host: "h".into(),
            connections,
            messages: 1,
            throughput_msgs_per_s: msgs_per_s,
            p99_us: 1,
            errors,
        };
        // Per connection: 1,000 and 1,200 msgs/s agree; 1,000 and 1,300 do not.
        assert!(!clients_disagree(&[part(5, 5000.0, 0), part(5, 6000.0, 0)]));
        assert!(clients_disagree(&[part(5, 5000.0, 0), part(5, 6500.0, 0)]));
        // Unequal shares are compared per connection: 6 and 4 connections at the same pace agree.
        assert!(!clients_disagree(&[part(6, 6000.0, 0), part(4, 4000.0, 0)]));
        assert!(clients_disagree(&[part(5, 5000.0, 1), part(5, 5000.0, 0)]));
    }
}

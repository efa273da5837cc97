//! The report's section of one sweep: its heading, its charts, and its tables, led by the metric
//! the sweep can resolve (msgs/s in closed loop, latency and the server's cost in open loop,
//! connections/s with churn), one figure per table cell, then the cost tables and the verdicts.

use std::fmt::Write as _;

use pollbench_schema::results::{Cell, CellStatus, Outcome};
use pollbench_schema::summary::{CellSummary, Estimate};

use super::markdown::Markdown;
use super::run::{Run, Sweep};
use super::svg::SweepCharts;
use super::verdicts::{
    winner, Metric, CONNECTIONS_PER_S, MSGS_PER_S, P50, P99, SERVER_CPU, SERVER_SYSCALLS,
};

/// What a sweep's cells can resolve, so what its section leads with.
pub(super) struct Leads {
    /// Every cell is open loop (has a rate): every column keeps the same msgs/s, so latency and
    /// the server's cost are what differ.
    pub(super) open: bool,
    /// Connections come and go (messages per connection): connections/s is what differs first.
    pub(super) churn: bool,
}

impl Leads {
    pub(super) fn of(sweep: &Sweep) -> Leads {
        Leads {
            open: !sweep.cells.is_empty() && sweep.cells.iter().all(|c| c.rate.is_some()),
            churn: sweep
                .cells
                .iter()
                .any(|c| c.messages_per_connection.is_some()),
        }
    }

    /// The metrics the sweep is judged on, in the order the section shows them: what it leads
    /// with first.
    pub(super) fn judged(&self) -> Vec<&'static Metric> {
        let mut metrics = Vec::new();
        if self.churn {
            metrics.push(&CONNECTIONS_PER_S);
        }
        if self.open {
            metrics.extend([&P50, &P99]);
        } else {
            metrics.push(&MSGS_PER_S);
        }
        metrics.extend([&SERVER_CPU, &SERVER_SYSCALLS]);
        metrics
    }

    /// The heading's words for what the sweep leads with.
    fn heading(&self) -> &'static str {
        match (self.churn, self.open) {
            (true, true) => "connections/s, latency and the server's cost",
            (true, false) => "connections/s and msgs/s",
            (false, true) => "latency (p50, p99) and the server's cost",
            (false, false) => "msgs/s",
        }
    }
}

impl Markdown<'_> {
    /// One sweep: its heading, its charts, a table per metric it leads with (a column per label,
    /// a row per connection or idle count, the row's clear winner in bold), the cost tables, the
    /// tables of what it shows but does not judge, and the verdicts.
    pub(super) fn sweep(&mut self, sweep: &Sweep, charts: &SweepCharts) {
        let leads = Leads::of(sweep);
        let rate = sweep.cells.first().and_then(|c| c.rate);
        let one_rate = sweep.cells.iter().all(|c| c.rate == rate);
        let _ = writeln!(
            self.md,
            "## {}: {} against {}{}\n",
            sweep.name,
            leads.heading(),
            sweep.x,
            match (rate, one_rate, leads.churn) {
                (_, false, _) => " (open loop at the rate in each column)".to_string(),
                (Some(r), true, _) => format!(" (open loop, {r} msgs/s)"),
                (None, true, true) => " (closed loop, connections replaced)".to_string(),
                (None, true, false) => " (closed loop)".to_string(),
            }
        );
        for (file, alt) in &charts.shown {
            let _ = writeln!(self.md, "![{alt}]({file})\n");
        }
        if !charts.linked.is_empty() {
            let links: Vec<String> = charts
                .linked
                .iter()
                .map(|(file, alt)| format!("[{alt}]({file})"))
                .collect();
            let _ = writeln!(self.md, "More charts: {}.\n", links.join(", "));
        }
        let columns = self.completed_columns(sweep);
        let bold = "bold: better than every other column of its row in this metric's verdicts";
        if leads.churn {
            self.grid(
                sweep,
                &columns,
                &CONNECTIONS_PER_S,
                &format!("Connections per second, established in the measured window ({bold})."),
                true,
            );
        }
        if leads.open {
            self.grid(
                sweep,
                &columns,
                &P50,
                &format!("p50 latency, from each message's intended send time ({bold})."),
                true,
            );
            self.grid(
                sweep,
                &columns,
                &P99,
                &format!("p99 latency, from each message's intended send time ({bold})."),
                true,
            );
            self.cost_table(sweep);
            self.grid(
                sweep,
                &columns,
                &MSGS_PER_S,
                "msgs/s achieved (not judged: in open loop each column is sent its rate; one below it \
                 fell behind).",
                false,
            );
            self.lateness_table(sweep);
        } else {
            self.grid(
                sweep,
                &columns,
                &MSGS_PER_S,
                &format!("msgs/s ({bold})."),
                true,
            );
            self.grid(
                sweep,
                &columns,
                &P99,
                "p99 latency (not judged: in closed loop latency follows throughput).",
                false,
            );
            self.cost_table(sweep);
        }
        self.churn_table(sweep);
        self.planted(sweep);
        self.verdict_lists(sweep, &leads.judged());
    }

    /// The sweep's columns with a cell that completed: the columns of its tables. The others
    /// (every cell skipped or failed: a backend this machine lacks) are named once, each cell
    /// with its numbered note, instead of filling every table with them.
    fn completed_columns<'s>(&mut self, sweep: &'s Sweep) -> Vec<&'s str> {
        let completed = |col: &str| {
            sweep.cells.iter().any(|c| {
                c.label == col
                    && self
                        .run
                        .outcomes
                        .get(c.id.as_str())
                        .is_some_and(|o| o.is_ok())
            })
        };
        let (shown, left_out): (Vec<&str>, Vec<&str>) = sweep
            .columns
            .iter()
            .map(String::as_str)
            .partition(|col| completed(col));
        if !left_out.is_empty() {
            let mut named = Vec::new();
            for col in left_out {
                let cells: Vec<String> = sweep
                    .rows
                    .iter()
                    .filter_map(|&row| sweep.cell(col, row))
                    .map(|c| self.figure_text(c, &MSGS_PER_S))
                    .collect();
                named.push(format!("{col} ({})", cells.join(", ")));
            }
            let _ = writeln!(
                self.md,
                "Columns with no completed cell, left out of the tables: {}.\n",
                named.join("; ")
            );
        }
        shown
    }

    /// A table of one metric after `intro`: a column per label of `columns`, a row per
    /// connection (or idle) count, each cell's median with its interval, or why the cell did not
    /// complete. With `judged`, the row's column that its verdicts on `metric` put ahead of every
    /// other is in bold.
    fn grid(
        &mut self,
        sweep: &Sweep,
        columns: &[&str],
        metric: &Metric,
        intro: &str,
        judged: bool,
    ) {
        let x = sweep.x;
        let _ = writeln!(self.md, "{intro}\n");
        let _ = writeln!(self.md, "| {x} | {} |", columns.join(" | "));
        let _ = writeln!(self.md, "|---|{}", "---|".repeat(columns.len()));
        for &row in &sweep.rows {
            let at_row: Vec<Option<&Cell>> =
                columns.iter().map(|col| sweep.cell(col, row)).collect();
            let best = judged
                .then(|| winner(self.run.summary, sweep.name, row, metric, &at_row))
                .flatten();
            let mut line = format!("| {row} |");
            for (i, cell) in at_row.iter().enumerate() {
                let text = cell.map_or(String::new(), |c| self.figure_text(c, metric));
                if best == Some(i) {
                    let _ = write!(line, " **{text}** |");
                } else {
                    let _ = write!(line, " {text} |");
                }
            }
            let _ = writeln!(self.md, "{line}");
        }
        self.md.push('\n');
    }

    /// What a metric's table shows for one cell: its median over rounds with the interval, or
    /// why it did not complete (a numbered note, the same number in every table of the run).
    fn figure_text(&mut self, c: &Cell, metric: &Metric) -> String {
        let run = self.run.data.get(c.id.as_str());
        match self.run.outcomes.get(c.id.as_str()) {
            Some(o) if o.status == CellStatus::Ok => {
                let text = |e: Estimate| figure(metric, e);
                match self.run.with_rounds(c) {
                    Some(s) => (metric.of)(s).map_or(String::new(), |e| {
                        format!("{} {}", text(e), interval(metric, e))
                    }),
                    // One run, or runs from before rounds: the median run, and for msgs/s how
                    // far the farthest run was from it.
                    None => self
                        .run
                        .summary
                        .cell(&c.id)
                        .and_then(|s| (metric.of)(s))
                        .map_or(String::new(), |e| {
                            let spread = match metric.name {
                                "msgs_per_s" => spread(o, e.median),
                                _ => String::new(),
                            };
                            format!("{}{spread}", text(e))
                        }),
                }
            }
            Some(o) => {
                let note = self.note(c, o, run);
                format!("{} [{note}]", o.status)
            }
            None => "not run".into(),
        }
    }

    /// The number of cell `c`'s note on why it did not complete: numbered the first time a table
    /// names it.
    fn note(
        &mut self,
        c: &Cell,
        o: &Outcome,
        run: Option<&pollbench_schema::run::RunReport>,
    ) -> usize {
        let start = format!("`{}`: ", c.id);
        if let Some(at) = self.notes.iter().position(|n| n.starts_with(&start)) {
            return at + 1;
        }
        let mut reason = o.reason.clone().unwrap_or_default();
        // Older runs recorded no error breakdown; the cell's data has it.
        if let Some(run) = run.filter(|_| !reason.contains("errors:")) {
            let summary = run
                .failure_summary()
                .unwrap_or_else(|| "no errors recorded".into());
            reason.push_str(&format!("; {summary}"));
        }
        self.notes.push(format!("{start}{} ({reason})", o.status));
        self.notes.len()
    }
}

/// A figure of `metric` for a table: msgs/s and connections/s as counts (12.3k), latency in its
/// unit (28 µs, 1.25 ms), the server's cost with the digits its size needs (9.5, 0.054).
pub(super) fn figure(metric: &Metric, e: Estimate) -> String {
    match metric.name {
        "msgs_per_s" | "connections_per_s" => pollbench_common::human_count(e.median),
        "p50_us" | "p99_us" => pollbench_common::human_us(e.median),
        _ => pollbench_common::human_figure(e.median),
    }
}

/// The interval of a figure of `metric`: "[7.0k–11.0k]", "[26–28 µs]", "[210 µs–299.52 ms]".
pub(super) fn interval(metric: &Metric, e: Estimate) -> String {
    match metric.name {
        "msgs_per_s" | "connections_per_s" => format!(
            "[{}–{}]",
            pollbench_common::human_count(e.lo),
            pollbench_common::human_count(e.hi)
        ),
        "p50_us" | "p99_us" => us_interval(e),
        _ => format!(
            "[{}–{}]",
            pollbench_common::human_figure(e.lo),
            pollbench_common::human_figure(e.hi)
        ),
    }
}

/// A latency's interval, its unit written once where both bounds share it.
pub(super) fn us_interval(e: Estimate) -> String {
    let (lo, hi) = (
        pollbench_common::human_us(e.lo),
        pollbench_common::human_us(e.hi),
    );
    match (lo.rsplit_once(' '), hi.rsplit_once(' ')) {
        (Some((lo_n, lo_unit)), Some((hi_n, hi_unit))) if lo_unit == hi_unit => {
            format!("[{lo_n}–{hi_n} {hi_unit}]")
        }
        _ => format!("[{lo}–{hi}]"),
    }
}

impl Run<'_> {
    /// The summary of a completed cell whose figures come from interleaved rounds.
    pub(super) fn with_rounds(&self, c: &Cell) -> Option<&CellSummary> {
        self.meta.rounds.as_ref()?;
        self.summary
            .cell(&c.id)
            .filter(|s| s.status == CellStatus::Ok && s.rounds >= 2)
    }
}

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

    #[test]
    fn a_latency_interval_writes_a_shared_unit_once() {
        let e = |lo: f64, hi: f64| Estimate {
            median: lo,
            lo,
            hi,
            confidence: 0.969,
        };
        assert_eq!(us_interval(e(26.0, 28.0)), "[26–28 µs]");
        assert_eq!(us_interval(e(210.0, 299_520.0)), "[210 µs–299.52 ms]");
        assert_eq!(
            interval(&SERVER_SYSCALLS, e(0.0512, 0.0601)),
            "[0.0512–0.0601]"
        );
    }
}

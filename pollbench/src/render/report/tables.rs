//! The report's section of one sweep: its heading, its charts, and its tables (msgs/s and p99 per
//! cell, then the cost tables and the verdicts).

use std::fmt::Write as _;

use pollbench_schema::results::{Cell, CellStatus, Outcome};
use pollbench_schema::summary::CellSummary;

use super::markdown::Markdown;
use super::run::{Run, Sweep};
use super::svg::SweepCharts;
use super::verdicts::{judge_row, VerdictLine};

impl Markdown<'_> {
    /// One sweep: its heading, its charts, its table (a column per label, a row per connection or
    /// idle count), the cost tables, and the verdicts.
    pub(super) fn sweep(&mut self, sweep: &Sweep, charts: &SweepCharts) {
        let rate = sweep.cells.first().and_then(|c| c.rate);
        let one_rate = sweep.cells.iter().all(|c| c.rate == rate);
        let _ = writeln!(
            self.md,
            "## {}: msgs/s and p99 against {}{}\n",
            sweep.name,
            sweep.x,
            match (rate, one_rate) {
                (_, false) => " (open loop at the rate in each column)".to_string(),
                (Some(r), true) => format!(" (open loop, {r} msgs/s)"),
                (None, true) => " (closed loop)".to_string(),
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
        let verdicts = self.table(sweep);
        self.cost_table(sweep);
        self.lateness_table(sweep);
        self.churn_table(sweep);
        self.verdicts(&verdicts);
        self.other_verdicts(self.run.summary, sweep.name, sweep.x);
    }

    /// A sweep's table: msgs/s / p99 per cell, or why it did not complete. With rounds, the medians
    /// over rounds, msgs/s with its interval, and a row's clear winner in bold; older runs show the
    /// median run ± spread. The verdicts of its rows, for the list under the tables.
    fn table(&mut self, sweep: &Sweep) -> Vec<VerdictLine> {
        let x = sweep.x;
        let _ = writeln!(self.md, "| {x} | {} |", sweep.columns.join(" | "));
        let _ = writeln!(self.md, "|---|{}", "---|".repeat(sweep.columns.len()));
        let mut verdicts = Vec::new();
        for &row in &sweep.rows {
            let at_row: Vec<Option<&Cell>> = sweep
                .columns
                .iter()
                .map(|col| sweep.cell(col, row))
                .collect();
            let judged = judge_row(self.run.summary, sweep.name, row, &at_row);
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
            verdicts.extend(judged.lines.into_iter().map(|v| VerdictLine {
                text: format!("- {row} {x}: {}", v.text),
                ..v
            }));
        }
        self.md.push('\n');
        verdicts
    }

    /// What a table shows for one cell; a cell that did not complete gets a numbered note.
    fn cell_text(&mut self, c: &Cell) -> String {
        let run = self.run.data.get(c.id.as_str());
        match (self.run.outcomes.get(c.id.as_str()), run) {
            (Some(o), Some(run)) if o.status == CellStatus::Ok => {
                let human = pollbench_common::human_count;
                match self.run.with_rounds(c) {
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
}

impl Run<'_> {
    /// The summary of a completed cell whose figures come from interleaved rounds.
    fn with_rounds(&self, c: &Cell) -> Option<&CellSummary> {
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

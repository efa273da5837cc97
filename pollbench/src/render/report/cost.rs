//! The report's cost, lateness and churn tables of a sweep, from the summary's figures: a line per
//! row and column of the sweep, a column per figure, one figure (with its interval) per table cell.

use std::fmt::Write as _;

use pollbench_schema::results::{Cell, CellStatus};
use pollbench_schema::summary::{CellSummary, Estimate};

use super::markdown::Markdown;
use super::run::{Run, Sweep};
use super::tables::{us_interval, Leads};
use super::verdicts::{winner, Metric, SERVER_CPU, SERVER_SYSCALLS};

/// One cell's entry in a line table's column (None: the cell does not have the figure).
type Entry<'a> = Box<dyn Fn(&Cell, &CellSummary) -> Option<String> + 'a>;

/// A column of a line table: its heading, and one cell's entry in it (None: the cell does not
/// have the figure). With `judged`, the entry of the column its row's verdicts on that metric put
/// ahead of every other is in bold.
struct Figure<'a> {
    heading: &'a str,
    text: Entry<'a>,
    judged: Option<&'static Metric>,
}

impl<'a> Figure<'a> {
    fn new(heading: &'a str, text: impl Fn(&Cell, &CellSummary) -> Option<String> + 'a) -> Self {
        Figure {
            heading,
            text: Box::new(text),
            judged: None,
        }
    }

    fn judged(self, metric: &'static Metric) -> Self {
        Figure {
            judged: Some(metric),
            ..self
        }
    }
}

/// A figure's entry: its median, and its interval where the cell has rounds; `text` writes a
/// value.
fn entry(s: &CellSummary, e: Option<Estimate>, text: fn(f64) -> String) -> Option<String> {
    let e = e?;
    Some(if s.rounds >= 2 {
        format!("{} [{}–{}]", text(e.median), text(e.lo), text(e.hi))
    } else {
        text(e.median)
    })
}

/// A latency's entry: "28 µs [26–28 µs]".
fn us_entry(s: &CellSummary, e: Option<Estimate>) -> Option<String> {
    let e = e?;
    let median = pollbench_common::human_us(e.median);
    Some(if s.rounds >= 2 {
        format!("{median} {}", us_interval(e))
    } else {
        median
    })
}

impl Markdown<'_> {
    /// A sweep's cost table, where the server recorded its CPU time or system calls: per message,
    /// the server's CPU time and system calls, events per wait, the client's CPU time, then how
    /// busy each side was and whether the client bound the cell.
    pub(super) fn cost_table(&mut self, sweep: &Sweep) {
        let recorded = |s: &CellSummary| {
            s.server_cpu_us_per_msg.is_some() || s.server_syscalls_per_msg.is_some()
        };
        if !self.run.any_completed(sweep, recorded) {
            return;
        }
        let windowed = |s: &CellSummary| s.server_cost_over.as_deref() == Some(WINDOW);
        let any_windowed = self.run.any_completed(sweep, windowed);
        let span = if any_windowed {
            "over load-gen's measured window (the server's readings at the whole seconds inside \
             it: start-up, warm-up and shutdown left out; † marks a cell whose window was too \
             short for two readings, its figures over the server's whole life)"
        } else {
            "over the server's life in the cell"
        };
        let bound = if Leads::of(sweep).open {
            "In open loop load-gen spins until each send is due, so its busy share says nothing \
             of a bound; with both sides short of their limit, the server's figures are its own \
             cost."
        } else {
            "A cell whose client was busy 0.90 or more is client-bound: its msgs/s is load-gen's \
             pace as much as the server's. When both sides saturate the machine, these say which \
             mechanism costs less."
        };
        let intro = format!(
            "Cost per message, {span}: the server's CPU time (user + system) and system calls \
             per message echoed (its own counters), the events each of its waits returned, and \
             load-gen's CPU time per message; then how busy each side's threads were (CPU time \
             over threads x the window). {bound} Median [interval] over rounds; bold: better \
             than every other column of its row in the verdicts on it."
        );
        let whole_life = move |s: &CellSummary| {
            if any_windowed && !windowed(s) {
                "† "
            } else {
                ""
            }
        };
        let figure = pollbench_common::human_figure;
        let figures = vec![
            Figure::new("server CPU µs/msg", move |_, s| {
                entry(s, s.server_cpu_us_per_msg, figure).map(|e| format!("{}{e}", whole_life(s)))
            })
            .judged(&SERVER_CPU),
            Figure::new("server system calls/msg", move |_, s| {
                entry(s, s.server_syscalls_per_msg, figure).map(|e| format!("{}{e}", whole_life(s)))
            })
            .judged(&SERVER_SYSCALLS),
            Figure::new("events/wait", move |_, s| {
                entry(s, s.events_per_wait, figure)
            }),
            Figure::new("client CPU µs/msg", move |_, s| {
                entry(s, s.client_cpu_us_per_msg, figure)
            }),
            Figure::new("server busy", move |_, s| entry(s, s.server_busy, figure)),
            Figure::new("client busy", move |_, s| {
                let bound = if s.client_bound == Some(true) {
                    ", client-bound"
                } else {
                    ""
                };
                entry(s, s.client_busy, figure).map(|e| format!("{e}{bound}"))
            }),
        ];
        self.line_table(sweep, &intro, figures);
    }

    /// A sweep's client-lateness table, in open loop where load-gen recorded it: how late load-gen
    /// sent (actual minus intended send time, p50 and p99), beside the latency p50 it is part of.
    /// A cell whose client lateness is more than a quarter of its latency p50 is flagged: part of
    /// that latency is the client's, not the server's.
    pub(super) fn lateness_table(&mut self, sweep: &Sweep) {
        if !self
            .run
            .any_completed(sweep, |s| s.send_lateness_p50_us.is_some())
        {
            return;
        }
        let figures = vec![
            Figure::new("client send lateness p50", |c, s| {
                let flag = c.rate.map_or("", |rate| lateness_flag(s, rate));
                us_entry(s, s.send_lateness_p50_us).map(|e| format!("{e}{flag}"))
            }),
            Figure::new("client send lateness p99", |_, s| {
                us_entry(s, s.send_lateness_p99_us)
            }),
            Figure::new("latency p50", |_, s| us_entry(s, s.p50_us)),
        ];
        self.line_table(
            sweep,
            "Client send lateness (open loop): how late load-gen itself sent, p50 and p99, beside \
             the latency p50 it is counted in (latency runs from the intended send time). ⚠ marks \
             a cell where the client's p50 lateness is over a quarter of the latency p50 although \
             the server kept the rate: there, part of the latency is the client's. (behind) marks \
             a server below 95% of the rate, whose backlog makes messages wait for their \
             connection: that lateness is the server's.",
            figures,
        );
    }

    /// A sweep's churn table, where connections came and went (load-gen
    /// --messages-per-connection): connect latency, how unevenly the loops accepted, and the
    /// listener wake-ups that found nothing to accept.
    pub(super) fn churn_table(&mut self, sweep: &Sweep) {
        if !sweep
            .cells
            .iter()
            .any(|c| c.messages_per_connection.is_some())
        {
            return;
        }
        let figure = pollbench_common::human_figure;
        let figures = vec![
            Figure::new("connect p50", |_, s| us_entry(s, s.connect_p50_us)),
            Figure::new("connect p99", |_, s| us_entry(s, s.connect_p99_us)),
            Figure::new("accept spread", move |_, s| {
                entry(s, s.accept_spread, figure)
            }),
            Figure::new("empty wake-ups per accept", move |_, s| {
                entry(s, s.empty_wakeups_per_accept, figure)
            }),
        ];
        self.line_table(
            sweep,
            "Connection churn: connect latency p50 and p99 (connect() to established), the \
             spread of accepts over the loops ((max - min) / mean: 0 is even), and listener \
             wake-ups that accepted nothing, per connection accepted (the thundering herd). \
             Median [interval] over rounds.",
            figures,
        );
    }

    /// A table after `intro` with a line per row and column of the sweep whose cell completed,
    /// and a column per figure that some cell has.
    fn line_table(&mut self, sweep: &Sweep, intro: &str, figures: Vec<Figure>) {
        let run = self.run;
        let lines: Vec<(usize, &Cell, &CellSummary)> = sweep
            .rows
            .iter()
            .flat_map(|&row| {
                sweep.columns.iter().filter_map(move |col| {
                    let c = sweep.cell(col, row)?;
                    Some((row, c, run.completed_summary(c)?))
                })
            })
            .collect();
        let figures: Vec<Figure> = figures
            .into_iter()
            .filter(|f| lines.iter().any(|(_, c, s)| (f.text)(c, s).is_some()))
            .collect();
        if figures.is_empty() {
            return;
        }
        let headings: Vec<&str> = figures.iter().map(|f| f.heading).collect();
        let _ = writeln!(self.md, "{intro}\n");
        let _ = writeln!(
            self.md,
            "| {} | column | {} |",
            sweep.x,
            headings.join(" | ")
        );
        let _ = writeln!(self.md, "|---|---|{}", "---|".repeat(figures.len()));
        for (row, c, s) in lines {
            let at_row: Vec<Option<&Cell>> = sweep
                .columns
                .iter()
                .map(|col| sweep.cell(col, row))
                .collect();
            let column = sweep.columns.iter().position(|col| *col == c.label);
            let mut line = format!("| {row} | {} |", c.label);
            for f in &figures {
                let text = (f.text)(c, s).unwrap_or_default();
                let best = f
                    .judged
                    .and_then(|m| winner(run.summary, sweep.name, row, m, &at_row));
                if best.is_some() && best == column {
                    let _ = write!(line, " **{text}** |");
                } else {
                    let _ = write!(line, " {text} |");
                }
            }
            let _ = writeln!(self.md, "{line}");
        }
        self.md.push('\n');
    }
}

impl Run<'_> {
    /// The summary of a cell that completed.
    fn completed_summary(&self, c: &Cell) -> Option<&CellSummary> {
        self.summary
            .cell(&c.id)
            .filter(|s| s.status == CellStatus::Ok)
    }

    /// Whether a completed cell of `sweep` has what `recorded` looks for.
    fn any_completed(&self, sweep: &Sweep, recorded: impl Fn(&CellSummary) -> bool) -> bool {
        sweep
            .cells
            .iter()
            .any(|c| self.completed_summary(c).is_some_and(&recorded))
    }
}

/// What the summary says of server cost figures over load-gen's measured window.
const WINDOW: &str = "measured window";

/// The share of a cell's latency p50 above which its client's send lateness is flagged.
const LATE_SHARE: f64 = 0.25;

/// A lateness entry's flag: " ⚠" when the client's p50 lateness is a large share of the latency
/// p50 while the server kept up with the `rate`. A server that fell behind makes messages wait for
/// their connection, which shows as lateness too: " (behind)" instead, the server's doing.
fn lateness_flag(s: &CellSummary, rate: u64) -> &'static str {
    let (Some(late50), Some(p50)) = (s.send_lateness_p50_us, s.p50_us) else {
        return "";
    };
    let behind = s
        .msgs_per_s
        .is_some_and(|m| m.median < BEHIND_SHARE * rate as f64);
    if behind {
        " (behind)"
    } else if late50.median > LATE_SHARE * p50.median {
        " ⚠"
    } else {
        ""
    }
}

/// A cell whose msgs/s are below this share of its rate fell behind it.
const BEHIND_SHARE: f64 = 0.95;

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
            msgs_per_s: at(msgs),
            p50_us: at(p50),
            p99_us: at(p50 * 3.0),
            send_lateness_p50_us: at(late50),
            send_lateness_p99_us: at(late50 * 4.0),
            ..crate::analysis::summary::tests::cell("idle-epoll-c10-idle0", "idle", "epoll", 0)
        }
    }

    #[test]
    fn client_lateness_is_flagged_only_where_it_is_the_clients() {
        // A punctual client: no mark.
        assert_eq!(
            lateness_flag(&open_loop_cell(20_000.0, 80.0, 2.0), 20_000),
            ""
        );
        // Late by more than a quarter of the latency, the server keeping the rate: the client's.
        assert_eq!(
            lateness_flag(&open_loop_cell(20_000.0, 80.0, 40.0), 20_000),
            " ⚠"
        );
        // The same lateness behind a server that fell behind the rate: the server's backlog.
        assert_eq!(
            lateness_flag(&open_loop_cell(9_000.0, 80_000.0, 70_000.0), 20_000),
            " (behind)"
        );
    }

    /// One figure per table cell, below 1 with three significant figures: 0.054 system calls
    /// per message is never "0.1".
    #[test]
    fn a_cost_entry_is_one_figure_with_its_interval() {
        let s = CellSummary {
            server_syscalls_per_msg: Some(Estimate {
                median: 0.054,
                lo: 0.0412,
                hi: 0.1003,
                confidence: 0.969,
            }),
            ..crate::analysis::summary::tests::cell("c", "s", "epoll", 100)
        };
        assert_eq!(
            entry(
                &s,
                s.server_syscalls_per_msg,
                pollbench_common::human_figure
            )
            .unwrap(),
            "0.054 [0.0412–0.100]"
        );
    }
}

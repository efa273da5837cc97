//! The report's cost, lateness and churn tables of a sweep, from the summary's figures.

use std::fmt::Write as _;

use pollbench_schema::results::{Cell, CellStatus};
use pollbench_schema::summary::{CellSummary, Estimate};

use super::markdown::Markdown;
use super::run::{Run, Sweep};

impl Markdown<'_> {
    /// A sweep's cost table, where the server recorded its CPU time or system calls: per message,
    /// the server's CPU (with its interval when there are rounds) and system calls, events per
    /// wait, and the client's CPU.
    pub(super) fn cost_table(&mut self, sweep: &Sweep) {
        let recorded = |s: &CellSummary| {
            s.server_cpu_us_per_msg.is_some() || s.server_syscalls_per_msg.is_some()
        };
        if !self.run.any_completed(sweep, recorded) {
            return;
        }
        let windowed = |s: &CellSummary| s.server_cost_over.as_deref() == Some(WINDOW);
        if !self.run.any_completed(sweep, windowed) {
            self.summary_table(
                sweep,
                "Cost per message: the server's CPU time (user + system over its life in the cell, \
                 median [interval] over rounds), its system calls and events per wait (its own \
                 counters), and load-gen's CPU time; then how busy each side's threads were (CPU \
                 time over threads x the window; client-bound from 0.90 in closed loop: there msgs/s is \
                 load-gen's pace as much as the server's; in open loop load-gen spins until each \
                 send is due). When both sides saturate the machine, these say \
                 which mechanism costs less.",
                |_, s| cost_text(s),
            );
            return;
        }
        self.summary_table(
            sweep,
            "Cost per message: the server's CPU time (user + system, median [interval] over \
             rounds) and system calls over load-gen's measured window (the server's readings at \
             the whole seconds inside it: start-up, warm-up and shutdown left out; † marks a cell \
             whose window was too short for two readings, its figures over the server's whole \
             life), events per wait, and load-gen's CPU time; then how busy each side's threads \
             were (CPU time over threads x the window; client-bound from 0.90 in closed loop: there msgs/s \
             is load-gen's pace as much as the server's; in open loop load-gen spins until each \
             send is due). When both sides saturate the machine, \
             these say which mechanism costs less.",
            |_, s| match windowed(s) {
                true => cost_text(s),
                false => format!("† {}", cost_text(s)),
            },
        );
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
        self.summary_table(
            sweep,
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
    pub(super) fn churn_table(&mut self, sweep: &Sweep) {
        if !sweep
            .cells
            .iter()
            .any(|c| c.messages_per_connection.is_some())
        {
            return;
        }
        self.summary_table(
            sweep,
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
        sweep: &Sweep,
        intro: &str,
        text: impl Fn(&Cell, &CellSummary) -> String,
    ) {
        let _ = writeln!(self.md, "{intro}\n");
        let _ = writeln!(self.md, "| {} | {} |", sweep.x, sweep.columns.join(" | "));
        let _ = writeln!(self.md, "|---|{}", "---|".repeat(sweep.columns.len()));
        for &row in &sweep.rows {
            let mut line = format!("| {row} |");
            for col in &sweep.columns {
                let entry = sweep
                    .cell(col, row)
                    .and_then(|c| Some((c, self.run.completed_summary(c)?)))
                    .map_or(String::new(), |(c, s)| text(c, s));
                let _ = write!(line, " {entry} |");
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
    format!("{}{client}{}", parts.join(", "), busy_text(s))
}

/// A cost entry's bottleneck part: how busy each side's threads were in the window, and the
/// client-bound mark (" · busy server 0.48, client 0.93: client-bound").
fn busy_text(s: &CellSummary) -> String {
    let mut sides = Vec::new();
    if let Some(b) = s.server_busy {
        sides.push(format!("server {:.2}", b.median));
    }
    if let Some(b) = s.client_busy {
        sides.push(format!("client {:.2}", b.median));
    }
    if sides.is_empty() {
        return String::new();
    }
    let bound = if s.client_bound == Some(true) {
        ": client-bound"
    } else {
        ""
    };
    format!(" · busy {}{bound}", sides.join(", "))
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
}

//! The verdicts of a sweep's table: each row's pairs of columns judged on msgs/s paired by round
//! (the summary's verdicts), the row's clear winner, the lists under the tables, and the lists
//! of the other metrics' verdicts.

use std::fmt::Write as _;

use pollbench_schema::results::Cell;
use pollbench_schema::summary::{Judgement, Summary, VerdictSummary};

use super::markdown::Markdown;

/// One judged pair of columns, as the report lists it.
pub(super) struct VerdictLine {
    /// The pair is the same server twice (an A/A pair).
    pub(super) same_server: bool,
    pub(super) text: String,
}

impl VerdictLine {
    /// "a vs b: 1.12 [1.05, 1.20], a better".
    fn of(v: &VerdictSummary) -> VerdictLine {
        let said = match v.verdict {
            Judgement::ABetter => format!("{} better", v.a),
            Judgement::BBetter => format!("{} better", v.b),
            Judgement::NoClearDifference
                if v.ratio.confidence < crate::analysis::stats::CONFIDENCE =>
            {
                format!(
                    "not judged (the interval has {:.0}% confidence; 6 rounds give 95%)",
                    100.0 * v.ratio.confidence
                )
            }
            Judgement::NoClearDifference => "no clear difference".into(),
        };
        VerdictLine {
            same_server: same_server(&v.a, &v.b),
            text: format!(
                "{} vs {}: {:.2} [{:.2}, {:.2}], {said}{}",
                v.a,
                v.b,
                v.ratio.median,
                v.ratio.lo,
                v.ratio.hi,
                v.limited_by
                    .as_ref()
                    .map_or(String::new(), |why| format!(" ({why})"))
            ),
        }
    }
}

/// The metric the sweep tables' verdicts and bold winners are on.
const MSGS_PER_S: &str = "msgs_per_s";

/// The other metrics judged, as the report names them.
const OTHER_METRICS: [(&str, &str); 5] = [
    ("p50_us", "p50 latency (open loop; lower is better)"),
    ("p99_us", "p99 latency (open loop; lower is better)"),
    (
        "server_cpu_us_per_msg",
        "the server's CPU time per message (lower is better; over the span the cost table says)",
    ),
    (
        "server_syscalls_per_msg",
        "the server's system calls per message (lower is better)",
    ),
    (
        "connections_per_s",
        "connections per second (churn; higher is better)",
    ),
];

/// The verdicts of one row of a sweep's table.
#[derive(Default)]
pub(super) struct RowVerdicts {
    /// One line per judged pair of columns.
    pub(super) lines: Vec<VerdictLine>,
    /// The column clearly better than every other judged column of the row.
    pub(super) winner: Option<usize>,
}

/// The verdicts of every pair of a row's columns (`at_row`, the row's cell in each column), and
/// the column clearly better than all others.
pub(super) fn judge_row(
    summary: &Summary,
    sweep: &str,
    row: usize,
    at_row: &[Option<&Cell>],
) -> RowVerdicts {
    let column = |label: &str| {
        at_row
            .iter()
            .position(|c| c.is_some_and(|c| c.label == label))
    };
    let mut judged = RowVerdicts::default();
    let mut wins = vec![0usize; at_row.len()];
    let mut judged_columns = vec![false; at_row.len()];
    for v in summary
        .verdicts
        .iter()
        .filter(|v| v.sweep == sweep && v.row == row && v.metric == MSGS_PER_S)
    {
        let (Some(a), Some(b)) = (column(&v.a), column(&v.b)) else {
            continue;
        };
        judged_columns[a] = true;
        judged_columns[b] = true;
        match v.verdict {
            Judgement::ABetter => wins[a] += 1,
            Judgement::BBetter => wins[b] += 1,
            Judgement::NoClearDifference => {}
        }
        judged.lines.push(VerdictLine::of(v));
    }
    let comparable = judged_columns.iter().filter(|&&j| j).count();
    judged.winner = (comparable >= 2)
        .then(|| wins.iter().position(|&w| w + 1 == comparable))
        .flatten();
    judged
}

impl Markdown<'_> {
    /// The verdicts of a sweep's rows, under its tables: the A/A pairs first, in the open (their
    /// verdict is the noise floor every other verdict stands on), then every pair, folded (8
    /// columns make 28 pairs a row).
    pub(super) fn verdicts(&mut self, verdicts: &[VerdictLine]) {
        if verdicts.is_empty() {
            return;
        }
        if verdicts.iter().any(|v| v.same_server) {
            let _ = writeln!(
                self.md,
                "A/A, the same server twice (its verdict is this run's noise floor; the ratio a/b per \
                 round, its median and interval):\n"
            );
            for v in verdicts.iter().filter(|v| v.same_server) {
                let _ = writeln!(self.md, "{}", v.text);
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
        for v in verdicts {
            let _ = writeln!(self.md, "{}", v.text);
        }
        let _ = writeln!(self.md, "\n</details>\n");
    }

    /// The verdicts of a sweep on every metric but msgs/s (on the sweeps whose cells can resolve
    /// it), one folded list each, its A/A pairs first: the ratio a/b is of the metric itself, so
    /// below 1 is better where lower is.
    pub(super) fn other_verdicts(&mut self, summary: &Summary, sweep: &str, x: &str) {
        for (metric, name) in OTHER_METRICS {
            let mut lines: Vec<VerdictLine> = summary
                .verdicts
                .iter()
                .filter(|v| v.sweep == sweep && v.metric == metric)
                .map(|v| {
                    let line = VerdictLine::of(v);
                    VerdictLine {
                        text: format!("- {} {x}: {}", v.row, line.text),
                        ..line
                    }
                })
                .collect();
            if lines.is_empty() {
                continue;
            }
            lines.sort_by_key(|l| !l.same_server);
            let _ = writeln!(
                self.md,
                "<details><summary>Verdicts on {name}: {} pairs, paired by round, A/A pairs \
                 first</summary>\n",
                lines.len()
            );
            for line in &lines {
                let _ = writeln!(self.md, "{}", line.text);
            }
            let _ = writeln!(self.md, "\n</details>\n");
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

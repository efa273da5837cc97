//! `summary.json`: the machine-readable result of a suite run, in every run directory beside
//! report.md, and what the report's tables and verdicts are written from. Each cell's figures are
//! medians over its rounds with an interval; each pair of columns of a sweep at the same row that
//! differ in one dimension (the server, or one setting of the load) has a verdict on each metric
//! the sweep can resolve, paired by round.
//!
//! Written by `pollbench suite` and rebuilt by `pollbench report DIR` from meta.json and the cells'
//! files; `pollbench compare` reads it.
//!
//! Each cell also lists every figure round by round (`per_round`), and each verdict its ratio
//! round by round (`per_round`), so a reader can redo the statistics from summary.json alone.
//! summary.csv beside it has one row per cell: every figure with its interval.
//!
//! Fields added within version 1 (the churn figures: `connections_per_s`, `connect_p50_us`,
//! `connect_p99_us`, `accept_spread`, `empty_wakeups_per_accept`; the server's cost span and
//! whole-life cost; `server_busy`, `client_busy`, `client_bound`; `p999_us`, `max_us`; `per_round`
//! of cells and verdicts; a verdict's `limited_by`; `pairs_judged`) read as null or empty when
//! absent, so a summary written
//! before them still reads.

use serde::{Deserialize, Serialize};

use crate::file::Versioned;
use crate::results::CellStatus;

/// The `schema` string of summary.json, version 1.
pub const SCHEMA: &str = "pollbench.summary/1";

/// The whole summary.json document.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Summary {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// How the intervals were computed, in words (the method and its confidence).
    pub method: String,
    /// Every cell of the suite, in the suite's order.
    pub cells: Vec<CellSummary>,
    /// The pairs of columns at the same row of a sweep that differ in one dimension, on each
    /// metric the sweep can resolve.
    pub verdicts: Vec<VerdictSummary>,
    /// How many pairs were judged on each metric, in the order of `verdicts`, and how many clear
    /// differences chance alone would give among them. Added within version 1: absent in
    /// documents written before it, and where nothing was judged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pairs_judged: Vec<PairsJudged>,
}

/// The verdicts on one metric, counted: what a reader needs to weigh the clear differences
/// among them against chance.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PairsJudged {
    /// The metric, as a verdict's `metric` names it.
    pub metric: String,
    /// Pairs judged on it.
    pub pairs: usize,
    /// Of those, the verdicts that read a clear difference ("a better" or "b better").
    pub clear_differences: usize,
    /// The clear differences these pairs would give by chance if no two columns differed: the
    /// sum of each verdict's false-call rate, the chance that its interval of the ratio misses 1
    /// when the ratio's median is 1 (one minus the interval's confidence, at or above 95%: with 6
    /// rounds 2/64 = 3.1% a pair; an interval below 95% never calls a difference).
    pub expected_false_calls: f64,
}

impl Versioned for Summary {
    const SCHEMA: &'static str = SCHEMA;
    fn schema(&self) -> &str {
        &self.schema
    }
}

impl Summary {
    /// The summary of cell `id`.
    pub fn cell(&self, id: &str) -> Option<&CellSummary> {
        self.cells.iter().find(|c| c.id == id)
    }
}

/// A median over rounds and its interval. With one round, `lo` = `hi` = `median` and the
/// confidence is 0; below 6 rounds the interval is the extremes, with the confidence they have
/// (5 rounds: 93.8%, 3 rounds: 75%).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub median: f64,
    pub lo: f64,
    pub hi: f64,
    /// The probability that [lo, hi] covers the true median (order statistics), 0 to 1.
    pub confidence: f64,
}

/// One cell's result.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CellSummary {
    /// The cell's id (its files are cells/ID.*).
    pub id: String,
    pub sweep: String,
    /// The report column: the cell's label.
    pub column: String,
    /// bench-server's --backend.
    pub backend: String,
    /// The report row: connections, or idle connections in an idle sweep.
    pub row: usize,
    pub status: CellStatus,
    /// Why the cell failed or was skipped; null when ok.
    #[serde(deserialize_with = "crate::file::required")]
    pub reason: Option<String>,
    /// Rounds the figures come from (0 when the cell did not complete).
    pub rounds: usize,
    /// Echoed messages per second in the measured window (load-gen).
    #[serde(deserialize_with = "crate::file::required")]
    pub msgs_per_s: Option<Estimate>,
    /// Latency percentiles in microseconds (corrected: from the intended send time in open loop).
    #[serde(deserialize_with = "crate::file::required")]
    pub p50_us: Option<Estimate>,
    #[serde(deserialize_with = "crate::file::required")]
    pub p99_us: Option<Estimate>,
    /// The latency's p99.9 and its largest value in microseconds, each round's from its whole
    /// histogram, as estimates over rounds like the two above: the tail a p99 does not reach.
    /// Added within version 1: absent (None) in documents written before them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p999_us: Option<Estimate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_us: Option<Estimate>,
    /// The server's CPU time (user + system) per message it echoed, in microseconds, over what
    /// [`server_cost_over`](Self::server_cost_over) says; null where the server did not record
    /// its CPU time.
    #[serde(deserialize_with = "crate::file::required")]
    pub server_cpu_us_per_msg: Option<Estimate>,
    /// The system calls the server's loops made per message echoed (its own counters), over the
    /// same span; null where it could not count them.
    #[serde(deserialize_with = "crate::file::required")]
    pub server_syscalls_per_msg: Option<Estimate>,
    /// The span the two figures above come from: "measured window" (bench-server's readings at
    /// the whole seconds inside load-gen's measured window, in every round: start-up, warm-up and
    /// shutdown left out) or "whole life" (its whole life in the cell: a window too short for two
    /// readings, or a server that did not take them). Added within version 1: absent (None) in
    /// documents written before it, whose figures are the whole life's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cost_over: Option<String>,
    /// Server CPU time per message over its whole life in the cell, whatever the span above.
    /// Added within version 1: absent (None) in documents written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_msg_whole_life: Option<Estimate>,
    /// System calls per message over its whole life in the cell. Added within version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_syscalls_per_msg_whole_life: Option<Estimate>,
    /// Events each wait returned, on average.
    #[serde(deserialize_with = "crate::file::required")]
    pub events_per_wait: Option<Estimate>,
    /// load-gen's CPU time per message, in microseconds.
    #[serde(deserialize_with = "crate::file::required")]
    pub client_cpu_us_per_msg: Option<Estimate>,
    /// Open loop: the median of how late load-gen sent its messages (actual minus intended send
    /// time), in microseconds, and its p99; null in closed loop.
    #[serde(deserialize_with = "crate::file::required")]
    pub send_lateness_p50_us: Option<Estimate>,
    #[serde(deserialize_with = "crate::file::required")]
    pub send_lateness_p99_us: Option<Estimate>,
    /// Connection churn (load-gen --messages-per-connection): connections established per second
    /// in the measured window, and connect() to established, p50 and p99 in microseconds; null
    /// when connections are kept.
    #[serde(default)]
    pub connections_per_s: Option<Estimate>,
    #[serde(default)]
    pub connect_p50_us: Option<Estimate>,
    #[serde(default)]
    pub connect_p99_us: Option<Estimate>,
    /// With several loops: how unevenly they accepted, (max - min) / mean over the run (0: even).
    #[serde(default)]
    pub accept_spread: Option<Estimate>,
    /// Listener wake-ups that accepted nothing, per connection accepted: the thundering herd (a
    /// `shared` listener wakes every loop for one connection); null where no loop waits on a
    /// listener (`acceptor`, the baselines).
    #[serde(default)]
    pub empty_wakeups_per_accept: Option<Estimate>,
    /// How busy the server's threads were over the measured window: its CPU time over (event
    /// loops x the window), from its readings at whole seconds; null without two readings in the
    /// window. Added within version 1: absent (None) in documents written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_busy: Option<Estimate>,
    /// How busy load-gen's threads were over the measured window: its CPU time over (threads x
    /// the window). Added within version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_busy: Option<Estimate>,
    /// Whether the cell is bound by its client: true in closed loop where load-gen's threads were
    /// busy [`CLIENT_BOUND`] or more (the median over rounds), so its msgs/s says as much about
    /// load-gen as about the server; false below that, and in open loop (there load-gen spins
    /// until each send is due: its busy threads say nothing of a bound, its send lateness does);
    /// null where how busy load-gen was is not known. The one rule the verdicts and the report
    /// read. Added within version 1: absent in documents written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_bound: Option<bool>,
    /// Every figure above in each round it comes from, in round order, so a reader can redo the
    /// statistics: figure name -> one value per round (`rounds` of them), null where that round
    /// lacks it; a figure no round has is left out. A figure's median and interval above are the
    /// order statistics of its values here (a figure is null above unless every round has it);
    /// `server_cpu_us_per_msg` and `server_syscalls_per_msg` are over the span
    /// `server_cost_over` says. Added within version 1: absent in documents written before it.
    #[serde(default, skip_serializing_if = "PerRound::is_empty")]
    pub per_round: PerRound,
}

/// Each figure's value in each round, by the figure's name in summary.json, in the order of
/// [`CellSummary::FIGURES`]; written as a JSON object of arrays (`{"msgs_per_s": [20001.5, null,
/// ...], ...}`), null where a round lacks the figure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerRound(pub Vec<(String, Vec<Option<f64>>)>);

impl PerRound {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values of figure `name`, round by round, if any round has it.
    pub fn get(&self, name: &str) -> Option<&[Option<f64>]> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, values)| values.as_slice())
    }
}

impl Serialize for PerRound {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(name, values)| (name, values)))
    }
}

impl<'de> Deserialize<'de> for PerRound {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PerRound, D::Error> {
        /// Reads the object's entries in the order they are written.
        struct InOrder;
        impl<'de> serde::de::Visitor<'de> for InOrder {
            type Value = PerRound;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of figure names to arrays of numbers or nulls")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<PerRound, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(PerRound(entries))
            }
        }
        d.deserialize_map(InOrder)
    }
}

/// What a paired comparison of two columns says.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// The interval of a/b lies above 1.
    #[serde(rename = "a better")]
    ABetter,
    /// The interval of a/b lies below 1.
    #[serde(rename = "b better")]
    BBetter,
    /// The interval includes 1, or has less than 95% confidence (too few rounds to tell).
    #[serde(rename = "no clear difference")]
    NoClearDifference,
}

/// The client busy fraction from which a closed-loop cell is bound by its client
/// ([`CellSummary::client_bound`]).
pub const CLIENT_BOUND: f64 = 0.9;

impl CellSummary {
    /// The name of every figure in summary.json, in the order of the fields: what summary.csv's
    /// columns and `per_round` list.
    pub const FIGURES: [&'static str; 20] = [
        "msgs_per_s",
        "p50_us",
        "p99_us",
        "p999_us",
        "max_us",
        "server_cpu_us_per_msg",
        "server_syscalls_per_msg",
        "server_cpu_us_per_msg_whole_life",
        "server_syscalls_per_msg_whole_life",
        "events_per_wait",
        "client_cpu_us_per_msg",
        "send_lateness_p50_us",
        "send_lateness_p99_us",
        "connections_per_s",
        "connect_p50_us",
        "connect_p99_us",
        "accept_spread",
        "empty_wakeups_per_accept",
        "server_busy",
        "client_busy",
    ];

    /// Every figure of the cell with its name ([`Self::FIGURES`]).
    pub fn figures(&self) -> [(&'static str, Option<Estimate>); 20] {
        let values = [
            self.msgs_per_s,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.server_cpu_us_per_msg,
            self.server_syscalls_per_msg,
            self.server_cpu_us_per_msg_whole_life,
            self.server_syscalls_per_msg_whole_life,
            self.events_per_wait,
            self.client_cpu_us_per_msg,
            self.send_lateness_p50_us,
            self.send_lateness_p99_us,
            self.connections_per_s,
            self.connect_p50_us,
            self.connect_p99_us,
            self.accept_spread,
            self.empty_wakeups_per_accept,
            self.server_busy,
            self.client_busy,
        ];
        std::array::from_fn(|i| (Self::FIGURES[i], values[i]))
    }
}

/// Two columns of a sweep at one row, compared on `metric` round by round.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct VerdictSummary {
    pub sweep: String,
    pub row: usize,
    /// What is compared: `msgs_per_s` (higher is better).
    pub metric: String,
    /// The two columns' labels.
    pub a: String,
    pub b: String,
    /// The per-round ratio a/b: its median and interval.
    pub ratio: Estimate,
    pub verdict: Judgement,
    /// What limits the verdict: "limited by the client: see cost" on msgs/s where either cell
    /// was bound by its client. Added within version 1: absent where nothing does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limited_by: Option<String>,
    /// The ratio a/b in each round, in round order (round k of a against round k of b): `ratio`
    /// is the median and interval of these. Added within version 1: absent in documents written
    /// before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_round: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_written_as_the_words_a_reader_sees() {
        let v = VerdictSummary {
            sweep: "connections".into(),
            row: 1000,
            metric: "msgs_per_s".into(),
            a: "epoll".into(),
            b: "threads".into(),
            ratio: Estimate {
                median: 1.5,
                lo: 1.4,
                hi: 1.7,
                confidence: 0.969,
            },
            verdict: Judgement::ABetter,
            limited_by: None,
            per_round: vec![1.4, 1.5, 1.5, 1.5, 1.6, 1.7],
        };
        let text = serde_json::to_string(&v).unwrap();
        assert!(text.contains(r#""verdict":"a better""#), "{text}");
        assert_eq!(serde_json::from_str::<VerdictSummary>(&text).unwrap(), v);
        let err = serde_json::from_str::<Judgement>(r#""a_better""#).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }

    /// Per-round values keep their figures' order and their nulls, both ways; a cell without
    /// them (written before them) reads with none.
    #[test]
    fn per_round_values_are_an_object_of_arrays_in_the_figures_order() {
        let per_round = PerRound(vec![
            ("p99_us".into(), vec![Some(80.0), None, Some(95.5)]),
            (
                "msgs_per_s".into(),
                vec![Some(20_000.0), Some(19_999.5), None],
            ),
        ]);
        let text = serde_json::to_string(&per_round).unwrap();
        assert_eq!(
            text,
            r#"{"p99_us":[80.0,null,95.5],"msgs_per_s":[20000.0,19999.5,null]}"#
        );
        let read: PerRound = serde_json::from_str(&text).unwrap();
        assert_eq!(read, per_round);
        assert_eq!(read.get("msgs_per_s").unwrap()[1], Some(19_999.5));
        assert!(read.get("p50_us").is_none());
        let err = serde_json::from_str::<PerRound>(r#"{"p99_us": 3}"#).unwrap_err();
        assert!(err.to_string().contains("expected a sequence"), "{err}");
    }

    #[test]
    fn a_cell_without_a_figure_field_is_an_error_not_a_missing_figure() {
        let cell = r#"{"id": "c-epoll-c10", "sweep": "c", "column": "epoll", "backend": "epoll",
            "row": 10, "status": "skipped", "reason": "why", "rounds": 0, "msgs_per_s": null,
            "p50_us": null, "p99_us": null, "server_cpu_us_per_msg": null,
            "server_syscalls_per_msg": null, "events_per_wait": null,
            "client_cpu_us_per_msg": null, "send_lateness_p50_us": null}"#;
        let err = serde_json::from_str::<CellSummary>(cell).unwrap_err();
        assert!(
            err.to_string()
                .contains("missing field `send_lateness_p99_us`"),
            "{err}"
        );
        let whole = cell.replace(
            r#""send_lateness_p50_us": null"#,
            r#""send_lateness_p50_us": null, "send_lateness_p99_us": null"#,
        );
        let read: CellSummary = serde_json::from_str(&whole).unwrap();
        assert_eq!(read.status, CellStatus::Skipped);
        // The fields added within version 1 are absent here: they read as none, and are left
        // out again when written.
        assert!(read.per_round.is_empty() && read.p999_us.is_none() && read.max_us.is_none());
        let written = serde_json::to_string(&read).unwrap();
        assert!(
            !written.contains("per_round") && !written.contains("p999_us"),
            "{written}"
        );
    }
}

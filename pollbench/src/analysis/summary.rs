//! A run directory's summary.json: every cell's figures as medians over its rounds with their
//! intervals ([`crate::analysis::stats`]), the cost figures derived from the server's and the client's own
//! counters, and the verdict of every pair of columns at each row of a sweep that differ in one
//! dimension (the server, or one of the load's settings). The report's tables
//! are written from it.

use std::collections::BTreeMap;
use std::path::Path;

use pollbench_schema::external::{CpuSecond, ExternalServer};
use pollbench_schema::file::{read_json, write_json_atomically, Versioned};
use pollbench_schema::results::{Cell, CellStatus, Meta};
use pollbench_schema::run::RunReport;
use pollbench_schema::server::{ServerSecond, ServerStats};
use pollbench_schema::summary::{CellSummary, Estimate, PerRound, Summary, CLIENT_BOUND, SCHEMA};

use crate::analysis::stats::{
    false_call_rate, interval_in_words, median_interval, order_statistics, Interval,
};
use crate::analysis::verdicts::{pairs_judged, verdicts, Judged};

/// The method, as summary.json states it, for a run of `rounds` rounds (None: a run from before
/// rounds, its repeats back to back).
fn method(rounds: Option<usize>) -> String {
    let interval = match rounds {
        Some(n) => format!(
            "with {n} rounds, {} (order statistics, distribution-free: from 6 rounds on the \
             narrowest interval of 95% or more, below 6 the extremes with the confidence they \
             have)",
            interval_in_words(n)
        ),
        None => "order statistics, distribution-free: from 6 rounds on the narrowest interval \
                 of 95% or more, below 6 the extremes with the confidence they have"
            .into(),
    };
    let false_calls = match rounds {
        Some(n) => format!(
            "{:.1}% with {n} rounds",
            100.0 * false_call_rate(order_statistics(n.max(1)).1)
        ),
        None => "one minus its interval's confidence".into(),
    };
    format!(
        "median over rounds; [lo, hi] the interval of the median: {interval}; verdicts from the \
         interval of the per-round ratio a/b, called only at 95% or more, between the columns \
         of a row that differ in one dimension (the server, its trigger mode, accept strategy or \
         threads, message size, pipeline, messages per connection, rate or client threads) or in \
         none (the same server twice), on each metric \
         where its sweep can resolve it (msgs/s in closed loop, p50 and p99 in open loop, \
         connections/s with churn, the server's CPU time and system calls per message \
         everywhere; lower is better for latency and cost); a verdict's false-call rate (a clear \
         difference where none is) is {false_calls}, and pairs_judged sums it per metric"
    )
}

/// One round of a cell: what load-gen and bench-server wrote.
struct Round {
    run: RunReport,
    /// None when the server left no statistics (it did not stop cleanly).
    server: Option<ServerStats>,
    /// What was read of an external server (in bench-server's place: `server` is None).
    external: Option<ExternalServer>,
}

/// The figures of one round of a cell, each None where its source did not record it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Figures {
    pub(super) msgs_per_s: Option<f64>,
    pub(super) p50_us: Option<f64>,
    pub(super) p99_us: Option<f64>,
    pub(super) p999_us: Option<f64>,
    pub(super) max_us: Option<f64>,
    pub(super) server_cpu_us_per_msg: Option<f64>,
    pub(super) server_syscalls_per_msg: Option<f64>,
    /// The two above over the measured window alone, where the server's readings cover it.
    pub(super) window_cpu_us_per_msg: Option<f64>,
    pub(super) window_syscalls_per_msg: Option<f64>,
    pub(super) events_per_wait: Option<f64>,
    pub(super) client_cpu_us_per_msg: Option<f64>,
    pub(super) send_lateness_p50_us: Option<f64>,
    pub(super) send_lateness_p99_us: Option<f64>,
    pub(super) connections_per_s: Option<f64>,
    pub(super) connect_p50_us: Option<f64>,
    pub(super) connect_p99_us: Option<f64>,
    pub(super) accept_spread: Option<f64>,
    pub(super) empty_wakeups_per_accept: Option<f64>,
    /// How busy each side was in the measured window: CPU time over (threads x window).
    pub(super) server_busy: Option<f64>,
    pub(super) client_busy: Option<f64>,
}

impl Figures {
    /// A round's figures of cell `cell`.
    fn of(round: &Round, cell: &Cell, size: usize) -> Figures {
        let run = &round.run;
        // Every load-gen of the cell ran its threads (a merged run lists its parts).
        let client_threads =
            cell.client_threads * run.clients.as_ref().map_or(1, |parts| parts.len().max(1));
        let server = round.server.as_ref();
        let window = server.and_then(|s| Window::of(s, run));
        if let Some(external) = &round.external {
            return Figures::of_external(run, external, cell.server_threads, client_threads);
        }
        Figures {
            server_cpu_us_per_msg: server.and_then(|s| server_cpu_us_per_msg(s, size)),
            server_syscalls_per_msg: server.and_then(|s| server_syscalls_per_msg(s, size)),
            window_cpu_us_per_msg: window.and_then(|w| w.cpu_us_per_msg(size)),
            window_syscalls_per_msg: window.and_then(|w| w.syscalls_per_msg(size)),
            events_per_wait: server
                .filter(|s| s.totals.counters.waits > 0)
                .map(|s| s.totals.events_per_wait),
            accept_spread: server
                .filter(|s| s.threads.len() > 1)
                .map(|s| s.totals.accept_spread),
            empty_wakeups_per_accept: server.and_then(empty_wakeups_per_accept),
            server_busy: server
                .zip(window)
                .and_then(|(s, w)| w.busy(s.threads.len())),
            ..Figures::of_load_gen(run, client_threads)
        }
    }

    /// A round's figures from load-gen's run alone (every server's cells have them), the server's
    /// left None.
    fn of_load_gen(run: &RunReport, client_threads: usize) -> Figures {
        Figures {
            msgs_per_s: Some(run.throughput_msgs_per_s),
            p50_us: Some(run.latency_us.p50 as f64),
            p99_us: Some(run.latency_us.p99 as f64),
            p999_us: Some(run.latency_us.p999 as f64),
            max_us: Some(run.latency_us.max as f64),
            client_cpu_us_per_msg: run.client_cpu_us_per_msg,
            send_lateness_p50_us: run.send_lateness_us.as_ref().map(|l| l.p50 as f64),
            send_lateness_p99_us: run.send_lateness_us.as_ref().map(|l| l.p99 as f64),
            connections_per_s: run.connections_per_s,
            connect_p50_us: run.connect_latency_us.as_ref().map(|l| l.p50 as f64),
            connect_p99_us: run.connect_latency_us.as_ref().map(|l| l.p99 as f64),
            client_busy: client_busy(run, client_threads),
            ..Figures::default()
        }
    }
}

impl Figures {
    /// A round against an external server: load-gen's figures, and the server's CPU time per
    /// message and busy fraction over the window from the readings of its CPU time at the whole
    /// seconds inside load-gen's window, the messages in that span being load-gen's (msgs/s x the
    /// span); nothing it would have to count itself.
    fn of_external(
        run: &RunReport,
        external: &ExternalServer,
        server_threads: usize,
        client_threads: usize,
    ) -> Figures {
        let cpu = |s: &CpuSecond| s.cpu_user_s + s.cpu_system_s;
        let span = run.window_start_unix_s.and_then(|start| {
            let mut inside = external
                .seconds
                .iter()
                .filter(|s| s.at_unix_s >= start && s.at_unix_s <= start + run.duration_s);
            let (first, last) = (inside.next()?, inside.next_back()?);
            let seconds = last.at_unix_s - first.at_unix_s;
            (seconds > 0.0).then(|| (cpu(last) - cpu(first), seconds))
        });
        let messages = |seconds: f64| run.throughput_msgs_per_s * seconds;
        Figures {
            window_cpu_us_per_msg: span
                .filter(|&(_, seconds)| messages(seconds) >= 1.0)
                .map(|(used, seconds)| used * 1e6 / messages(seconds)),
            server_busy: span
                .map(|(used, seconds)| used / (seconds * server_threads.max(1) as f64)),
            ..Figures::of_load_gen(run, client_threads)
        }
    }
}

/// load-gen's CPU time over (its threads x the window).
fn client_busy(run: &RunReport, client_threads: usize) -> Option<f64> {
    run.client_cpu_us_per_msg
        .map(|cpu| cpu * run.throughput_msgs_per_s / 1e6 / client_threads.max(1) as f64)
}

/// Messages the server echoed over its life: the bytes it wrote, in messages of `size` bytes.
fn server_messages(stats: &ServerStats, size: usize) -> Option<f64> {
    let messages = stats.totals.counters.bytes_out as f64 / size.max(1) as f64;
    (messages >= 1.0).then_some(messages)
}

/// The server's CPU time (user + system, over its life) per message it echoed, in microseconds.
fn server_cpu_us_per_msg(stats: &ServerStats, size: usize) -> Option<f64> {
    let cpu = stats.cpu.as_ref()?;
    Some((cpu.user_s + cpu.system_s) * 1e6 / server_messages(stats, size)?)
}

/// The system calls the server's loops made per message echoed.
fn server_syscalls_per_msg(stats: &ServerStats, size: usize) -> Option<f64> {
    Some(stats.totals.counters.syscalls? as f64 / server_messages(stats, size)?)
}

/// What the server did inside load-gen's measured window: the difference of its readings at the
/// first and the last whole second inside it.
#[derive(Clone, Copy)]
struct Window<'a> {
    first: &'a ServerSecond,
    last: &'a ServerSecond,
}

impl Window<'_> {
    /// The window of `run` in `stats`' readings: None without two readings inside it.
    fn of<'a>(stats: &'a ServerStats, run: &RunReport) -> Option<Window<'a>> {
        let start = run.window_start_unix_s?;
        Window::inside(stats.seconds.as_deref()?, start, start + run.duration_s)
    }

    /// The first and last of `readings` from `start` to `end` (Unix seconds), if two are.
    fn inside(readings: &[ServerSecond], start: f64, end: f64) -> Option<Window<'_>> {
        let mut inside = readings
            .iter()
            .filter(|s| s.at_unix_s >= start && s.at_unix_s <= end);
        let first = inside.next()?;
        let last = inside.next_back()?;
        Some(Window { first, last })
    }

    /// Messages echoed in the window: bytes written, in messages of `size` bytes.
    fn messages(&self, size: usize) -> Option<f64> {
        let bytes = self.last.counters.bytes_out - self.first.counters.bytes_out;
        let messages = bytes as f64 / size.max(1) as f64;
        (messages >= 1.0).then_some(messages)
    }

    fn cpu_us_per_msg(&self, size: usize) -> Option<f64> {
        let cpu = |s: &ServerSecond| s.cpu_user_s + s.cpu_system_s;
        Some((cpu(self.last) - cpu(self.first)) * 1e6 / self.messages(size)?)
    }

    /// The server's CPU time over (`threads` x the time between the readings).
    fn busy(&self, threads: usize) -> Option<f64> {
        let cpu = |s: &ServerSecond| s.cpu_user_s + s.cpu_system_s;
        let span = self.last.at_unix_s - self.first.at_unix_s;
        (span > 0.0).then(|| (cpu(self.last) - cpu(self.first)) / (span * threads.max(1) as f64))
    }

    fn syscalls_per_msg(&self, size: usize) -> Option<f64> {
        let calls = self.last.counters.syscalls? - self.first.counters.syscalls?;
        Some(calls as f64 / self.messages(size)?)
    }
}

/// Listener wake-ups that accepted nothing, per connection accepted.
fn empty_wakeups_per_accept(stats: &ServerStats) -> Option<f64> {
    let counters = &stats.totals.counters;
    let empty = counters.listener_wakeups_empty?;
    (counters.accepted > 0).then(|| empty as f64 / counters.accepted as f64)
}

/// The rounds of cell `c` that completed: ID.rK.* for each of a repeated cell's rounds, else ID.*.
/// Empty for a cell that did not complete; an error names a file that is there but unreadable.
fn rounds_of(dir: &Path, meta: &Meta, c: &Cell) -> Result<Vec<Round>, String> {
    let Some(outcome) = meta.outcome(&c.id).filter(|o| o.is_ok()) else {
        return Ok(Vec::new());
    };
    let stems: Vec<String> = match outcome.repeats.len() {
        0 | 1 => vec![c.id.clone()],
        n => (1..=n).map(|k| format!("{}.r{k}", c.id)).collect(),
    };
    let cells = dir.join("cells");
    stems
        .iter()
        .map(|stem| {
            let run = read_json(&cells.join(format!("{stem}.json")))?;
            let server_path = cells.join(format!("{stem}.server.json"));
            let external_path = cells.join(format!("{stem}.external.json"));
            Ok(Round {
                run,
                server: read_if_there(&server_path)?,
                external: read_if_there(&external_path)?,
            })
        })
        .collect()
}

/// The file at `path` if there is one.
fn read_if_there<T: serde::de::DeserializeOwned + Versioned>(
    path: &Path,
) -> Result<Option<T>, String> {
    path.exists().then(|| read_json(path)).transpose()
}

pub(super) fn estimate(i: Interval) -> Estimate {
    Estimate {
        median: i.median,
        lo: i.lo,
        hi: i.hi,
        confidence: i.confidence,
    }
}

/// The estimate of one figure over rounds: None unless every round has it.
fn over_rounds(figures: &[Figures], pick: fn(&Figures) -> Option<f64>) -> Option<Estimate> {
    let values: Option<Vec<f64>> = figures.iter().map(pick).collect();
    values.and_then(|v| median_interval(&v)).map(estimate)
}

/// A figure of summary.json and its value in a round, as the cell's estimate takes it.
type Pick = (&'static str, fn(&Figures) -> Option<f64>);

/// Every figure of a cell (in the order of [`CellSummary::FIGURES`]) and its value in a round,
/// with the server's cost over the measured window.
const PICKS: [Pick; 20] = [
    ("msgs_per_s", |f| f.msgs_per_s),
    ("p50_us", |f| f.p50_us),
    ("p99_us", |f| f.p99_us),
    ("p999_us", |f| f.p999_us),
    ("max_us", |f| f.max_us),
    ("server_cpu_us_per_msg", |f| f.window_cpu_us_per_msg),
    ("server_syscalls_per_msg", |f| f.window_syscalls_per_msg),
    ("server_cpu_us_per_msg_whole_life", |f| {
        f.server_cpu_us_per_msg
    }),
    ("server_syscalls_per_msg_whole_life", |f| {
        f.server_syscalls_per_msg
    }),
    ("events_per_wait", |f| f.events_per_wait),
    ("client_cpu_us_per_msg", |f| f.client_cpu_us_per_msg),
    ("send_lateness_p50_us", |f| f.send_lateness_p50_us),
    ("send_lateness_p99_us", |f| f.send_lateness_p99_us),
    ("connections_per_s", |f| f.connections_per_s),
    ("connect_p50_us", |f| f.connect_p50_us),
    ("connect_p99_us", |f| f.connect_p99_us),
    ("accept_spread", |f| f.accept_spread),
    ("empty_wakeups_per_accept", |f| f.empty_wakeups_per_accept),
    ("server_busy", |f| f.server_busy),
    ("client_busy", |f| f.client_busy),
];

/// Every figure's value in each round, as the cell's estimates take them: the server's cost over
/// its whole life unless `windowed` (every round has the window's figure); a figure no round has
/// is left out.
fn per_round(figures: &[Figures], windowed: bool) -> PerRound {
    PerRound(
        PICKS
            .iter()
            .map(|&(name, pick)| {
                let pick = match name {
                    "server_cpu_us_per_msg" if !windowed => |f: &Figures| f.server_cpu_us_per_msg,
                    "server_syscalls_per_msg" if !windowed => {
                        |f: &Figures| f.server_syscalls_per_msg
                    }
                    _ => pick,
                };
                (
                    name.to_string(),
                    figures.iter().map(pick).collect::<Vec<_>>(),
                )
            })
            .filter(|(_, values)| values.iter().any(Option::is_some))
            .collect(),
    )
}

/// A cell's server cost figures and the span they are over.
struct ServerCost {
    cpu: Option<Estimate>,
    syscalls: Option<Estimate>,
    over: Option<String>,
}

/// `server_cost_over` of a cell whose server cost is over the measured window.
const WINDOW: &str = "measured window";

impl ServerCost {
    /// Over the measured window where every round has the window's CPU figure (a cell's rounds
    /// are not mixed), else over the server's whole life.
    fn of(figures: &[Figures]) -> ServerCost {
        let window = over_rounds(figures, |f| f.window_cpu_us_per_msg);
        match window {
            Some(cpu) => ServerCost {
                cpu: Some(cpu),
                syscalls: over_rounds(figures, |f| f.window_syscalls_per_msg),
                over: Some(WINDOW.into()),
            },
            None => {
                let cpu = over_rounds(figures, |f| f.server_cpu_us_per_msg);
                ServerCost {
                    over: cpu.is_some().then(|| "whole life".into()),
                    cpu,
                    syscalls: over_rounds(figures, |f| f.server_syscalls_per_msg),
                }
            }
        }
    }
}

/// Whether cell `c` is bound by its client, from how busy load-gen's threads were: in closed loop
/// from [`CLIENT_BOUND`] on; never in open loop, where load-gen spins until each send is due (its
/// send lateness says whether it kept up); unknown without the busy figure.
fn client_bound(c: &Cell, client_busy: Option<Estimate>) -> Option<bool> {
    client_busy.map(|busy| c.rate.is_none() && busy.median >= CLIENT_BOUND)
}

/// The summary of run directory `dir`, from meta.json and the cells' files.
pub fn summarize(dir: &Path, meta: &Meta) -> Result<Summary, String> {
    let mut cells = Vec::with_capacity(meta.cells.len());
    // Each completed cell's figures by round, for the verdicts (only when rounds interleave).
    let mut by_round: BTreeMap<&str, Judged> = BTreeMap::new();
    for c in &meta.cells {
        let by_idle = meta
            .cells
            .iter()
            .any(|other| other.sweep == c.sweep && other.idle > 0);
        let size = pollbench_common::parse_bytes(&c.size)
            .map_err(|e| format!("{}: message size {:?}: {e}", c.id, c.size))?;
        let rounds = rounds_of(dir, meta, c)?;
        let figures: Vec<Figures> = rounds.iter().map(|r| Figures::of(r, c, size)).collect();
        if meta.rounds.is_some() && figures.len() >= 2 {
            let judged = Judged {
                cell: c,
                figures: figures.clone(),
            };
            by_round.insert(c.id.as_str(), judged);
        }
        let outcome = meta.outcome(&c.id);
        let cost = ServerCost::of(&figures);
        let client_busy = over_rounds(&figures, |f| f.client_busy);
        let windowed = cost.over.as_deref() == Some(WINDOW);
        cells.push(CellSummary {
            id: c.id.clone(),
            sweep: c.sweep.clone(),
            column: c.label.clone(),
            backend: c.backend.clone(),
            row: c.row(by_idle),
            // A cell not run (an interrupted suite) is reported as skipped, with that reason.
            status: outcome.map_or(CellStatus::Skipped, |o| o.status),
            reason: outcome.map_or(Some("not run (the suite was interrupted)".into()), |o| {
                o.reason.clone()
            }),
            rounds: figures.len(),
            msgs_per_s: over_rounds(&figures, |f| f.msgs_per_s),
            p50_us: over_rounds(&figures, |f| f.p50_us),
            p99_us: over_rounds(&figures, |f| f.p99_us),
            p999_us: over_rounds(&figures, |f| f.p999_us),
            max_us: over_rounds(&figures, |f| f.max_us),
            server_cpu_us_per_msg: cost.cpu,
            server_syscalls_per_msg: cost.syscalls,
            server_cost_over: cost.over,
            server_cpu_us_per_msg_whole_life: over_rounds(&figures, |f| f.server_cpu_us_per_msg),
            server_syscalls_per_msg_whole_life: over_rounds(&figures, |f| {
                f.server_syscalls_per_msg
            }),
            events_per_wait: over_rounds(&figures, |f| f.events_per_wait),
            client_cpu_us_per_msg: over_rounds(&figures, |f| f.client_cpu_us_per_msg),
            send_lateness_p50_us: over_rounds(&figures, |f| f.send_lateness_p50_us),
            send_lateness_p99_us: over_rounds(&figures, |f| f.send_lateness_p99_us),
            connections_per_s: over_rounds(&figures, |f| f.connections_per_s),
            connect_p50_us: over_rounds(&figures, |f| f.connect_p50_us),
            connect_p99_us: over_rounds(&figures, |f| f.connect_p99_us),
            accept_spread: over_rounds(&figures, |f| f.accept_spread),
            empty_wakeups_per_accept: over_rounds(&figures, |f| f.empty_wakeups_per_accept),
            server_busy: over_rounds(&figures, |f| f.server_busy),
            client_busy,
            client_bound: client_bound(c, client_busy),
            per_round: per_round(&figures, windowed),
        });
    }
    let verdicts = verdicts(&cells, &by_round);
    Ok(Summary {
        schema: SCHEMA.into(),
        method: method(meta.rounds.as_ref().map(|r| r.order.len())),
        cells,
        pairs_judged: pairs_judged(&verdicts),
        verdicts,
    })
}

/// Write summary.json and summary.csv of run directory `dir` from its meta.json and the cells'
/// files; the summary.
pub fn write(dir: &Path, meta: &Meta) -> Result<Summary, String> {
    let summary = summarize(dir, meta)?;
    let path = dir.join("summary.json");
    write_json_atomically(&path, &summary).map_err(|e| format!("{}: {e}", path.display()))?;
    crate::analysis::csv::write(dir, &summary)?;
    Ok(summary)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A completed cell of 6 rounds, without figures (a test sets those it needs).
    pub(crate) fn cell(id: &str, sweep: &str, column: &str, row: usize) -> CellSummary {
        CellSummary {
            id: id.into(),
            sweep: sweep.into(),
            column: column.into(),
            backend: "epoll".into(),
            row,
            status: CellStatus::Ok,
            reason: None,
            rounds: 6,
            msgs_per_s: None,
            p50_us: None,
            p99_us: None,
            p999_us: None,
            max_us: None,
            server_cpu_us_per_msg: None,
            server_syscalls_per_msg: None,
            server_cost_over: None,
            server_cpu_us_per_msg_whole_life: None,
            server_syscalls_per_msg_whole_life: None,
            events_per_wait: None,
            client_cpu_us_per_msg: None,
            send_lateness_p50_us: None,
            send_lateness_p99_us: None,
            connections_per_s: None,
            connect_p50_us: None,
            connect_p99_us: None,
            accept_spread: None,
            empty_wakeups_per_accept: None,
            server_busy: None,
            client_busy: None,
            client_bound: None,
            per_round: PerRound::default(),
        }
    }

    /// The summary of committed run `run` (under results/).
    fn committed(run: &str) -> Summary {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../results")
            .join(run);
        summarize(&dir, &Meta::read(&dir).unwrap()).unwrap()
    }

    /// The per-round values are picked for every figure, by the same name, in the same order.
    #[test]
    fn every_figure_has_its_per_round_pick() {
        let picked: Vec<&str> = PICKS.iter().map(|(name, _)| *name).collect();
        assert_eq!(picked, CellSummary::FIGURES);
    }

    /// Every figure of every cell is the median and interval of its per-round values, which list
    /// every round (null where one lacks the figure), and every verdict's ratio those of its
    /// per-round ratios: a reader can redo the statistics from summary.json. On committed runs
    /// with rounds, churn, the server's window and whole-life cost, and a cell that failed.
    #[test]
    fn per_round_values_give_every_figures_median_and_interval() {
        let mut figures_checked = 0;
        for run in [
            "20261123T210857Z-vm-full",
            "20261123T232628Z-vm-full-accept",
            "20261202T065307Z-vm-completion-batch",
        ] {
            let summary = committed(run);
            for c in &summary.cells {
                let names = CellSummary::FIGURES;
                let listed: Vec<&str> = c.per_round.0.iter().map(|(n, _)| n.as_str()).collect();
                let mut in_order = names.to_vec();
                in_order.retain(|n| listed.contains(n));
                assert_eq!(listed, in_order, "{run} {}: figures' order", c.id);
                for (name, figure) in c.figures() {
                    let values = c.per_round.get(name);
                    if let Some(values) = values {
                        assert_eq!(values.len(), c.rounds, "{run} {} {name}", c.id);
                    }
                    let Some(e) = figure else {
                        assert!(
                            values.is_none_or(|v| v.contains(&None)),
                            "{run} {} {name}: every round has it, but no estimate",
                            c.id
                        );
                        continue;
                    };
                    let values: Vec<f64> = values
                        .unwrap_or_else(|| panic!("{run} {} {name}: no rounds", c.id))
                        .iter()
                        .map(|v| v.expect("an estimate's rounds all have it"))
                        .collect();
                    assert_eq!(
                        median_interval(&values).map(estimate),
                        Some(e),
                        "{run} {} {name}: {values:?}",
                        c.id
                    );
                    figures_checked += 1;
                }
                // Every figure summary.json writes is one the per-round values and summary.csv
                // list.
                let json = serde_json::to_value(c).unwrap();
                for (key, value) in json.as_object().unwrap() {
                    if value.get("median").is_some() {
                        assert!(names.contains(&key.as_str()), "{key} is not in figures()");
                    }
                }
            }
            assert!(!summary.verdicts.is_empty(), "{run}");
            for v in &summary.verdicts {
                assert_eq!(
                    median_interval(&v.per_round).map(estimate),
                    Some(v.ratio),
                    "{run} {v:?}"
                );
            }
        }
        assert!(figures_checked > 1000, "{figures_checked}");
    }

    fn reading(at_unix_s: f64, cpu_s: f64, bytes_out: u64, syscalls: u64) -> ServerSecond {
        let counters = pollbench_schema::server::Counters {
            bytes_out,
            syscalls: Some(syscalls),
            ..Default::default()
        };
        ServerSecond {
            at_unix_s,
            cpu_user_s: cpu_s / 2.0,
            cpu_system_s: cpu_s / 2.0,
            counters,
        }
    }

    /// Client-bound is one rule: closed loop with load-gen busy from 0.90 on; open loop never.
    #[test]
    fn a_cell_is_client_bound_in_closed_loop_from_0_90_busy_only() {
        let cell = |rate: Option<u64>| -> Cell {
            serde_json::from_value(serde_json::json!({
                "id": "c", "label": "epoll", "sweep": "s", "backend": "epoll", "trigger": null,
                "accept": null, "connections": 10, "idle": 0, "rate": rate, "size": "64B",
                "pipeline": 1, "server_threads": 1, "client_threads": 1
            }))
            .unwrap()
        };
        let busy = |median: f64| {
            Some(Estimate {
                median,
                lo: median - 0.05,
                hi: median,
                confidence: 0.969,
            })
        };
        assert_eq!(client_bound(&cell(None), busy(0.93)), Some(true));
        assert_eq!(client_bound(&cell(None), busy(0.90)), Some(true));
        assert_eq!(client_bound(&cell(None), busy(0.89)), Some(false));
        assert_eq!(client_bound(&cell(Some(60_000)), busy(1.0)), Some(false));
        assert_eq!(client_bound(&cell(None), None), None);
    }

    /// The window's cost is the difference of the readings that bound it: what came before (a
    /// costly start-up) and after (shutdown) is left out.
    #[test]
    fn the_windows_cost_leaves_out_what_came_before_and_after_it() {
        let readings = [
            reading(100.001, 5.0, 0, 10), // start-up: 5 s of CPU, nothing echoed
            reading(101.002, 5.5, 64_000, 1_010), // the window opens at 100.5
            reading(102.001, 6.0, 128_000, 2_010), //
            reading(103.003, 6.5, 192_000, 3_010), // it closes at 103.5
            reading(104.001, 9.0, 192_000, 3_020), // shutdown
        ];
        let w = Window::inside(&readings, 100.5, 103.5).expect("two readings inside");
        // 2 s of it: 1 s of CPU for 2,000 messages of 64 B, 2,000 calls.
        assert!((w.cpu_us_per_msg(64).unwrap() - 500.0).abs() < 1e-6);
        assert!((w.syscalls_per_msg(64).unwrap() - 1.0).abs() < 1e-9);
        // Two threads over 2 s spent 1 s of CPU: a quarter busy.
        assert!((w.busy(2).unwrap() - 0.25).abs() < 0.01);
        // One reading inside is no window.
        assert!(Window::inside(&readings, 100.5, 101.9).is_none());
        // Rounds are not mixed: one round without a window puts the cell on whole-life figures.
        let figures = |window: Option<f64>| Figures {
            server_cpu_us_per_msg: Some(9.0),
            window_cpu_us_per_msg: window,
            ..Figures::default()
        };
        let windowed = ServerCost::of(&[figures(Some(4.0)), figures(Some(4.0))]);
        assert_eq!(windowed.over.as_deref(), Some("measured window"));
        assert_eq!(windowed.cpu.map(|e| e.median), Some(4.0));
        let mixed = ServerCost::of(&[figures(Some(4.0)), figures(None)]);
        assert_eq!(mixed.over.as_deref(), Some("whole life"));
        assert_eq!(mixed.cpu.map(|e| e.median), Some(9.0));
    }
}

//! `load-gen run --json`: one run's configuration, throughput, latency and errors. Documented in
//! load-gen/README.md; written by load-gen, read by the suite pipeline.

use std::net::IpAddr;
use std::path::PathBuf;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::file::Versioned;

/// The schema string of a run document.
pub const SCHEMA: &str = "pollbench.load-gen.run/1";

/// A run's options, as given (durations in seconds).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// The echo server, IP:PORT.
    pub target: String,
    /// Connections that carry load.
    pub connections: usize,
    /// Client threads asked for (null: one per core).
    #[serde(deserialize_with = "crate::file::required")]
    pub threads: Option<usize>,
    pub duration: f64,
    pub warmup: f64,
    /// Message size in bytes.
    pub size: usize,
    pub pipeline: usize,
    /// Open loop: messages per second over all connections; null for closed loop.
    #[serde(deserialize_with = "crate::file::required")]
    pub rate: Option<usize>,
    pub idle: usize,
    pub connect_rate: usize,
    pub source: Vec<IpAddr>,
    /// Cores the client threads were pinned to, round robin (null: not pinned).
    #[serde(deserialize_with = "crate::file::required")]
    pub cpus: Option<Vec<usize>>,
    /// The client's readiness backend.
    pub backend: String,
    pub timeout: f64,
    pub connect_timeout: f64,
    #[serde(deserialize_with = "crate::file::required")]
    pub json: Option<PathBuf>,
    #[serde(deserialize_with = "crate::file::required")]
    pub hlog: Option<PathBuf>,
    /// Open loop: how long before each due send the client stops sleeping and busy-polls (seconds;
    /// 0 = never spins). Added within version 1: absent (None) in documents written before it.
    #[serde(default)]
    pub spin: Option<f64>,
    /// Connection churn (`--messages-per-connection`): each connection sends this many messages,
    /// closes, and is replaced by a new one at once; null when connections are kept. Added within
    /// version 1: absent (None) in documents written before it.
    #[serde(default)]
    pub messages_per_connection: Option<u64>,
    /// `--start-at`: the wall-clock time (Unix seconds) the load was to start at, once connected,
    /// so that several clients start together; null when it started as soon as it was connected.
    /// Added within version 1: absent (None) in documents written before it.
    #[serde(default)]
    pub start_at: Option<f64>,
}

/// Latency percentiles in microseconds.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    /// The percentiles of a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// Errors by kind.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Errors {
    /// Connections that could not be established.
    pub connect: u64,
    /// Echoed bytes that differed from what was sent.
    pub mismatch: u64,
    /// Connections the server closed (end-of-file) before the run ended.
    pub closed: u64,
    /// Connections reset by the server.
    pub reset: u64,
    /// Messages not echoed within --timeout of when they were due.
    pub timeout: u64,
}

impl Errors {
    /// Add another count to this one.
    pub fn add(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.mismatch += o.mismatch;
        self.closed += o.closed;
        self.reset += o.reset;
        self.timeout += o.timeout;
    }

    /// All errors of every kind.
    pub fn total(&self) -> u64 {
        self.connect + self.mismatch + self.closed + self.reset + self.timeout
    }

    /// Each kind with its count, in a fixed order.
    pub fn by_kind(&self) -> [(&'static str, u64); 5] {
        [
            ("connect", self.connect),
            ("mismatch", self.mismatch),
            ("closed", self.closed),
            ("reset", self.reset),
            ("timeout", self.timeout),
        ]
    }
}

/// One measured second.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct IntervalReport {
    pub second: usize,
    pub throughput_msgs_per_s: u64,
    /// Corrected p99 of the second, in microseconds.
    pub p99_us: u64,
}

/// The `--json` document of one run.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RunReport {
    pub schema: String,
    pub config: RunConfig,
    /// Connections that carried load (those that connected).
    pub connections: usize,
    pub connections_alive_at_end: usize,
    /// Messages echoed inside the measured window.
    pub messages: u64,
    /// Messages due inside the measured window that were not echoed by its end.
    pub unfinished_messages: u64,
    pub bytes: u64,
    /// How long the measured window lasted, in seconds.
    pub duration_s: f64,
    /// When the measured window opened, in Unix seconds (wall clock): what other programs'
    /// per-second records (bench-server's) are cut to. Added within version 1: absent (None) in
    /// documents written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start_unix_s: Option<f64>,
    pub throughput_msgs_per_s: f64,
    pub throughput_bytes_per_s: f64,
    /// Corrected (from the intended send time in open loop).
    pub latency_us: Percentiles,
    /// From the actual send.
    pub latency_uncorrected_us: Percentiles,
    pub errors: Errors,
    pub intervals: Vec<IntervalReport>,
    /// Why the run ended before its duration ("interrupted", every connection gone), if it did.
    #[serde(deserialize_with = "crate::file::required")]
    pub stopped_early: Option<String>,
    /// CPU time load-gen itself used per message, in microseconds (user + system, every thread,
    /// from the measured window's opening to the workers' end, per message measured in it).
    #[serde(deserialize_with = "crate::file::required")]
    pub client_cpu_us_per_msg: Option<f64>,
    /// Open loop: each measured message's send lateness, its actual send minus its intended send
    /// time, in microseconds (the client's own lateness, and a message's wait for a pipeline slot
    /// behind a slow server); over the same messages as `latency_us`. Null in closed loop, which
    /// has no intended time. Added within version 1: absent (None) in documents written before it.
    #[serde(default)]
    pub send_lateness_us: Option<Percentiles>,
    /// Connection churn: connections established inside the measured window. Null without churn.
    /// Added within version 1: absent (None) in documents written before it.
    #[serde(default)]
    pub connects: Option<u64>,
    /// Connection churn: `connects` per second of the measured window. Null without churn. Added
    /// within version 1: absent (None) in documents written before it.
    #[serde(default)]
    pub connections_per_s: Option<f64>,
    /// Connection churn: connect() to established, in microseconds, over the connections
    /// established in the measured window (its own histogram; in the hlog as lines tagged
    /// `Tag=connect`). Null without churn. Added within version 1: absent (None) in documents
    /// written before it.
    #[serde(default)]
    pub connect_latency_us: Option<Percentiles>,
    /// A cell run by several load-gen clients at once (a suite's `clients`): this document is
    /// their merge (counts added, percentiles from the added histograms of their hlogs), and
    /// these are the parts. Null for one client's own run. Added within version 1.
    #[serde(default)]
    pub clients: Option<Vec<ClientPart>>,
}

/// One client's part of a merged run.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ClientPart {
    /// Where it ran: the client host's address (`topology = "netns"`), or `local N`.
    pub host: String,
    pub connections: usize,
    pub messages: u64,
    pub throughput_msgs_per_s: f64,
    /// Corrected p99, in microseconds.
    pub p99_us: u64,
    /// Its errors, of every kind.
    pub errors: u64,
}

impl Versioned for RunReport {
    const SCHEMA: &'static str = SCHEMA;
    fn schema(&self) -> &str {
        &self.schema
    }
}

impl RunReport {
    /// What went wrong in the run, in one line: errors by kind, why it stopped early, and a window
    /// with no message at all; None for a clean run.
    pub fn failure_summary(&self) -> Option<String> {
        let mut parts: Vec<String> = self
            .errors
            .by_kind()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        if let Some(why) = &self.stopped_early {
            parts.push(format!("stopped early: {why}"));
        }
        if self.messages == 0 {
            parts.push(format!(
                "no message completed in the measured window ({} unfinished)",
                self.unfinished_messages
            ));
        }
        (!parts.is_empty()).then(|| format!("errors: {}", parts.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The send-lateness field of [`SAMPLE`], its last.
    const LATENESS: &str = r#""send_lateness_us": {"p50": 1, "p90": 2, "p99": 9, "p999": 40, "p9999": 900, "max": 1200, "mean": 1.4}"#;

    /// A run document as load-gen writes it (the reference run's shape).
    pub const SAMPLE: &str = r#"{
      "schema": "pollbench.load-gen.run/1",
      "config": {"target": "127.0.0.1:38023", "connections": 10, "threads": 1, "duration": 4.0,
                 "warmup": 1.0, "size": 64, "pipeline": 1, "rate": 20000, "idle": 0,
                 "connect_rate": 0, "source": [], "cpus": [1], "backend": "epoll", "timeout": 5.0,
                 "connect_timeout": 3.0, "json": "a.json", "hlog": null, "spin": 0.00005},
      "connections": 10, "connections_alive_at_end": 10, "messages": 80000,
      "unfinished_messages": 0, "bytes": 5120000, "duration_s": 4.0,
      "throughput_msgs_per_s": 20000.0, "throughput_bytes_per_s": 1280000.0,
      "latency_us": {"p50": 83, "p90": 100, "p99": 400, "p999": 2000, "p9999": 4000, "max": 4195, "mean": 95.5},
      "latency_uncorrected_us": {"p50": 44, "p90": 60, "p99": 300, "p999": 1500, "p9999": 3000, "max": 4000, "mean": 50.1},
      "errors": {"connect": 0, "mismatch": 0, "closed": 0, "reset": 0, "timeout": 2},
      "intervals": [{"second": 0, "throughput_msgs_per_s": 20000, "p99_us": 400}],
      "stopped_early": null, "client_cpu_us_per_msg": 9.5,
      "send_lateness_us": {"p50": 1, "p90": 2, "p99": 9, "p999": 40, "p9999": 900, "max": 1200, "mean": 1.4}
    }"#;

    #[test]
    fn a_run_document_reads_typed_and_its_failure_is_summarised() {
        let r: RunReport = serde_json::from_str(SAMPLE).unwrap();
        assert_eq!(r.latency_us.p99, 400);
        assert_eq!(r.config.cpus, Some(vec![1]));
        assert_eq!(r.failure_summary().as_deref(), Some("errors: 2 timeout"));
        let back: RunReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        // A field the pipeline reads, missing: an error naming it, not a zero.
        let missing = SAMPLE.replace("\"throughput_msgs_per_s\": 20000.0,", "");
        let err = serde_json::from_str::<RunReport>(&missing).unwrap_err();
        assert!(err.to_string().contains("throughput_msgs_per_s"), "{err}");
        // So is an optional one: null is a value, absence is an error.
        let missing = SAMPLE.replace("\"stopped_early\": null,", "");
        let err = serde_json::from_str::<RunReport>(&missing).unwrap_err();
        assert!(err.to_string().contains("stopped_early"), "{err}");
        assert_eq!(r.send_lateness_us.as_ref().map(|l| l.p99), Some(9));
        assert_eq!(r.config.spin, Some(0.00005));
        // The churn fields, present, read back.
        let churn = SAMPLE
            .replace("\"spin\": 0.00005}", "\"spin\": 0.00005, \"messages_per_connection\": 10}")
            .replace(
                LATENESS,
                &format!(
                    "{LATENESS}, \"connects\": 8000, \"connections_per_s\": 2000.0, \
                     \"connect_latency_us\": {{\"p50\": 30, \"p90\": 40, \"p99\": 90, \"p999\": 200, \
                     \"p9999\": 300, \"max\": 310, \"mean\": 33.0}}"
                ),
            );
        let c: RunReport = serde_json::from_str(&churn).unwrap();
        assert_eq!(c.config.messages_per_connection, Some(10));
        assert_eq!(c.connects, Some(8000));
        assert_eq!(c.connections_per_s, Some(2000.0));
        assert_eq!(c.connect_latency_us.as_ref().map(|l| l.p99), Some(90));
        let back: RunReport = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn a_document_from_before_send_lateness_and_spin_reads_them_as_none() {
        // Fields added within version 1: a run written before them (every committed result)
        // still reads, with the new fields absent rather than an error.
        let old = SAMPLE
            .replace(", \"spin\": 0.00005", "")
            .replace(&format!(",\n      {LATENESS}"), "");
        assert!(
            !old.contains("spin") && !old.contains("send_lateness"),
            "{old}"
        );
        let r: RunReport = serde_json::from_str(&old).unwrap();
        assert_eq!(r.send_lateness_us, None);
        assert_eq!(r.config.spin, None);
        assert_eq!(r.config.messages_per_connection, None);
        assert_eq!((r.connects, r.connections_per_s), (None, None));
        assert_eq!(r.connect_latency_us, None);
        assert_eq!(r.latency_us.p50, 83);
        // Null (closed loop) reads as None too, and a written None is null, not left out.
        let closed = SAMPLE.replace(LATENESS, "\"send_lateness_us\": null");
        let r: RunReport = serde_json::from_str(&closed).unwrap();
        assert_eq!(r.send_lateness_us, None);
        let written = serde_json::to_value(&r).unwrap();
        assert!(written["send_lateness_us"].is_null());
        assert!(written
            .as_object()
            .unwrap()
            .contains_key("send_lateness_us"));
    }
}

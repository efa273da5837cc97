//! `bench-server --stats-json`: what the server did in one run — its configuration, and per event
//! loop (or baseline) what it accepted, read, wrote and waited for. Documented in
//! bench-server/README.md; written by bench-server on SIGINT/SIGTERM, through these structs.
//!
//! Every field is required, `null` included: a document that lacks a field (an `Option` too) is an
//! error naming that field, never a silent default. Unknown fields are ignored, so a field added
//! within version 1 does not break an older reader; a document written before a field was added
//! is refused by a reader that has it (the reference run's server files predate
//! `config.mechanism`; nothing reads them).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::file::Versioned;

/// The `schema` string of a stats document, version 1.
pub const SCHEMA: &str = "pollbench.bench-server.stats/1";

/// The whole `--stats-json` document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerStats {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// What ran: the checked command line, defaults filled in.
    pub config: ServerConfig,
    /// The address actually listened on (port 0 resolved).
    pub listen_addr: SocketAddr,
    /// Heap allocations (and reallocations) since start; `null` unless bench-server was built with
    /// the `count-allocs` feature.
    #[serde(deserialize_with = "crate::file::required")]
    pub allocations: Option<u64>,
    /// Seconds from listening to the stop signal.
    pub duration_s: f64,
    /// The sum over threads, with derived ratios.
    pub totals: Totals,
    /// One entry per event loop (the baselines have one, for all their threads).
    pub threads: Vec<ThreadStats>,
}

impl Versioned for ServerStats {
    const SCHEMA: &'static str = SCHEMA;
    fn schema(&self) -> &str {
        &self.schema
    }
}

/// The server's configuration, as it ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerConfig {
    /// `--addr` as given (port 0: any free port; see [`ServerStats::listen_addr`]).
    pub addr: SocketAddr,
    /// The plain `--backend` name: `select`, `poll`, `epoll`, `kqueue`, `io_uring`, `threads`,
    /// `tokio`. Tools match on it.
    pub backend: String,
    /// What runs it, for readers: the backend's name, except `kqueue (libkqueue)` where kqueue is
    /// libkqueue, the user-space kqueue on epoll (Linux). Reports print it.
    pub mechanism: String,
    /// The `--trigger` value the loops ran with (`level`, `edge`, `oneshot`); `null` for the
    /// baselines, where it does not apply.
    #[serde(deserialize_with = "crate::file::required")]
    pub trigger: Option<String>,
    /// The `--accept` strategy (`reuseport`, `exclusive`, `shared`, `acceptor`); `null` for the
    /// baselines.
    #[serde(deserialize_with = "crate::file::required")]
    pub accept: Option<String>,
    /// Event-loop threads (tokio: worker threads; threads: unused, one thread per connection).
    pub threads: usize,
    /// Whether `--pin` was given (the cores are in [`ThreadStats::core`]).
    pub pinned: bool,
    /// Most connections open at once, over all loops.
    pub max_conns: usize,
    /// Echo buffer per connection, in bytes.
    pub buf_size: usize,
    /// Most events one wait returns.
    pub events: usize,
    /// Busy-poll window in microseconds (0: waits block).
    pub busy_poll_us: u64,
}

/// What a thread counted (a loop's own running counts too: bench-server counts in this struct).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed (by the client, an error, or shutdown).
    pub closed: u64,
    /// Connections accepted but closed at once: the backend could not watch them (select above
    /// FD_SETSIZE) or registration failed.
    pub rejected: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// read() calls that returned data or end-of-file.
    pub reads: u64,
    /// write() calls that wrote something.
    pub writes: u64,
    /// Calls to wait, the zero-timeout polls of `--busy-poll` included.
    pub waits: u64,
    /// Events returned by all waits.
    pub events: u64,
    /// Waits that returned events but led to no work (nothing accepted, read or written): the
    /// thundering herd and spurious wake-ups.
    pub empty_wakeups: u64,
    /// Times accepting was paused (connection limit, or EMFILE/ENFILE).
    pub accept_pauses: u64,
}

impl Counters {
    /// Open connections: accepted minus closed and rejected.
    pub fn active(&self) -> u64 {
        self.accepted.saturating_sub(self.closed + self.rejected)
    }

    /// Add `other`'s counts to these.
    pub fn add(&mut self, other: &Counters) {
        self.accepted += other.accepted;
        self.closed += other.closed;
        self.rejected += other.rejected;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.reads += other.reads;
        self.writes += other.writes;
        self.waits += other.waits;
        self.events += other.events;
        self.empty_wakeups += other.empty_wakeups;
        self.accept_pauses += other.accept_pauses;
    }
}

/// One thread's section: an event loop, or a baseline's threads together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadStats {
    /// The loop's index, from 0.
    pub id: usize,
    /// The core the loop was pinned to; `null` when not pinned.
    #[serde(deserialize_with = "crate::file::required")]
    pub core: Option<usize>,
    /// Connections open when shutdown began.
    pub active: u64,
    /// Its counts, as fields of this object.
    #[serde(flatten)]
    pub counters: Counters,
}

/// The sum over threads, with derived ratios.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Connections open when shutdown began, over all threads.
    pub active: u64,
    /// The threads' counts added up, as fields of this object.
    #[serde(flatten)]
    pub counters: Counters,
    /// Events per wait (0 when there was no wait).
    pub events_per_wait: f64,
    /// Spread of accepted connections over threads: (max - min) / mean; 0 = perfectly even (or
    /// nothing accepted).
    pub accept_spread: f64,
}

impl Totals {
    /// The totals of these threads.
    pub fn of(threads: &[ThreadStats]) -> Totals {
        let mut counters = Counters::default();
        for t in threads {
            counters.add(&t.counters);
        }
        let accepted: Vec<u64> = threads.iter().map(|t| t.counters.accepted).collect();
        let mean = accepted.iter().sum::<u64>() as f64 / accepted.len().max(1) as f64;
        let spread = match (accepted.iter().max(), accepted.iter().min()) {
            (Some(&max), Some(&min)) if mean > 0.0 => (max - min) as f64 / mean,
            _ => 0.0,
        };
        Totals {
            active: threads.iter().map(|t| t.active).sum(),
            counters,
            events_per_wait: if counters.waits == 0 {
                0.0
            } else {
                counters.events as f64 / counters.waits as f64
            },
            accept_spread: spread,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::read_json;

    /// A document as bench-server writes it today (`--backend epoll --threads 2 --pin`, one
    /// second of load-gen). Only `duration_s` is shortened (it was 1.1353396550000001):
    /// serde_json without its `float_roundtrip` feature may read a float one ulp off, and the test
    /// compares the document written back byte for byte.
    const CURRENT: &str = r#"{
  "schema": "pollbench.bench-server.stats/1",
  "config": {
    "addr": "127.0.0.1:0",
    "backend": "epoll",
    "mechanism": "epoll",
    "trigger": "edge",
    "accept": "reuseport",
    "threads": 2,
    "pinned": true,
    "max_conns": 100000,
    "buf_size": 16384,
    "events": 1024,
    "busy_poll_us": 0
  },
  "listen_addr": "127.0.0.1:40037",
  "allocations": null,
  "duration_s": 1.135339655,
  "totals": {
    "active": 0,
    "accepted": 4,
    "closed": 4,
    "rejected": 0,
    "bytes_in": 1454976,
    "bytes_out": 1454976,
    "reads": 22737,
    "writes": 22734,
    "waits": 22138,
    "events": 22737,
    "empty_wakeups": 0,
    "accept_pauses": 0,
    "events_per_wait": 1.0270575481073267,
    "accept_spread": 1.0
  },
  "threads": [
    {
      "id": 0,
      "core": 0,
      "active": 0,
      "accepted": 3,
      "closed": 3,
      "rejected": 0,
      "bytes_in": 574656,
      "bytes_out": 574656,
      "reads": 8982,
      "writes": 8979,
      "waits": 8380,
      "events": 8980,
      "empty_wakeups": 0,
      "accept_pauses": 0
    },
    {
      "id": 1,
      "core": 1,
      "active": 0,
      "accepted": 1,
      "closed": 1,
      "rejected": 0,
      "bytes_in": 880320,
      "bytes_out": 880320,
      "reads": 13755,
      "writes": 13755,
      "waits": 13758,
      "events": 13757,
      "empty_wakeups": 0,
      "accept_pauses": 0
    }
  ]
}
"#;

    /// Write `text` to a file of its own and read it as a stats document.
    fn read(name: &str, text: &str) -> Result<ServerStats, String> {
        let dir = std::env::temp_dir().join(format!("schema-server-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.server.json"));
        std::fs::write(&path, text).unwrap();
        let result = read_json::<ServerStats>(&path);
        std::fs::remove_file(&path).unwrap();
        result
    }

    /// The current document with `edit` applied to its JSON.
    fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut v: serde_json::Value = serde_json::from_str(CURRENT).unwrap();
        edit(&mut v);
        v.to_string()
    }

    #[test]
    fn a_current_document_reads_typed_and_writes_back_unchanged() {
        let stats = read("current", CURRENT).unwrap();
        assert_eq!(stats.config.mechanism, "epoll");
        assert_eq!(stats.config.accept.as_deref(), Some("reuseport"));
        assert_eq!(stats.allocations, None);
        assert_eq!(stats.totals.counters.reads, 22737);
        assert_eq!(stats.threads[1].core, Some(1));
        assert_eq!(stats.threads[0].counters.accepted, 3);
        // Same keys, same order, same values: the struct is the document.
        let mut written = serde_json::to_string_pretty(&stats).unwrap();
        written.push('\n');
        assert_eq!(written, CURRENT);
        // The totals are what Totals::of derives from the threads.
        assert_eq!(Totals::of(&stats.threads), stats.totals);
    }

    #[test]
    fn a_missing_field_is_an_error_naming_the_file_and_the_field() {
        // (the object, as a JSON pointer, and the field removed from it): plain fields, `Option`s
        // (which serde alone would read as `None`), nested and flattened ones.
        let cases = [
            ("", "duration_s"),
            ("", "allocations"),
            ("/config", "mechanism"),
            ("/config", "trigger"),
            ("/threads/1", "core"),
            ("/threads/0", "waits"),
            ("/totals", "reads"),
            ("/totals", "accept_spread"),
        ];
        for (object, field) in cases {
            let text = edited(|v| {
                v.pointer_mut(object)
                    .and_then(|o| o.as_object_mut())
                    .and_then(|o| o.remove(field))
                    .expect("the sample has the field");
            });
            let err = read(field, &text).unwrap_err();
            assert!(
                err.contains(&format!("{field}.server.json"))
                    && err.contains(&format!("missing field `{field}`")),
                "{object}/{field}: {err}"
            );
        }
        let err = read(
            "mistyped",
            &edited(|v| v["threads"][0]["core"] = "zero".into()),
        )
        .unwrap_err();
        assert!(err.contains("threads[0].core"), "{err}");
    }

    #[test]
    fn another_schema_is_refused() {
        let err = read(
            "other",
            &edited(|v| v["schema"] = "pollbench.bench-server.stats/2".into()),
        )
        .unwrap_err();
        assert!(
            err.contains("other.server.json")
                && err.contains("pollbench.bench-server.stats/2")
                && err.contains(SCHEMA),
            "{err}"
        );
        let err = read(
            "run",
            &edited(|v| v["schema"] = "pollbench.load-gen.run/1".into()),
        )
        .unwrap_err();
        assert!(err.contains("pollbench.load-gen.run/1"), "{err}");
    }
}

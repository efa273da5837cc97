//! `bench-server --capabilities`: what a bench-server binary can run on this machine.
//!
//! The suite runner asks the server binary it is about to run instead of probing backends in its
//! own process: the binary is the truth (it may be built with libkqueue when the runner is not,
//! and it is what accepts or refuses a combination of flags). bench-server derives every list here
//! from the same validation that accepts or refuses its command line, so the document and the
//! binary cannot disagree.
//!
//! Every field is required, `null` included: a document from another version that lacks a field
//! is an error naming that field, never a silent default.

use serde::{Deserialize, Serialize};

/// The `schema` string of this document, version 1.
pub const SCHEMA: &str = "pollbench.capabilities/1";

/// Who writes the document, in every error [`parse`] returns.
const WRITER: &str = "bench-server --capabilities";

/// What one bench-server binary can run here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The bench-server package version that wrote it (its `CARGO_PKG_VERSION`).
    pub version: String,
    /// The operating system it runs on (Rust's `std::env::consts::OS`: `linux`, `macos`, ...).
    pub os: String,
    /// The soft open-files limit (`RLIMIT_NOFILE`) bench-server runs under; `null` when unlimited
    /// or unknown. The runner starts the server with the limit it has itself, so this is the
    /// limit the server's connections count against.
    #[serde(deserialize_with = "crate::file::required")]
    pub open_files_limit: Option<u64>,
    /// Every server `--backend` names, available here or not, in `--help` order.
    pub servers: Vec<Server>,
}

impl Capabilities {
    /// The server `--backend NAME` runs, if bench-server knows the name.
    pub fn server(&self, name: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The servers that can run here.
    pub fn available(&self) -> impl Iterator<Item = &Server> {
        self.servers.iter().filter(|s| s.available)
    }
}

/// One value of `--backend`: an event loop on a readiness mechanism, or a baseline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    /// What `--backend` takes: `select`, `poll`, `epoll`, `kqueue`, `io_uring`, `threads`,
    /// `tokio`.
    pub name: String,
    /// The label for reports: the name, except `kqueue (libkqueue)` where kqueue is libkqueue,
    /// the user-space kqueue on epoll (Linux), so nobody takes it for the kernel's kqueue.
    pub mechanism: String,
    /// An event loop of bench-server's own, or a baseline to compare the loops with.
    pub kind: ServerKind,
    /// Whether it runs here (built into this binary, and the kernel allows it).
    pub available: bool,
    /// Why it does not run here; `null` when available.
    #[serde(deserialize_with = "crate::file::required")]
    pub unavailable_reason: Option<String>,
    /// The `--trigger` values it accepts (with every accept strategy in `accepts`). Empty when the
    /// flag does not apply (the baselines) or the server is not available.
    pub triggers: Vec<String>,
    /// The `--accept` values it accepts (with every trigger in `triggers`). Empty when the flag
    /// does not apply (the baselines) or the server is not available.
    pub accepts: Vec<String>,
    /// The trigger it runs without `--trigger`; `null` where the flag does not apply.
    #[serde(deserialize_with = "crate::file::required")]
    pub default_trigger: Option<String>,
    /// The accept strategy it runs without `--accept`; `null` where the flag does not apply.
    #[serde(deserialize_with = "crate::file::required")]
    pub default_accept: Option<String>,
    /// Whether it accepts `--pin` (the `threads` baseline does not: a thread per connection).
    pub pin: bool,
    /// Whether it accepts a non-zero `--busy-poll` (event loops only).
    pub busy_poll: bool,
    /// The highest descriptor number it can watch, when the mechanism has a limit (select:
    /// `FD_SETSIZE - 1`). Connections above it are closed and counted as rejected.
    #[serde(deserialize_with = "crate::file::required")]
    pub max_fd: Option<i64>,
}

impl Server {
    /// Whether it accepts `--trigger trigger --accept accept`.
    pub fn accepts_combination(&self, trigger: &str, accept: &str) -> bool {
        self.triggers.iter().any(|t| t == trigger) && self.accepts.iter().any(|a| a == accept)
    }
}

/// What runs a server's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerKind {
    /// bench-server's event loops on a readiness mechanism (`--trigger` and `--accept` apply).
    EventLoop,
    /// A baseline a report compares the loops with (a thread per connection, tokio).
    Baseline,
}

/// Read the output of `bench-server --capabilities`. Refuses another `schema` (checked first, so
/// a document of another version is named as such), and a missing or mistyped field, naming it
/// with its path (``servers[2]: missing field `pin` ``). Unknown fields are ignored: a field added
/// within version 1 does not break an older reader.
pub fn parse(text: &str) -> Result<Capabilities, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("{WRITER}: not JSON: {e}"))?;
    match value.get("schema") {
        Some(serde_json::Value::String(s)) if s == SCHEMA => {}
        Some(serde_json::Value::String(s)) => {
            return Err(format!("{WRITER}: schema is {s:?}, expected {SCHEMA:?}"));
        }
        Some(other) => {
            return Err(format!(
                "{WRITER}: schema: expected the string {SCHEMA:?}, found {other}"
            ));
        }
        None => return Err(format!("{WRITER}: missing field `schema`")),
    }
    serde_path_to_error::deserialize(value).map_err(|e| format!("{WRITER}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Capabilities {
        Capabilities {
            schema: SCHEMA.into(),
            version: "0.1.0".into(),
            os: "linux".into(),
            open_files_limit: Some(20_000),
            servers: vec![
                Server {
                    name: "select".into(),
                    mechanism: "select".into(),
                    kind: ServerKind::EventLoop,
                    available: true,
                    unavailable_reason: None,
                    triggers: vec!["level".into(), "oneshot".into()],
                    accepts: vec!["reuseport".into(), "shared".into(), "acceptor".into()],
                    default_trigger: Some("level".into()),
                    default_accept: Some("reuseport".into()),
                    pin: true,
                    busy_poll: true,
                    max_fd: Some(1023),
                },
                Server {
                    name: "kqueue".into(),
                    mechanism: "kqueue (libkqueue)".into(),
                    kind: ServerKind::EventLoop,
                    available: false,
                    unavailable_reason: Some("not built".into()),
                    triggers: vec![],
                    accepts: vec![],
                    default_trigger: None,
                    default_accept: None,
                    pin: false,
                    busy_poll: false,
                    max_fd: None,
                },
                Server {
                    name: "threads".into(),
                    mechanism: "threads".into(),
                    kind: ServerKind::Baseline,
                    available: true,
                    unavailable_reason: None,
                    triggers: vec![],
                    accepts: vec![],
                    default_trigger: None,
                    default_accept: None,
                    pin: false,
                    busy_poll: false,
                    max_fd: None,
                },
            ],
        }
    }

    fn json(caps: &Capabilities) -> serde_json::Value {
        serde_json::to_value(caps).unwrap()
    }

    #[test]
    fn round_trip() {
        let caps = sample();
        let text = serde_json::to_string_pretty(&caps).unwrap();
        assert_eq!(parse(&text), Ok(caps.clone()));
        assert!(text.contains(r#""kind": "event_loop""#), "{text}");
        assert!(
            text.contains(r#""unavailable_reason": null"#),
            "nulls are written: {text}"
        );
        assert_eq!(caps.server("select").unwrap().max_fd, Some(1023));
        assert!(caps.server("nonesuch").is_none());
        let available: Vec<_> = caps.available().map(|s| s.name.as_str()).collect();
        assert_eq!(available, ["select", "threads"]);
        let select = caps.server("select").unwrap();
        assert!(select.accepts_combination("oneshot", "acceptor"));
        assert!(!select.accepts_combination("edge", "reuseport"));
        assert!(!select.accepts_combination("level", "exclusive"));
    }

    #[test]
    fn another_schema_is_refused() {
        let mut v = json(&sample());
        v["schema"] = "pollbench.capabilities/2".into();
        let err = parse(&v.to_string()).unwrap_err();
        assert!(
            err.starts_with("bench-server --capabilities: ")
                && err.contains("pollbench.capabilities/2")
                && err.contains(SCHEMA),
            "{err}"
        );
        v.as_object_mut().unwrap().remove("schema");
        let err = parse(&v.to_string()).unwrap_err();
        assert!(err.contains("missing field `schema`"), "{err}");
        v["schema"] = 1.into();
        let err = parse(&v.to_string()).unwrap_err();
        assert!(err.contains("schema"), "{err}");
        let err = parse("listening on 127.0.0.1:7000").unwrap_err();
        assert!(err.contains("not JSON"), "{err}");
    }

    #[test]
    fn a_missing_field_is_refused_by_name() {
        // A plain field, an `Option` (which serde alone would default to `None`), and one inside a
        // server, named with its path.
        let mut v = json(&sample());
        v.as_object_mut().unwrap().remove("version");
        let err = parse(&v.to_string()).unwrap_err();
        assert!(
            err.starts_with("bench-server --capabilities: ") && err.contains("`version`"),
            "{err}"
        );

        let mut v = json(&sample());
        v.as_object_mut().unwrap().remove("open_files_limit");
        let err = parse(&v.to_string()).unwrap_err();
        assert!(err.contains("missing field `open_files_limit`"), "{err}");

        for field in ["pin", "max_fd", "unavailable_reason", "default_trigger"] {
            let mut v = json(&sample());
            v["servers"][1].as_object_mut().unwrap().remove(field);
            let err = parse(&v.to_string()).unwrap_err();
            assert!(
                err.contains("servers[1]") && err.contains(&format!("missing field `{field}`")),
                "{field}: {err}"
            );
        }
    }

    #[test]
    fn a_mistyped_field_is_refused_by_name() {
        let mut v = json(&sample());
        v["servers"][0]["pin"] = "yes".into();
        let err = parse(&v.to_string()).unwrap_err();
        assert!(err.contains("servers[0].pin"), "{err}");

        let mut v = json(&sample());
        v["servers"][2]["kind"] = "coroutine".into();
        let err = parse(&v.to_string()).unwrap_err();
        assert!(err.contains("servers[2].kind"), "{err}");
    }
}

//! `cells/ID.external.json`: what pollbench recorded of a server it does not build (a suite's
//! `external:NAME` column, its command given on `pollbench suite --external NAME=COMMAND`), in place
//! of bench-server's own statistics. Such a server counts nothing for pollbench, so all there is
//! comes from outside it: its command, the core it was pinned to, and its CPU time read from
//! `/proc/PID/stat` at every whole wall-clock second (the seconds bench-server's readings and
//! load-gen's latency log align to).

use serde::{Deserialize, Serialize};

use crate::file::Versioned;

/// The `schema` string of an external server's record, version 1.
pub const SCHEMA: &str = "pollbench.external/1";

/// The whole record of one run of an external server.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExternalServer {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The column's name (`external:NAME` in the suite).
    pub name: String,
    /// The command as run, `{port}` replaced, one word per element.
    pub command: Vec<String>,
    /// The core it was pinned to when it started; null when it ran unpinned.
    #[serde(deserialize_with = "crate::file::required")]
    pub pinned_core: Option<usize>,
    /// Its CPU time (every thread, user and system, cumulative since it started) at each whole
    /// second of its life, in order.
    pub seconds: Vec<CpuSecond>,
    /// Its CPU time at the last reading before it was stopped.
    #[serde(deserialize_with = "crate::file::required")]
    pub cpu_user_s: Option<f64>,
    #[serde(deserialize_with = "crate::file::required")]
    pub cpu_system_s: Option<f64>,
}

/// One reading of an external server's CPU time.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CpuSecond {
    /// When it was read, in Unix seconds.
    pub at_unix_s: f64,
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
}

impl Versioned for ExternalServer {
    const SCHEMA: &'static str = SCHEMA;
    fn schema(&self) -> &str {
        &self.schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_a_missing_field_is_an_error() {
        let record = ExternalServer {
            schema: SCHEMA.into(),
            name: "liburing".into(),
            command: vec!["/opt/echo-server".into(), "40123".into()],
            pinned_core: Some(0),
            seconds: vec![CpuSecond {
                at_unix_s: 100.0,
                cpu_user_s: 0.25,
                cpu_system_s: 0.5,
            }],
            cpu_user_s: Some(0.25),
            cpu_system_s: Some(0.5),
        };
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(
            serde_json::from_str::<ExternalServer>(&text).unwrap(),
            record
        );
        let without = text.replace(r#""pinned_core":0,"#, "");
        let err = serde_json::from_str::<ExternalServer>(&without).unwrap_err();
        assert!(
            err.to_string().contains("missing field `pinned_core`"),
            "{err}"
        );
    }
}

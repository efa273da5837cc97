//! A suite's run directory: `meta.json` (the machine, the suite, every cell and what happened to
//! it), written by the suite runner after every cell and read by `report` and `compare`.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::file::{read_json, Versioned};

/// The schema string of meta.json.
pub const META_SCHEMA: &str = "pollbench.results.meta/1";

/// The name of a run directory's meta.json.
pub const META_FILE: &str = "meta.json";

/// What the run ran on, and what it ran.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Meta {
    pub schema: String,
    pub suite: String,
    /// The suite file's text, as run.
    pub suite_file: String,
    pub started_utc: String,
    pub host: String,
    #[serde(deserialize_with = "crate::file::required")]
    pub git_commit: Option<String>,
    /// Whether the tree the run was built from had uncommitted changes (`git status
    /// --porcelain` listed anything, untracked files included): true, the run is not
    /// reproducible from `git_commit`; null, git could not say.
    #[serde(deserialize_with = "crate::file::required")]
    pub git_dirty: Option<bool>,
    #[serde(deserialize_with = "crate::file::required")]
    pub rustc: Option<String>,
    #[serde(deserialize_with = "crate::file::required")]
    pub kernel: Option<String>,
    #[serde(deserialize_with = "crate::file::required")]
    pub cpu_model: Option<String>,
    pub cores: usize,
    #[serde(deserialize_with = "crate::file::required")]
    pub memory_bytes: Option<u64>,
    #[serde(deserialize_with = "crate::file::required")]
    pub fd_limit: Option<u64>,
    /// How a suite with several rounds ordered its cells; null for one round (and for runs from
    /// before rounds, whose repeats ran back to back).
    #[serde(deserialize_with = "crate::file::required")]
    pub rounds: Option<Rounds>,
    /// What else happened on the machine while the suite ran (Linux; null elsewhere, and in runs
    /// from before it was recorded).
    #[serde(default)]
    pub disturbance: Option<Disturbance>,
    /// The sweeps that ran when `pollbench suite --sweep` chose some of the suite's (`suite_file`
    /// has them all); null when every sweep ran (and in runs from before the option).
    #[serde(default)]
    pub sweeps: Option<Vec<String>>,
    /// Where server and client ran when not both over 127.0.0.1 in the machine's own network
    /// namespace (`topology = "netns"`: the namespaces and addresses); null for loopback (and in
    /// runs from before the key).
    #[serde(default)]
    pub topology: Option<String>,
    /// With a suite's `[hosts]`: each host, what runs there and what it is (kernel, CPU); null
    /// otherwise (every process on this machine, described above) and in runs from before it.
    #[serde(default)]
    pub hosts: Option<Vec<HostFacts>>,
    /// The suite's settings that shape how its cells ran, so the report need not parse
    /// `suite_file`; null in runs from before they were recorded (`suite_file` has them).
    #[serde(default)]
    pub suite_settings: Option<SuiteSettings>,
    /// The commands of the suite's `external:NAME` columns as given on the command line (`{port}`
    /// where the port went); absent when it has none (and in runs from before them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub externals: Option<std::collections::BTreeMap<String, Vec<String>>>,
    pub cells: Vec<Cell>,
    /// One per cell that has finished, in run order (fewer than `cells` in an interrupted run).
    pub outcomes: Vec<Outcome>,
}

impl Versioned for Meta {
    const SCHEMA: &'static str = META_SCHEMA;
    fn schema(&self) -> &str {
        &self.schema
    }
}

impl Meta {
    /// The meta.json of run directory `dir`; the error names the file (and a bad field).
    pub fn read(dir: &Path) -> Result<Meta, String> {
        read_json(&dir.join(META_FILE))
    }

    /// The first 12 hex digits of the commit the run was built from.
    pub fn short_commit(&self) -> &str {
        self.git_commit
            .as_deref()
            .map_or("unknown", |c| &c[..c.len().min(12)])
    }

    /// The commit as a reader must see it: never a plain commit unless the tree was known to be
    /// clean ("0123456789ab (with uncommitted changes)", "... (uncommitted changes unknown)").
    pub fn commit_text(&self) -> String {
        let commit = self.short_commit();
        match self.git_dirty {
            Some(false) => commit.to_string(),
            Some(true) => format!("{commit} (with uncommitted changes)"),
            None => format!("{commit} (uncommitted changes unknown)"),
        }
    }

    /// The outcome of cell `id`, if it finished.
    pub fn outcome(&self, id: &str) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.id == id)
    }
}

/// A suite's settings that shape how every cell ran, as its file says them (under the same keys).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuiteSettings {
    /// Runs of every cell: rounds, or (in runs from before rounds) repeats back to back.
    pub repeat: usize,
    /// The server's loops pinned to the first cores, load-gen's threads to the cores after them.
    pub pin: bool,
}

/// The rounds of a suite: round k ran every cell once, in the order `order[k - 1]` (cell ids),
/// shuffled per round from `seed`, so that a slow phase of the machine spreads over every cell
/// instead of landing on one cell's repeats.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Rounds {
    pub seed: u64,
    pub order: Vec<Vec<String>>,
    /// What disturbed each round, in round order (Linux; empty elsewhere and in runs from before
    /// it was recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disturbance: Vec<Disturbance>,
    /// How a round's order was made: "row", each row of a sweep (the cells its verdicts compare)
    /// back to back, the rows shuffled and the cells within each; absent (runs from before it was
    /// recorded), every cell shuffled on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<String>,
}

/// What the machine did besides the benchmark over a stretch of a run, from the kernel's own
/// counters (/proc/stat, /proc/loadavg): time the hypervisor gave the virtual CPUs to others, how
/// often any CPU switched tasks, and how busy the machine was.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Disturbance {
    /// Wall-clock seconds the stretch lasted.
    pub wall_s: f64,
    /// CPU seconds stolen by the hypervisor, summed over all CPUs (/proc/stat `steal`).
    pub steal_s: f64,
    /// Context switches on all CPUs (/proc/stat `ctxt`), the benchmark's own included.
    pub context_switches: u64,
    /// The one-minute load average when the stretch began and when it ended.
    pub load_avg_start: f64,
    pub load_avg_end: f64,
}

impl Disturbance {
    /// Stolen CPU time as a share of the CPU time there was (all CPUs over the wall time), 0 to 1.
    pub fn steal_share(&self, cores: usize) -> f64 {
        let available = self.wall_s * cores.max(1) as f64;
        if available > 0.0 {
            self.steal_s / available
        } else {
            0.0
        }
    }
}

/// A host of a run with `[hosts]`, as it answered before the first cell (`uname -sr`, `nproc`,
/// /proc/cpuinfo's model name); a field is null where it did not say.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct HostFacts {
    /// `server`, or `client 1`, `client 2`, ...
    pub role: String,
    /// Its launch prefix, as the suite wrote it (`ssh bench@client1`).
    pub launch: String,
    pub kernel: Option<String>,
    pub cpu: Option<String>,
    pub cores: Option<usize>,
}

/// One cell of a suite: one server configuration under one load.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Cell {
    pub id: String,
    /// The report column: the backend's label, plus trigger, accept, size, pipeline and rate where
    /// the sweep varies them.
    pub label: String,
    pub sweep: String,
    /// What bench-server's --backend takes.
    pub backend: String,
    /// More bench-server flags for this column, from the suite's backend entry
    /// (`"io_uring_completion --fixed-files"`): a variant of the backend. Added within version 1:
    /// absent in older meta.json files, and left out when empty, so they read and write back
    /// unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_flags: Vec<String>,
    #[serde(deserialize_with = "crate::file::required")]
    pub trigger: Option<String>,
    #[serde(deserialize_with = "crate::file::required")]
    pub accept: Option<String>,
    pub connections: usize,
    pub idle: usize,
    /// Open loop at this many messages per second; closed loop when null.
    #[serde(deserialize_with = "crate::file::required")]
    pub rate: Option<u64>,
    /// Message size, as written in the suite ("64B").
    pub size: String,
    pub pipeline: usize,
    /// Connection churn: each connection sends this many messages, closes, and is replaced
    /// (load-gen --messages-per-connection); null when connections are kept. Added within version
    /// 1: absent in older meta.json files, read as null.
    #[serde(default)]
    pub messages_per_connection: Option<u64>,
    /// The cell's measured window and warm-up in seconds where its sweep sets its own; null (the
    /// suite's) otherwise. Added within version 1: absent in older meta.json files, left out when
    /// null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_s: Option<f64>,
    pub server_threads: usize,
    pub client_threads: usize,
}

impl Cell {
    /// The report row the cell is in: its idle connections in an idle sweep, else its connections.
    pub fn row(&self, by_idle: bool) -> usize {
        if by_idle {
            self.idle
        } else {
            self.connections
        }
    }
}

/// What happened to a cell.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CellStatus {
    /// It ran and load-gen reported no error.
    Ok,
    /// It ran and failed (the reason says how).
    Failed,
    /// It could not run here (the reason says why).
    Skipped,
}

impl fmt::Display for CellStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CellStatus::Ok => "ok",
            CellStatus::Failed => "failed",
            CellStatus::Skipped => "skipped",
        })
    }
}

/// A cell's outcome.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Outcome {
    pub id: String,
    pub status: CellStatus,
    #[serde(deserialize_with = "crate::file::required")]
    pub reason: Option<String>,
    /// Each run of a repeated cell, in run order; absent when the suite runs cells once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repeats: Vec<Repeat>,
}

impl Outcome {
    /// Did the cell complete?
    pub fn is_ok(&self) -> bool {
        self.status == CellStatus::Ok
    }
}

/// One run of a repeated cell.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Repeat {
    pub msgs_per_s: f64,
    pub p99_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_runs_meta_json_reads_typed() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../results/20261123T210857Z-vm-full/meta.json");
        let meta: Meta = crate::file::read_json(&path).unwrap();
        assert_eq!(meta.cells.len(), meta.outcomes.len());
        // Six rounds, each every cell once, and what disturbed each.
        let rounds = meta.rounds.as_ref().unwrap();
        assert_eq!(rounds.order.len(), 6);
        assert!(rounds.order.iter().all(|o| o.len() == meta.cells.len()));
        assert_eq!(rounds.disturbance.len(), 6);
        assert!(meta.disturbance.is_some());
        let ok = meta.outcomes.iter().find(|o| o.is_ok()).unwrap();
        assert_eq!(ok.repeats.len(), 6);
        assert!(meta
            .outcomes
            .iter()
            .any(|o| o.status == CellStatus::Skipped && o.reason.is_some()));
    }

    #[test]
    fn an_unknown_status_is_an_error_not_a_string() {
        let err =
            serde_json::from_str::<Outcome>(r#"{"id": "a", "status": "okay", "reason": null}"#)
                .unwrap_err();
        assert!(err.to_string().contains("unknown variant `okay`"), "{err}");
    }
}

#[cfg(test)]
mod committed_runs {
    use crate::file::read_json;
    use crate::run::RunReport;
    use crate::server::ServerStats;

    /// Every published (committed) run directory reads through the current types: meta.json,
    /// each cell's load-gen and bench-server JSON (or what was read of an external server), and
    /// each interval log. Local runs, which git
    /// ignores, are not published and not read.
    #[test]
    fn every_committed_result_file_reads_as_the_current_schema() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let listed = std::process::Command::new("git")
            .args(["ls-files", "--", "results/*/meta.json"])
            .current_dir(&root)
            .output();
        let Some(listed) = listed.ok().filter(|o| o.status.success()) else {
            eprintln!("skipped: committed result files: not a git checkout");
            return;
        };
        let mut read = 0;
        for meta in String::from_utf8_lossy(&listed.stdout).lines() {
            let meta = root.join(meta);
            let run = meta.parent().unwrap();
            read_json::<super::Meta>(&meta).unwrap();
            for file in std::fs::read_dir(run.join("cells")).unwrap().flatten() {
                let path = file.path();
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                if name.ends_with(".server.json") {
                    read_json::<ServerStats>(&path).unwrap();
                } else if name.ends_with(".external.json") {
                    read_json::<crate::external::ExternalServer>(&path).unwrap();
                } else if name.ends_with(".json") {
                    read_json::<RunReport>(&path).unwrap();
                } else if name.ends_with(".hlog") {
                    crate::hlog::read(&path).unwrap();
                }
                read += 1;
            }
        }
        assert!(read > 0, "no committed result file found");
    }
}

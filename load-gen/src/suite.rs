//! `load-gen suite NAME`: run every cell of a suite (a TOML file under scripts/suites/) against a
//! fresh bench-server, and write a results directory with the cells' data and a report.
//!
//! A cell is backend x trigger x accept x connections x idle (and the suite's size, pipeline, rate,
//! threads). For each cell the runner starts bench-server on port 0, waits until it accepts, runs
//! `load-gen run`, stops the server with SIGTERM, and keeps both JSON files and the hlog. A failing
//! cell is recorded with its reason and the suite goes on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{Running, WaitEnd};

use serde::{Deserialize, Serialize};

/// A suite file.
#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    pub description: String,
    pub duration: String,
    pub warmup: String,
    #[serde(default = "default_size")]
    pub size: String,
    #[serde(default = "one")]
    pub pipeline: usize,
    #[serde(default = "one")]
    pub server_threads: usize,
    #[serde(default = "one")]
    pub client_threads: usize,
    /// Run every cell this many times; the report shows the median run (by msgs/s) and the spread.
    #[serde(default = "one")]
    pub repeat: usize,
    /// Pin the server's loops to the first cores and load-gen's threads to the cores after them,
    /// so the two do not migrate onto each other's cores between runs.
    #[serde(default)]
    pub pin: bool,
    pub sweep: Vec<Sweep>,
}

fn default_size() -> String {
    "64B".into()
}
fn one() -> usize {
    1
}

/// One sweep: the cartesian product of its lists.
#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    pub name: String,
    pub backends: Vec<String>,
    pub connections: Vec<usize>,
    #[serde(default)]
    pub idle: Vec<usize>,
    #[serde(default)]
    pub triggers: Vec<String>,
    #[serde(default)]
    pub accepts: Vec<String>,
    /// Open loop at this many messages per second; closed loop if absent.
    pub rate: Option<u64>,
    /// Several open-loop rates: a column each (instead of `rate`).
    #[serde(default)]
    pub rates: Vec<u64>,
    /// Message sizes, a column each. [default: the suite's size]
    #[serde(default)]
    pub sizes: Vec<String>,
    /// Closed-loop pipeline depths, a column each. [default: the suite's pipeline]
    #[serde(default)]
    pub pipelines: Vec<usize>,
    /// Override the suite's server threads for this sweep (accept strategies need several).
    pub server_threads: Option<usize>,
    /// Override the suite's client threads for this sweep.
    pub client_threads: Option<usize>,
}

/// One cell to run.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Cell {
    pub id: String,
    /// The report column: backend, plus trigger, accept, size, pipeline and rate where the sweep
    /// varies them. Empty in runs from before it existed.
    #[serde(default)]
    pub label: String,
    pub sweep: String,
    pub backend: String,
    pub trigger: Option<String>,
    pub accept: Option<String>,
    pub connections: usize,
    pub idle: usize,
    pub rate: Option<u64>,
    /// Message size and pipeline depth; absent in runs from before sweeps could vary them (the
    /// suite's values then apply).
    #[serde(default)]
    pub size: Option<String>,
    #[serde(default)]
    pub pipeline: Option<usize>,
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
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Outcome {
    pub id: String,
    /// "ok", "failed" or "skipped".
    pub status: String,
    pub reason: Option<String>,
    /// Each run of a repeated cell, in run order (empty when the suite runs cells once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repeats: Vec<Repeat>,
}

/// One run of a repeated cell.
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
pub struct Repeat {
    pub msgs_per_s: f64,
    pub p99_us: f64,
}

impl Suite {
    /// Find a suite by name (scripts/suites/NAME.toml, searched upwards from here) or path.
    pub fn locate(name: &str) -> Result<PathBuf, String> {
        let direct = PathBuf::from(name);
        if direct.extension().is_some_and(|e| e == "toml") && direct.exists() {
            return Ok(direct);
        }
        let mut dir = std::env::current_dir().map_err(|e| e.to_string())?;
        loop {
            let candidate = dir.join("scripts/suites").join(format!("{name}.toml"));
            if candidate.exists() {
                return Ok(candidate);
            }
            if !dir.pop() {
                return Err(format!("no suite '{name}': expected scripts/suites/{name}.toml or a path to a .toml file"));
            }
        }
    }

    pub fn load(path: &Path) -> Result<Suite, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let suite: Suite = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        suite
            .check()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(suite)
    }

    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = Vec::new();
        for sweep in &self.sweep {
            let idles = or_one(&sweep.idle, 0);
            let sizes = or_one(&sweep.sizes, self.size.clone());
            let pipelines = or_one(&sweep.pipelines, self.pipeline);
            let rates: Vec<Option<u64>> = if sweep.rates.is_empty() {
                vec![sweep.rate]
            } else {
                sweep.rates.iter().copied().map(Some).collect()
            };
            let triggers = optional(&sweep.triggers);
            let accepts = optional(&sweep.accepts);
            for backend in &sweep.backends {
                for trigger in &triggers {
                    for accept in &accepts {
                        for size in &sizes {
                            for &pipeline in &pipelines {
                                for &rate in &rates {
                                    for &connections in &sweep.connections {
                                        for &idle in &idles {
                                            // The label names what the report's columns vary; the
                                            // id adds the row (connections, idle).
                                            let mut label = backend_label(backend);
                                            for part in [trigger, accept].into_iter().flatten() {
                                                label.push(' ');
                                                label.push_str(part);
                                            }
                                            if !sweep.sizes.is_empty() {
                                                label.push_str(&format!(" {size}"));
                                            }
                                            if !sweep.pipelines.is_empty() {
                                                label.push_str(&format!(" pipeline {pipeline}"));
                                            }
                                            if let Some(r) =
                                                rate.filter(|_| !sweep.rates.is_empty())
                                            {
                                                label.push_str(&format!(" {r}/s"));
                                            }
                                            let mut id = format!(
                                                "{}-{}",
                                                sweep.name,
                                                label.replace(' ', "-").replace(['(', ')'], "")
                                            )
                                            .replace("-pipeline-", "-p")
                                            .replace("/s", "ps");
                                            id.push_str(&format!("-c{connections}"));
                                            if !sweep.idle.is_empty() {
                                                id.push_str(&format!("-idle{idle}"));
                                            }
                                            cells.push(Cell {
                                                id,
                                                label,
                                                sweep: sweep.name.clone(),
                                                backend: backend.clone(),
                                                trigger: trigger.clone(),
                                                accept: accept.clone(),
                                                connections,
                                                idle,
                                                rate,
                                                size: Some(size.clone()),
                                                pipeline: Some(pipeline),
                                                server_threads: sweep
                                                    .server_threads
                                                    .unwrap_or(self.server_threads),
                                                client_threads: sweep
                                                    .client_threads
                                                    .unwrap_or(self.client_threads),
                                            });
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        cells
    }

    /// What the TOML format cannot say: lists that must not be empty, values that must parse.
    fn check(&self) -> Result<(), String> {
        pollbench_common::parse_duration(&self.duration).map_err(|e| format!("duration: {e}"))?;
        pollbench_common::parse_duration(&self.warmup).map_err(|e| format!("warmup: {e}"))?;
        if self.repeat == 0 {
            return Err("repeat must be at least 1".into());
        }
        if self.sweep.is_empty() {
            return Err("no [[sweep]]: a suite needs at least one".into());
        }
        for s in &self.sweep {
            let name = &s.name;
            if s.backends.is_empty() || s.connections.is_empty() {
                return Err(format!(
                    "sweep '{name}': backends and connections must not be empty"
                ));
            }
            if s.rate.is_some() && !s.rates.is_empty() {
                return Err(format!(
                    "sweep '{name}': give rate (one) or rates (a list), not both"
                ));
            }
            for size in s.sizes.iter().chain([&self.size]) {
                pollbench_common::parse_bytes(size)
                    .map_err(|e| format!("sweep '{name}': size {e}"))?;
            }
            if s.pipelines.iter().chain([&self.pipeline]).any(|&p| p == 0)
                || s.rates.contains(&0)
                || s.rate == Some(0)
            {
                return Err(format!(
                    "sweep '{name}': pipelines and rates must be at least 1"
                ));
            }
        }
        if self
            .sweep
            .iter()
            .enumerate()
            .any(|(i, s)| self.sweep[..i].iter().any(|t| t.name == s.name))
        {
            return Err("two sweeps have the same name: cell ids would collide".into());
        }
        Ok(())
    }
}

/// Is kqueue here a translation layer over another mechanism? Everywhere but macOS and the BSDs
/// the kqueue backend can only be libkqueue, which runs on epoll.
pub const KQUEUE_IS_LIBKQUEUE: bool = !cfg!(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
));

/// What a backend is called in reports: its name, except kqueue where it is libkqueue, which is
/// labelled `kqueue (libkqueue)` so that no reader takes epoll plus a translation layer for native
/// kqueue figures (and so that its cell ids never match a native kqueue run's in `compare`).
pub fn backend_label(backend: &str) -> String {
    if backend == "kqueue" && KQUEUE_IS_LIBKQUEUE {
        "kqueue (libkqueue)".into()
    } else {
        backend.into()
    }
}

/// The list, or the one default value when the list is empty.
fn or_one<T: Clone>(list: &[T], default: T) -> Vec<T> {
    if list.is_empty() {
        vec![default]
    } else {
        list.to_vec()
    }
}

/// The list as options, or a single None (the flag is left to bench-server's default).
fn optional(list: &[String]) -> Vec<Option<String>> {
    if list.is_empty() {
        vec![None]
    } else {
        list.iter().cloned().map(Some).collect()
    }
}

/// bench-server beside this binary, as fresh as its sources: built with cargo (this binary's
/// profile, and the kqueue feature if this binary has it) when it is missing or older than a source
/// file it is built from. A stale binary that cannot be rebuilt is refused: it would measure an old
/// server under a new name.
pub fn find_or_build_server() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("no directory for load-gen")?;
    let server = dir.join("bench-server");
    // The workspace this binary was built from, if it is still there.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .filter(|w| w.join("bench-server/Cargo.toml").exists());
    let built = std::fs::metadata(&server).and_then(|m| m.modified()).ok();
    let stale = match (built, workspace) {
        (None, _) => Some("it is not built yet".to_string()),
        (Some(built), Some(ws)) => {
            newer_source(ws, built).map(|p| format!("{} changed after it was built", p.display()))
        }
        (Some(_), None) => None,
    };
    let Some(why) = stale else {
        return Ok(server);
    };
    let Some(ws) = workspace else {
        return Err(format!(
            "bench-server: {why}, and its sources are not here to build it"
        ));
    };
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(name) => name.to_string(),
        None => "release".to_string(),
    };
    let target_dir = dir.parent().unwrap_or(dir);
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .arg("build")
        .arg("--manifest-path")
        .arg(ws.join("Cargo.toml"))
        .args(["-p", "bench-server", "--profile", &profile])
        .arg("--target-dir")
        .arg(target_dir);
    if cfg!(feature = "libkqueue") {
        cargo.args(["--features", "bench-server/libkqueue"]);
    }
    eprintln!("bench-server: {why}; building it (cargo build -p bench-server --profile {profile})");
    // cargo decides what is fresh: a change that does not alter the binary leaves it as it was.
    let built = cargo.status().map(|s| s.success()).unwrap_or(false);
    if built && server.exists() {
        Ok(server)
    } else {
        Err(format!(
            "bench-server: {why}, and building it failed; build it with `cargo build --release -p bench-server` and retry"
        ))
    }
}

/// What bench-server is built from: its crates' sources, manifests and build scripts, and the
/// workspace's manifest and lock file (tests and benches are left out: they do not change it).
const SERVER_SOURCES: [&str; 11] = [
    "bench-server/src",
    "bench-server/Cargo.toml",
    "poller/src",
    "poller/Cargo.toml",
    "poller/build.rs",
    "common/src",
    "common/Cargo.toml",
    "Cargo.toml",
    "Cargo.lock",
    "bench-server/build.rs",
    "common/build.rs",
];

/// A file of [`SERVER_SOURCES`] (Rust, TOML or the lock file) modified after `built`, if any.
pub fn newer_source(workspace: &Path, built: std::time::SystemTime) -> Option<PathBuf> {
    fn walk(path: &Path, built: std::time::SystemTime) -> Option<PathBuf> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        if meta.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                return None;
            }
            let entries = std::fs::read_dir(path).ok()?;
            return entries.flatten().find_map(|e| walk(&e.path(), built));
        }
        let source = path
            .extension()
            .is_some_and(|e| e == "rs" || e == "toml" || e == "lock");
        (source && meta.modified().ok()? > built).then(|| path.to_path_buf())
    }
    SERVER_SOURCES
        .iter()
        .find_map(|part| walk(&workspace.join(part), built))
}

/// The open-files limit of this process.
pub fn fd_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The three files a run of a cell leaves, by extension.
const CELL_FILES: [&str; 3] = ["json", "server.json", "hlog"];

/// Run one cell `suite.repeat` times; its files go to `dir` as ID.json (load-gen), ID.server.json
/// and ID.hlog. A repeated cell keeps every run as ID.rK.* and copies the median run (by msgs/s) to
/// ID.*, so reports and comparisons read one file per cell either way.
/// Err when the runner was interrupted: the cell did not complete, and both processes are gone.
pub fn run_cell(
    cell: &Cell,
    suite: &Suite,
    server_bin: &Path,
    dir: &Path,
) -> Result<Outcome, WaitEnd> {
    if suite.repeat <= 1 {
        return run_once(cell, suite, server_bin, dir, &cell.id);
    }
    let mut repeats = Vec::with_capacity(suite.repeat);
    for k in 1..=suite.repeat {
        let stem = format!("{}.r{k}", cell.id);
        let mut outcome = run_once(cell, suite, server_bin, dir, &stem)?;
        if outcome.status != "ok" {
            if outcome.status == "failed" {
                outcome.reason = outcome.reason.map(|r| format!("run {k}: {r}"));
            }
            return Ok(outcome);
        }
        let Some(j) = crate::report::read_json(&dir.join(format!("{stem}.json"))) else {
            let reason = format!("run {k}: load-gen wrote no readable {stem}.json");
            return Ok(Outcome {
                reason: Some(reason),
                status: "failed".into(),
                ..outcome
            });
        };
        repeats.push(Repeat {
            msgs_per_s: j["throughput_msgs_per_s"].as_f64().unwrap_or(0.0),
            p99_us: j["latency_us"]["p99"].as_f64().unwrap_or(0.0),
        });
    }
    let mut order: Vec<usize> = (0..repeats.len()).collect();
    order.sort_by(|&a, &b| repeats[a].msgs_per_s.total_cmp(&repeats[b].msgs_per_s));
    let median = order[(order.len() - 1) / 2] + 1;
    for ext in CELL_FILES {
        let from = dir.join(format!("{}.r{median}.{ext}", cell.id));
        let to = dir.join(format!("{}.{ext}", cell.id));
        if let Err(e) =
            std::fs::read(&from).and_then(|b| pollbench_common::write_atomically(&to, &b))
        {
            return Ok(Outcome {
                id: cell.id.clone(),
                status: "failed".into(),
                reason: Some(format!(
                    "cannot copy the median run to {}: {e}",
                    to.display()
                )),
                repeats,
            });
        }
    }
    Ok(Outcome {
        id: cell.id.clone(),
        status: "ok".into(),
        reason: None,
        repeats,
    })
}

/// The cores load-gen's threads may use when the server's loops are pinned to the first
/// `server_threads` cores: the rest, or none (no pinning) when nothing is left over.
pub fn client_cores(server_threads: usize) -> Option<String> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    (server_threads < cores.len()).then(|| {
        cores[server_threads..]
            .iter()
            .map(|c| c.id.to_string())
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// The descriptors each process of a cell holds: its connections and idle connections, plus
/// what bench-server opens beside them (stdio, signal pipe, and per loop a listener, a poller and a
/// waker: measured 6 + 3 per loop for epoll, fewer for the others) and what load-gen does (stdio,
/// result files, a poller per thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptors {
    pub server: usize,
    pub client: usize,
}

impl Descriptors {
    pub fn of(cell: &Cell) -> Descriptors {
        let sockets = cell.connections + cell.idle;
        Descriptors {
            server: sockets + 7 + 3 * cell.server_threads,
            client: sockets + 8 + 2 * cell.client_threads,
        }
    }
}

/// Why a cell cannot run here, if it cannot: the open-files limit is below what either process
/// needs, or the backend cannot watch descriptors as high as the server's will go (select:
/// FD_SETSIZE; bench-server would close the connections past it, so the cell could only fail).
/// `max_fd` is the backend's highest watchable descriptor, if it has one.
pub fn descriptor_skip(cell: &Cell, fd_limit: Option<u64>, max_fd: Option<i32>) -> Option<String> {
    let need = Descriptors::of(cell);
    // The backend's own limit first: no open-files limit would let it run. Descriptors are
    // allocated lowest first, so the server's highest is about its count - 1.
    if let Some(max) = max_fd.filter(|&max| need.server as i64 > i64::from(max) + 1) {
        return Some(format!(
            "{} cannot watch descriptors at or above FD_SETSIZE ({}); this cell needs about {}",
            cell.backend,
            max + 1,
            need.server
        ));
    }
    let most = need.server.max(need.client) as u64;
    fd_limit.filter(|&l| l < most).map(|limit| {
        format!("open-files limit {limit} is below the {most} this cell needs (raise ulimit -n)")
    })
}

/// How long to wait for bench-server to say where it listens.
const SERVER_START: Duration = Duration::from_secs(10);

/// Run a cell once, writing STEM.json, STEM.server.json and STEM.hlog into `dir`. Err when the
/// runner was interrupted (both processes are killed by then).
fn run_once(
    cell: &Cell,
    suite: &Suite,
    server_bin: &Path,
    dir: &Path,
    stem: &str,
) -> Result<Outcome, WaitEnd> {
    let outcome = |status: &str, reason: Option<String>| Outcome {
        id: cell.id.clone(),
        status: status.into(),
        reason,
        repeats: Vec::new(),
    };
    // An event-loop backend (the baselines do not parse as one) that cannot run here is skipped
    // with the reason, and so is a cell that needs more descriptors than can be had.
    let mut max_fd = None;
    if let Ok(kind) = cell.backend.parse::<poller::BackendKind>() {
        match kind.capabilities() {
            Ok(caps) => max_fd = caps.max_fd,
            Err(why) => return Ok(outcome("skipped", Some(why.to_string()))),
        }
    }
    if let Some(why) = descriptor_skip(cell, fd_limit(), max_fd) {
        return Ok(outcome("skipped", Some(why)));
    }
    let mut cmd = Command::new(server_bin);
    cmd.args([
        "--addr",
        "127.0.0.1:0",
        "--stats-interval",
        "0s",
        "--backend",
        &cell.backend,
    ])
    .args([
        "--threads",
        &cell.server_threads.to_string(),
        "--stats-json",
    ])
    .arg(dir.join(format!("{stem}.server.json")));
    if let Some(t) = &cell.trigger {
        cmd.args(["--trigger", t]);
    }
    if let Some(a) = &cell.accept {
        cmd.args(["--accept", a]);
    }
    // The threads baseline has a thread per connection, nothing to pin; its client still is.
    if suite.pin && cell.backend != "threads" {
        cmd.arg("--pin");
    }
    let mut server = match Running::spawn(cmd) {
        Ok(c) => c,
        Err(e) => {
            return Ok(outcome(
                "failed",
                Some(format!("cannot start bench-server: {e}")),
            ))
        }
    };
    // bench-server prints its address once every loop listens: connections made from then on are
    // queued by the kernel until accepted, so no probe connection is needed (one would show in
    // the server's counters as a connection).
    let line = server.stdout_line(SERVER_START).unwrap_or_default();
    if crate::process::interrupted().load(std::sync::atomic::Ordering::Relaxed) {
        return Err(WaitEnd::Interrupted);
    }
    let Some(addr) = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse::<SocketAddr>().ok())
    else {
        server.terminate(Duration::from_secs(1));
        let err = server.stderr_text();
        return Ok(outcome(
            "failed",
            Some(format!(
                "bench-server did not start within {SERVER_START:?}: {}",
                err.trim()
            )),
        ));
    };
    let exe = std::env::current_exe().expect("own path");
    let mut run = Command::new(exe);
    run.args(["run", "--target", &addr.to_string()])
        .args([
            "-c",
            &cell.connections.to_string(),
            "-t",
            &cell.client_threads.to_string(),
        ])
        .args([
            "-d",
            &suite.duration,
            "--warmup",
            &suite.warmup,
            "--size",
            cell.size.as_deref().unwrap_or(&suite.size),
        ])
        .args([
            "--pipeline",
            &cell.pipeline.unwrap_or(suite.pipeline).to_string(),
            "--idle",
            &cell.idle.to_string(),
        ])
        .arg("--json")
        .arg(dir.join(format!("{stem}.json")))
        .arg("--hlog")
        .arg(dir.join(format!("{stem}.hlog")));
    if let Some(rate) = cell.rate {
        run.args(["-R", &rate.to_string()]);
    }
    if let Some(cores) = suite
        .pin
        .then(|| client_cores(cell.server_threads))
        .flatten()
    {
        run.args(["--cpus", &cores]);
    }
    let limit = pollbench_common::parse_duration(&suite.duration).unwrap_or_default()
        + pollbench_common::parse_duration(&suite.warmup).unwrap_or_default()
        + Duration::from_secs(60);
    let result = match Running::spawn(run) {
        Ok(mut child) => child.wait(limit),
        Err(e) => {
            return Ok(outcome(
                "failed",
                Some(format!("cannot start load-gen: {e}")),
            ))
        }
    };
    // Graceful stop, so the server writes its statistics.
    server.terminate(Duration::from_secs(5));
    match result {
        Err(WaitEnd::Interrupted) => Err(WaitEnd::Interrupted),
        Err(WaitEnd::Deadline) => Ok(outcome(
            "failed",
            Some(format!("load-gen did not finish within {limit:?}")),
        )),
        Ok((status, _)) if status.success() => Ok(outcome("ok", None)),
        Ok((status, err)) => {
            let why = crate::report::read_json(&dir.join(format!("{stem}.json")))
                .map(|j| failure_summary(&j))
                .unwrap_or_else(|| {
                    err.lines()
                        .rfind(|l| !l.starts_with('['))
                        .unwrap_or("")
                        .trim()
                        .to_string()
                });
            Ok(outcome(
                "failed",
                Some(format!("load-gen exited with {status}: {why}")),
            ))
        }
    }
}

/// What went wrong in a cell, from load-gen's JSON: errors by kind, and why it stopped early.
pub fn failure_summary(j: &serde_json::Value) -> String {
    let mut parts: Vec<String> = ["connect", "mismatch", "closed", "reset", "timeout"]
        .iter()
        .filter_map(|k| {
            j["errors"][k]
                .as_u64()
                .filter(|&n| n > 0)
                .map(|n| format!("{n} {k}"))
        })
        .collect();
    if let Some(why) = j["stopped_early"].as_str() {
        parts.push(format!("stopped early: {why}"));
    }
    if j["messages"].as_u64() == Some(0) {
        let unfinished = j["unfinished_messages"].as_u64().unwrap_or(0);
        parts.push(format!(
            "no message completed in the measured window ({unfinished} unfinished)"
        ));
    }
    if parts.is_empty() {
        "no errors recorded".into()
    } else {
        format!("errors: {}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite(text: &str) -> Result<Suite, String> {
        let suite: Suite = toml::from_str(text).map_err(|e| e.to_string())?;
        suite.check()?;
        Ok(suite)
    }

    const HEAD: &str = "description = \"t\"\nduration = \"1s\"\nwarmup = \"0s\"\n";

    #[test]
    fn every_list_of_a_sweep_is_a_dimension_of_its_cells() {
        let s = suite(&format!(
            "{HEAD}size = \"128B\"\n[[sweep]]\nname = \"mix\"\nbackends = [\"poll\", \"epoll\"]\n\
             sizes = [\"64B\", \"4KiB\"]\npipelines = [1, 8]\nrates = [1000, 5000]\n\
             connections = [10, 100]\n\
             [[sweep]]\nname = \"plain\"\nbackends = [\"epoll\"]\nconnections = [10]\n"
        ))
        .unwrap();
        let cells = s.cells();
        assert_eq!(cells.len(), 2 * 2 * 2 * 2 * 2 + 1);
        let ids: std::collections::BTreeSet<&str> = cells.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids.len(), cells.len(), "ids are unique");
        let c = cells
            .iter()
            .find(|c| c.id == "mix-epoll-4KiB-p8-5000ps-c100")
            .expect("id names every varied value");
        assert_eq!(c.label, "epoll 4KiB pipeline 8 5000/s");
        assert_eq!(
            (c.size.as_deref(), c.pipeline, c.rate, c.connections),
            (Some("4KiB"), Some(8), Some(5000), 100)
        );
        // A sweep that varies nothing but connections keeps the short id, and the suite's values.
        let plain = cells.iter().find(|c| c.sweep == "plain").unwrap();
        assert_eq!(plain.id, "plain-epoll-c10");
        assert_eq!(plain.label, "epoll");
        assert_eq!(
            (plain.size.as_deref(), plain.pipeline, plain.rate),
            (Some("128B"), Some(1), None)
        );
    }

    #[test]
    fn kqueue_cells_on_linux_are_labelled_libkqueue_in_label_and_id() {
        let s = suite(&format!(
            "{HEAD}[[sweep]]\nname = \"c\"\nbackends = [\"epoll\", \"kqueue\"]\n\
             triggers = [\"edge\"]\nconnections = [10]\n"
        ))
        .unwrap();
        let cells = s.cells();
        let kqueue = cells.iter().find(|c| c.backend == "kqueue").unwrap();
        let epoll = cells.iter().find(|c| c.backend == "epoll").unwrap();
        assert_eq!(
            (epoll.label.as_str(), epoll.id.as_str()),
            ("epoll edge", "c-epoll-edge-c10")
        );
        if cfg!(target_os = "linux") {
            assert_eq!(kqueue.label, "kqueue (libkqueue) edge");
            assert_eq!(kqueue.id, "c-kqueue-libkqueue-edge-c10");
        }
        if cfg!(target_os = "macos") || cfg!(target_os = "freebsd") {
            assert_eq!(kqueue.label, "kqueue edge");
        }
    }

    #[test]
    fn a_server_binary_older_than_a_source_file_is_stale() {
        let ws = std::env::temp_dir().join(format!("load-gen-stale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&ws);
        std::fs::create_dir_all(ws.join("bench-server/src")).unwrap();
        std::fs::create_dir_all(ws.join("poller/target/debug")).unwrap();
        std::fs::create_dir_all(ws.join("poller/src")).unwrap();
        let at = |secs: u64| std::time::UNIX_EPOCH + Duration::from_secs(secs);
        let write = |rel: &str, t: u64| {
            let f = std::fs::File::create(ws.join(rel)).unwrap();
            f.set_modified(at(t)).unwrap();
        };
        write("Cargo.toml", 100);
        write("bench-server/src/main.rs", 100);
        write("poller/src/lib.rs", 100);
        write("poller/target/debug/junk.rs", 900); // build output, not a source
        write("poller/src/notes.txt", 900); // not a source either
        std::fs::create_dir_all(ws.join("poller/tests")).unwrap();
        write("poller/tests/t.rs", 900); // tests do not change the binary
        assert_eq!(newer_source(&ws, at(200)), None);
        write("poller/src/lib.rs", 300);
        assert_eq!(
            newer_source(&ws, at(200)),
            Some(ws.join("poller/src/lib.rs"))
        );
        std::fs::remove_dir_all(&ws).unwrap();
    }

    #[test]
    fn descriptors_count_the_server_loops_and_skip_what_cannot_run() {
        let mut cell = suite(&format!(
            "{HEAD}[[sweep]]\nname = \"s\"\nbackends = [\"select\"]\nconnections = [10]\nidle = [1000]\n"
        ))
        .unwrap()
        .cells()
        .remove(0);
        // select at 1,000 idle + 10 busy with one loop fits under FD_SETSIZE (it ran in the
        // reference run at 20k msgs/s); with eight loops, 24 more descriptors do not.
        assert_eq!(descriptor_skip(&cell, Some(20_000), Some(1023)), None);
        cell.server_threads = 8;
        let why = descriptor_skip(&cell, Some(20_000), Some(1023)).expect("skipped");
        assert!(why.contains("FD_SETSIZE (1024)"), "{why}");
        // The open-files limit counts the larger of the two processes.
        let need = Descriptors::of(&cell);
        assert!(need.server > need.client);
        let limit = need.server as u64 - 1;
        let why = descriptor_skip(&cell, Some(limit), None).expect("skipped");
        assert!(why.contains(&format!("limit {limit}")), "{why}");
        assert_eq!(descriptor_skip(&cell, Some(limit + 1), None), None);
    }

    #[test]
    fn a_suite_that_cannot_run_as_written_is_refused_with_the_reason() {
        let sweep = "[[sweep]]\nname = \"a\"\nbackends = [\"epoll\"]\nconnections = [10]\n";
        for (extra, top, why) in [
            ("rate = 5\nrates = [1, 2]\n", "", "not both"),
            ("sizes = [\"12XB\"]\n", "", "size"),
            ("pipelines = [0]\n", "", "at least 1"),
            ("", "repeat = 0\n", "repeat"),
            ("", "duration = \"soon\"\n", "duration"),
            ("colour = \"red\"\n", "", "unknown field"),
        ] {
            let text = if top.starts_with("duration") {
                format!("description = \"t\"\nwarmup = \"0s\"\n{top}{sweep}{extra}")
            } else {
                format!("{HEAD}{top}{sweep}{extra}")
            };
            let err = suite(&text)
                .err()
                .unwrap_or_else(|| panic!("accepted: {text}"));
            assert!(err.contains(why), "{why}: {err}");
        }
        let twice = format!("{HEAD}{sweep}{sweep}");
        assert!(suite(&twice).unwrap_err().contains("same name"));
        assert!(suite(&format!("{HEAD}{sweep}")).is_ok());
    }
}

//! `pollbench suite`, `report` and `compare` end to end: real suites against bench-server and
//! load-gen (built beside this binary by `cargo test --workspace`, or by the runner itself).
//! Loopback only; every run is bounded by its suite's durations and a time limit.

mod cells;
mod hosts;
mod interrupts;
mod network;
mod smoke;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pollbench_test_support::{assert_success, read_json, signal, skip, Signal, Spawned, Temp};

const BIN: &str = env!("CARGO_BIN_EXE_pollbench");

/// A run of a suite written for the test: its run directory and meta.json. The suite must exit 0.
struct SuiteRun {
    run: PathBuf,
    meta: serde_json::Value,
    _dir: Temp,
}

/// Write `toml` as a suite, run `pollbench suite` on it, and read what it left.
fn run_suite(tag: &str, toml: &str) -> SuiteRun {
    run_suite_with(tag, toml, &[])
}

/// [`run_suite`] with more arguments to `pollbench suite`.
fn run_suite_with(tag: &str, toml: &str, args: &[&str]) -> SuiteRun {
    let dir = Temp::new(tag);
    let suite = dir.0.join(format!("{tag}.toml"));
    std::fs::write(&suite, toml).unwrap();
    let out = Command::new(BIN)
        .arg("suite")
        .arg(&suite)
        .args(args)
        .arg("--results")
        .arg(dir.0.join("results"))
        .output()
        .unwrap();
    assert_success(&out);
    let run = std::fs::read_dir(dir.0.join("results"))
        .unwrap()
        .flatten()
        .next()
        .expect("a run directory")
        .path();
    let meta = read_json(run.join("meta.json"));
    SuiteRun {
        run,
        meta,
        _dir: dir,
    }
}

impl SuiteRun {
    /// The outcome of cell `id`.
    fn outcome(&self, id: &str) -> serde_json::Value {
        self.meta["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["id"] == id)
            .unwrap_or_else(|| panic!("{id}: {}", self.meta))
            .clone()
    }
}

/// A launcher in `dir` that runs its argument with `sh -c` and, like an ssh client, passes no
/// signal on: SIGTERM ends it and leaves what it started running. It prints a line of its own
/// first, as a login shell's rc file may.
fn like_ssh(dir: &Path) -> PathBuf {
    let launcher = dir.join("like-ssh");
    std::fs::write(
        &launcher,
        "#!/bin/sh\necho 'Welcome to the test host'\nsh -c \"$1\" &\nchild=$!\ntrap 'exit 143' TERM\nwait $child\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&launcher, std::fs::Permissions::from_mode(0o755)).unwrap();
    launcher
}

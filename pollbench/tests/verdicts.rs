//! The verdicts on a suite a reader would check them with: `backends = ["epoll", "epoll",
//! "threads"]` at 1,000 connections in 6 rounds. The A/A pair (epoll, epoll #2) must read "no
//! clear difference", and epoll against threads "epoll better".
//!
//! It needs release binaries: in a debug build load-gen itself is the bottleneck at 1,000
//! connections, and both servers wait on it alike. So the test builds pollbench, bench-server and
//! load-gen with `cargo build --release` (the same target directory cargo test uses) and runs the
//! suite with that pollbench. It is its own test binary so that no other test shares the two cores
//! while it measures.
//!
//! A 95% procedure calls an A/A pair different about 1 time in 32 with 6 rounds (the extremes'
//! 96.9% coverage): by design, not by bug. When that happens the suite runs once more and the
//! second run must read no difference; two false calls in a row happen about 1 time in 1,000.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pollbench_schema::summary::{Judgement, Summary};

/// The workspace's target directory, as cargo test uses it.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

const SUITE: &str = "description = \"the issue's verdict check\"\n\
    duration = \"1s\"\nwarmup = \"250ms\"\nrepeat = 6\npin = true\n\
    [[sweep]]\nname = \"c\"\nbackends = [\"epoll\", \"epoll\", \"threads\"]\nconnections = [1000]\n";

/// Run the suite with the release pollbench; its summary.
fn run_suite(pollbench: &Path, dir: &Path) -> Summary {
    let suite = dir.join("verdicts.toml");
    std::fs::write(&suite, SUITE).unwrap();
    let results = dir.join("results");
    let out = Command::new(pollbench)
        .args(["suite", suite.to_str().unwrap(), "--results"])
        .arg(&results)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let run = std::fs::read_dir(&results)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max()
        .unwrap();
    pollbench_schema::file::read_json(&run.join("summary.json")).unwrap()
}

fn verdict(summary: &Summary, a: &str, b: &str) -> Judgement {
    summary
        .verdicts
        .iter()
        .find(|v| v.a == a && v.b == b)
        .unwrap_or_else(|| panic!("{a} vs {b}: {:?}", summary.verdicts))
        .verdict
}

#[test]
fn epoll_twice_and_threads_at_1000_connections_in_6_rounds() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipped: verdicts: needs 2 cores (server and client pinned apart)");
        return;
    }
    if pollbench_common::open_files_limit().is_some_and(|l| l < 1100) {
        eprintln!("skipped: verdicts: the open-files limit is below 1,100 (1,000 connections)");
        return;
    }
    let target = target_dir();
    let build = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-p",
            "pollbench",
            "-p",
            "bench-server",
            "-p",
            "load-gen",
        ])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(build.success(), "cargo build --release");
    let pollbench = target.join("release/pollbench");
    let dir = std::env::temp_dir().join(format!("pollbench-verdicts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let started = std::time::Instant::now();
    let mut summary = run_suite(&pollbench, &dir);
    if verdict(&summary, "epoll", "epoll #2") != Judgement::NoClearDifference {
        eprintln!(
            "the A/A pair read a difference ({:?}): the 1-in-32 false call; running again",
            summary.verdicts
        );
        summary = run_suite(&pollbench, &dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(started.elapsed() < Duration::from_secs(300));
    for c in &summary.cells {
        assert_eq!(c.rounds, 6, "{c:?}");
    }
    assert_eq!(
        verdict(&summary, "epoll", "epoll #2"),
        Judgement::NoClearDifference,
        "{:?}",
        summary.verdicts
    );
    assert_eq!(
        verdict(&summary, "epoll", "threads"),
        Judgement::ABetter,
        "{:?}",
        summary.verdicts
    );
}

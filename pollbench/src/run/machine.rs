//! The machine and checkout a suite runs on (CPU, memory, kernel, compiler, commit, open-files
//! limit), as a new run's meta.json first records them.

use std::process::Command;

use pollbench_schema::results::{Cell, Meta, META_SCHEMA};

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// git's answer about the tree this program was built from, where bench-server and load-gen are
/// built too (not the current directory's repository, which may be another one); None where
/// that tree is gone or git cannot say.
fn git(args: &[&str]) -> Option<String> {
    let tree = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let tree = tree.to_str().filter(|_| tree.join("Cargo.toml").exists())?;
    let with_tree: Vec<&str> = ["-C", tree]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    command_line("git", &with_tree)
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The machine's host name, as run directories are named after it.
pub fn host_name() -> String {
    read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "host".into())
}

/// This machine and checkout, for the meta.json of a new run of `suite` (its text `suite_file`).
pub fn collect_meta(
    suite: &str,
    suite_file: String,
    started_utc: String,
    cells: Vec<Cell>,
) -> Meta {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
    });
    let memory_bytes = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let kib: u64 = m
            .lines()
            .find(|l| l.starts_with("MemTotal"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kib * 1024)
    });
    Meta {
        schema: META_SCHEMA.into(),
        suite: suite.into(),
        suite_file,
        started_utc,
        host: host_name(),
        git_commit: git(&["rev-parse", "HEAD"]),
        git_dirty: git(&["status", "--porcelain"]).map(|s| !s.is_empty()),
        rustc: command_line("rustc", &["--version"]),
        kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        cpu_model,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes,
        fd_limit: pollbench_common::open_files_limit(),
        cells,
        rounds: None,
        disturbance: None,
        sweeps: None,
        topology: None,
        hosts: None,
        suite_settings: None,
        externals: None,
        outcomes: Vec::new(),
    }
}

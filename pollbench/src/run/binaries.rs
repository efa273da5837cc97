//! The two programs a suite runs, bench-server and load-gen: found beside this binary and kept as
//! fresh as their sources. Either is built with cargo (this binary's profile, and the kqueue feature
//! if this binary has it) when it is missing or older than a source file it is built from; a stale
//! binary that cannot be rebuilt is refused, since it would measure old code under a new name.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use pollbench_schema::capabilities::Capabilities;

use crate::run::process::Running;

/// The programs a suite runs, and what the server binary says it can run here.
pub struct Binaries {
    pub bench_server: PathBuf,
    pub load_gen: PathBuf,
    /// `bench-server --capabilities`: the backends built into that binary and available on this
    /// machine, what each accepts, and their descriptor limits. The binary is the truth: it may be
    /// built with libkqueue when this one is not.
    pub capabilities: Capabilities,
}

impl Binaries {
    /// Both programs, built first where they are missing or stale, and the server's capabilities.
    pub fn find_or_build() -> Result<Binaries, String> {
        let bench_server = find_or_build(
            "bench-server",
            &["bench-server", "poller", "common", "schema"],
        )?;
        let load_gen = find_or_build("load-gen", &["load-gen", "poller", "common", "schema"])?;
        let capabilities = capabilities_of(&bench_server)?;
        Ok(Binaries {
            bench_server,
            load_gen,
            capabilities,
        })
    }
}

/// Ask a bench-server binary what it can run here.
fn capabilities_of(bench_server: &Path) -> Result<Capabilities, String> {
    let mut cmd = Command::new(bench_server);
    cmd.arg("--capabilities");
    let mut child =
        Running::spawn(cmd).map_err(|e| format!("cannot run {}: {e}", bench_server.display()))?;
    let (status, stderr) = child
        .wait(Duration::from_secs(20))
        .map_err(|end| format!("bench-server --capabilities did not finish ({end:?})"))?;
    if !status.success() {
        return Err(format!(
            "bench-server --capabilities exited with {status}: {}",
            stderr.trim()
        ));
    }
    pollbench_schema::capabilities::parse(&child.stdout_rest())
}

/// `package`'s binary beside this one, fresh against the workspace crates in `crates`.
fn find_or_build(package: &str, crates: &[&str]) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("no directory for pollbench")?;
    let binary = dir.join(package);
    // The workspace this binary was built from, if it is still there.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .filter(|w| w.join(package).join("Cargo.toml").exists());
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
    let stale = match (built, workspace) {
        (None, _) => Some("it is not built yet".to_string()),
        (Some(built), Some(ws)) => newer_source(ws, crates, built)
            .map(|p| format!("{} changed after it was built", p.display())),
        (Some(_), None) => None,
    };
    let Some(why) = stale else {
        return Ok(binary);
    };
    let Some(ws) = workspace else {
        return Err(format!(
            "{package}: {why}, and its sources are not here to build it"
        ));
    };
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(name) => name.to_string(),
        None => "release".to_string(),
    };
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .arg("build")
        .arg("--manifest-path")
        .arg(ws.join("Cargo.toml"))
        .args(["-p", package, "--profile", &profile])
        .arg("--target-dir")
        .arg(dir.parent().unwrap_or(dir));
    if cfg!(feature = "libkqueue") {
        cargo.args(["--features", &format!("{package}/libkqueue")]);
    }
    eprintln!("{package}: {why}; building it (cargo build -p {package} --profile {profile})");
    // cargo decides what is fresh: a change that does not alter the binary leaves it as it was.
    let built = cargo.status().map(|s| s.success()).unwrap_or(false);
    if built && binary.exists() {
        Ok(binary)
    } else {
        Err(format!(
            "{package}: {why}, and building it failed; build it with `cargo build --release -p {package}` and retry"
        ))
    }
}

/// A file a binary is built from, modified after `built`: under each of `crates`, its `src/`,
/// `Cargo.toml` and `build.rs` (tests and benches do not change the binary), and the workspace's
/// `Cargo.toml` and `Cargo.lock`. Only Rust, TOML and lock files count.
pub fn newer_source(workspace: &Path, crates: &[&str], built: SystemTime) -> Option<PathBuf> {
    fn walk(path: &Path, built: SystemTime) -> Option<PathBuf> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(path).ok()?;
            return entries.flatten().find_map(|e| walk(&e.path(), built));
        }
        let source = path
            .extension()
            .is_some_and(|e| e == "rs" || e == "toml" || e == "lock");
        (source && meta.modified().ok()? > built).then(|| path.to_path_buf())
    }
    let per_crate = crates
        .iter()
        .flat_map(|c| ["src", "Cargo.toml", "build.rs"].map(|part| workspace.join(c).join(part)));
    let workspace_files = ["Cargo.toml", "Cargo.lock"].map(|f| workspace.join(f));
    per_crate
        .chain(workspace_files)
        .find_map(|path| walk(&path, built))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_binary_older_than_a_source_file_is_stale() {
        let ws = std::env::temp_dir().join(format!("pollbench-stale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&ws);
        for d in [
            "bench-server/src",
            "poller/src",
            "poller/tests",
            "poller/target/debug",
            "load-gen/src",
        ] {
            std::fs::create_dir_all(ws.join(d)).unwrap();
        }
        let at = |secs: u64| std::time::UNIX_EPOCH + Duration::from_secs(secs);
        let write = |rel: &str, t: u64| {
            let f = std::fs::File::create(ws.join(rel)).unwrap();
            f.set_modified(at(t)).unwrap();
        };
        let crates = ["bench-server", "poller"];
        write("Cargo.toml", 100);
        write("bench-server/src/main.rs", 100);
        write("poller/src/lib.rs", 100);
        write("poller/target/debug/junk.rs", 900); // build output, not a source
        write("poller/src/notes.txt", 900); // not a source either
        write("poller/tests/t.rs", 900); // tests do not change the binary
        write("load-gen/src/main.rs", 900); // not a crate this binary is built from
        assert_eq!(newer_source(&ws, &crates, at(200)), None);
        write("poller/src/lib.rs", 300);
        assert_eq!(
            newer_source(&ws, &crates, at(200)),
            Some(ws.join("poller/src/lib.rs"))
        );
        std::fs::remove_dir_all(&ws).unwrap();
    }
}

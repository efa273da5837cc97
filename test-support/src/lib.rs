//! What the workspace's integration tests share: child processes run with their stdout and stderr
//! read while they run and a time limit ([`output_within`], [`Spawned`]), temporary directories
//! removed on drop ([`Temp`]), skips that output capture does not swallow ([`skip`]), load-gen and
//! bench-server command lines built flag by flag ([`Argv`]), and checks of what a run left
//! ([`assert_success`], [`read_json`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use pollbench_common::process::{signal, Running, Signal, WaitEnd};

/// Say that `what` was skipped and why, on stderr directly: the test harness captures `eprintln!`
/// of a passing test, and a skip must be seen.
pub fn skip(what: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "skipped: {what}: {why}");
}

/// Fail the test unless `out` is of a command that exited 0, showing its stderr.
#[track_caller]
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The JSON document in file `path`; the test fails if it is missing or not JSON.
#[track_caller]
pub fn read_json(path: impl AsRef<Path>) -> serde_json::Value {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fresh directory, removed on drop.
pub struct Temp(pub PathBuf);

impl Temp {
    /// A fresh directory under the system's temporary directory. Names come from a counter, not
    /// the clock: two made in the same clock tick once shared a directory, and one's cleanup
    /// deleted the other's files.
    pub fn new(tag: &str) -> Temp {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("pollbench-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir); // left by an earlier process with this pid
        std::fs::create_dir(&dir).unwrap();
        Temp(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run `cmd` to its exit, its stdout and stderr read as it runs (so a child that writes more than
/// a pipe holds still exits); past `limit` it is killed and the test panics, naming the program.
pub fn output_within(cmd: Command, limit: Duration) -> Output {
    Spawned::new(cmd).output_within(limit)
}

/// A child process started for a test, its output read as it runs, killed when dropped.
pub struct Spawned {
    running: Running,
    program: String,
}

impl Spawned {
    /// Start `cmd` with stdin closed and stdout and stderr read as it runs.
    pub fn new(cmd: Command) -> Spawned {
        let program = Path::new(cmd.get_program())
            .file_name()
            .unwrap_or(cmd.get_program())
            .to_string_lossy()
            .into_owned();
        let running = Running::spawn(cmd).unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Spawned { running, program }
    }

    pub fn id(&self) -> u32 {
        self.running.id()
    }

    /// The next line the child writes to stdout, without its line ending; None when it closed
    /// its stdout or `limit` passed first.
    pub fn stdout_line(&mut self, limit: Duration) -> Option<String> {
        self.running.stdout_line(limit)
    }

    /// Whether the child has not exited yet.
    pub fn is_running(&mut self) -> bool {
        self.running.is_running()
    }

    /// Send `sig` to the child.
    pub fn signal(&self, sig: Signal) {
        signal(self.id(), sig).unwrap_or_else(|e| panic!("signal {sig} to {}: {e}", self.program));
    }

    /// Wait for the child's exit and take all it wrote; past `limit` it is killed and the test
    /// panics, naming the program.
    pub fn output_within(mut self, limit: Duration) -> Output {
        match self.running.wait_output(limit) {
            Ok(output) => output,
            Err((end, _)) => panic!("{} did not finish within {limit:?} ({end:?})", self.program),
        }
    }

    /// Wait for the child's exit and take all it wrote: `Err` with what it wrote until it was
    /// killed, if it ran past `limit`.
    pub fn output_or_kill(mut self, limit: Duration) -> Result<Output, Output> {
        self.running
            .wait_output(limit)
            .map_err(|(_, output)| output)
    }
}

/// A command line built flag by flag, for `load-gen run` and bench-server: `Argv::run(addr)
/// .connections(4).threads(1).duration("1s")` is `--target ADDR -c 4 -t 1 -d 1s`.
#[derive(Clone, Debug, Default)]
pub struct Argv(Vec<String>);

impl Argv {
    /// No arguments yet.
    pub fn new() -> Argv {
        Argv::default()
    }

    /// `load-gen run`'s arguments, starting with `--target ADDR`.
    pub fn run(target: impl ToString) -> Argv {
        Argv::new().flag("--target", target)
    }

    /// `NAME VALUE`.
    pub fn flag(mut self, name: &str, value: impl ToString) -> Argv {
        self.0.push(name.to_string());
        self.0.push(value.to_string());
        self
    }

    /// `NAME PATH`.
    pub fn path(self, name: &str, path: &Path) -> Argv {
        self.flag(name, path.display())
    }

    /// One argument.
    pub fn arg(mut self, arg: impl ToString) -> Argv {
        self.0.push(arg.to_string());
        self
    }

    /// load-gen's connections: `-c N`.
    pub fn connections(self, n: impl ToString) -> Argv {
        self.flag("-c", n)
    }

    /// load-gen's worker threads: `-t N`.
    pub fn threads(self, n: impl ToString) -> Argv {
        self.flag("-t", n)
    }

    /// load-gen's measured window: `-d DURATION`.
    pub fn duration(self, d: &str) -> Argv {
        self.flag("-d", d)
    }

    /// load-gen's warm-up before the window: `--warmup DURATION`.
    pub fn warmup(self, d: &str) -> Argv {
        self.flag("--warmup", d)
    }

    /// load-gen's open-loop rate: `-R MSGS_PER_S`.
    pub fn rate(self, r: impl ToString) -> Argv {
        self.flag("-R", r)
    }

    /// load-gen's interval log: `--hlog FILE`.
    pub fn hlog(self, file: &Path) -> Argv {
        self.path("--hlog", file)
    }

    /// bench-server's backend: `--backend NAME`.
    pub fn backend(self, name: &str) -> Argv {
        self.flag("--backend", name)
    }

    /// bench-server's event loops: `--threads N`.
    pub fn loops(self, n: impl ToString) -> Argv {
        self.flag("--threads", n)
    }

    /// bench-server's readiness trigger: `--trigger TRIGGER`.
    pub fn trigger(self, trigger: &str) -> Argv {
        self.flag("--trigger", trigger)
    }

    /// bench-server's accept strategy: `--accept STRATEGY`.
    pub fn accept(self, strategy: &str) -> Argv {
        self.flag("--accept", strategy)
    }

    /// `NAME VALUE`, in place of the value `name` has if it has one (options given twice are
    /// refused).
    pub fn set(mut self, name: &str, value: impl ToString) -> Argv {
        match self.0.iter().rposition(|a| a == name) {
            Some(at) if at + 1 < self.0.len() => {
                self.0[at + 1] = value.to_string();
                self
            }
            _ => self.flag(name, value),
        }
    }

    /// The value after the last `name`, if any.
    pub fn value_of(&self, name: &str) -> Option<&str> {
        let at = self.0.iter().rposition(|a| a == name)?;
        self.0.get(at + 1).map(String::as_str)
    }

    /// The arguments, to borrow as `&[&str]`.
    pub fn strs(&self) -> Vec<&str> {
        self.0.iter().map(String::as_str).collect()
    }
}

impl<'a> IntoIterator for &'a Argv {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sh -c SCRIPT`.
    fn sh(script: &str) -> Command {
        let mut shell = Command::new("sh");
        shell.arg("-c").arg(script);
        shell
    }

    #[test]
    fn a_child_writing_more_than_a_pipe_holds_to_stdout_finishes() {
        // 1 MiB, far beyond a pipe's 64 KiB: read only after the child's exit, it never exits.
        let out = output_within(
            sh("head -c 1048576 /dev/zero | tr '\\0' x; echo done >&2"),
            Duration::from_secs(20),
        );
        assert!(out.status.success());
        assert_eq!(out.stdout.len(), 1 << 20);
        assert!(out.stdout.iter().all(|&b| b == b'x'));
        assert_eq!(out.stderr, b"done\n");
    }

    #[test]
    fn output_is_kept_byte_for_byte() {
        let out = output_within(sh("printf 'a\\r\\nb\\377'"), Duration::from_secs(20));
        assert_eq!(out.stdout, b"a\r\nb\xff");
    }

    #[test]
    fn a_child_past_its_limit_is_killed_with_what_it_wrote() {
        let child = Spawned::new(sh("echo started; exec sleep 30"));
        let started = std::time::Instant::now();
        let out = child
            .output_or_kill(Duration::from_millis(500))
            .expect_err("killed");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(out.stdout, b"started\n");
    }

    #[test]
    #[should_panic(expected = "sh did not finish within")]
    fn a_child_past_its_limit_fails_the_test() {
        output_within(sh("exec sleep 30"), Duration::from_millis(200));
    }

    #[test]
    fn temp_directories_are_fresh_and_removed_on_drop() {
        let a = Temp::new("t");
        let b = Temp::new("t");
        assert_ne!(a.0, b.0);
        let path = a.0.clone();
        std::fs::write(path.join("f"), "x").unwrap();
        drop(a);
        assert!(!path.exists());
    }

    #[test]
    fn argv_spells_the_flags() {
        let argv = Argv::run("127.0.0.1:9")
            .connections(4)
            .threads(1)
            .duration("1s")
            .warmup("0s")
            .rate(100);
        assert_eq!(
            argv.strs(),
            [
                "--target",
                "127.0.0.1:9",
                "-c",
                "4",
                "-t",
                "1",
                "-d",
                "1s",
                "--warmup",
                "0s",
                "-R",
                "100"
            ]
        );
        assert_eq!(argv.value_of("-d"), Some("1s"));
        assert_eq!(argv.clone().set("-d", "2s").value_of("-d"), Some("2s"));
        assert_eq!(argv.clone().set("-d", "2s").strs().len(), argv.strs().len());
        let server = Argv::new().backend("epoll").loops(2).accept("shared");
        assert_eq!(
            server.strs(),
            ["--backend", "epoll", "--threads", "2", "--accept", "shared"]
        );
    }
}

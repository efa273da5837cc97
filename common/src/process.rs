//! Child processes whose stdout and stderr are read while they run (so a child that writes more
//! than a pipe holds never blocks on it), waited for with a time limit, signalled through the
//! `kill` system call, and killed and reaped when dropped. Every child alive is listed, so a panic
//! hook can kill them all ([`kill_all`]) where no destructor runs (`panic = "abort"`).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;

/// Every child process alive now, by pid, for [`kill_all`].
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// When set (a program registers it for SIGINT and SIGTERM), waits end early and their children
/// are killed.
pub fn interrupted() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// SIGKILL every child spawned through [`Running`] that is still alive; for a panic hook.
pub fn kill_all() {
    // try_lock: the panic may have happened while the list was held.
    if let Ok(pids) = CHILDREN.try_lock() {
        for &pid in pids.iter() {
            let _ = signal(pid, Signal::SIGKILL);
        }
    }
}

/// Send `sig` to process `pid`.
pub fn signal(pid: u32, sig: Signal) -> nix::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| nix::errno::Errno::ESRCH)?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
}

/// How a wait ended other than by the child's exit.
#[derive(Debug, PartialEq, Eq)]
pub enum WaitEnd {
    /// The deadline passed (the child was then killed).
    Deadline,
    /// [`interrupted`] was set (the child was then killed).
    Interrupted,
}

/// A child process whose stdout and stderr are read by threads as it runs, killed and reaped when
/// dropped.
pub struct Running {
    child: Child,
    /// Stdout as it arrives, a line (with its newline, if it had one) at a time.
    stdout_lines: Option<Receiver<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Running {
    /// Spawn `cmd` with stdin closed, stdout read line by line, stderr collected.
    pub fn spawn(mut cmd: Command) -> std::io::Result<Running> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        CHILDREN.lock().expect("child list").push(child.id());
        let (tx, rx) = std::sync::mpsc::channel();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        std::thread::spawn(move || loop {
            let mut line = Vec::new();
            match stdout.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                // Nobody listening any more is fine: the rest is drained and dropped.
                Ok(_) => drop(tx.send(line)),
            }
        });
        let mut stderr = child.stderr.take().expect("piped");
        let stderr = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            text
        });
        Ok(Running {
            child,
            stdout_lines: Some(rx),
            stderr: Some(stderr),
        })
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the child has not exited yet.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The next line the child writes to stdout, without its line ending, waiting at most `limit`;
    /// None when it closed its stdout, the limit passed, or [`interrupted`] was set.
    pub fn stdout_line(&mut self, limit: Duration) -> Option<String> {
        let rx = self.stdout_lines.as_ref()?;
        let deadline = Instant::now() + limit;
        loop {
            if interrupted().load(Ordering::Relaxed) {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match rx.recv_timeout(left.min(Duration::from_millis(50))) {
                Ok(line) => {
                    let line = line.strip_suffix(b"\n").unwrap_or(&line);
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    return Some(String::from_utf8_lossy(line).into_owned());
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Everything the child wrote to stdout that has not been read as a line yet; complete once it
    /// has exited.
    pub fn stdout_rest(&mut self) -> String {
        String::from_utf8_lossy(&self.stdout_bytes()).into_owned()
    }

    fn stdout_bytes(&mut self) -> Vec<u8> {
        match self.stdout_lines.take() {
            Some(rx) => rx.iter().flatten().collect(),
            None => Vec::new(),
        }
    }

    /// Wait for the child to exit, at most `limit`; on the deadline or an interruption the child is
    /// killed. Returns its status and everything it wrote to stderr.
    pub fn wait(&mut self, limit: Duration) -> Result<(ExitStatus, String), WaitEnd> {
        self.wait_until(limit, true)?;
        Ok((self.child.wait().expect("reaped"), self.stderr_text()))
    }

    /// [`wait`](Self::wait), but not cut short by an interruption: for a short command that
    /// cleans up after one (stopping a process on another host), bounded by `limit` alone.
    pub fn wait_through(&mut self, limit: Duration) -> Result<(ExitStatus, String), WaitEnd> {
        self.wait_until(limit, false)?;
        Ok((self.child.wait().expect("reaped"), self.stderr_text()))
    }

    /// [`wait`](Self::wait), returning all the child wrote to stdout and stderr, byte for byte.
    /// On the deadline or an interruption, what it wrote before it was killed comes with the end.
    pub fn wait_output(&mut self, limit: Duration) -> Result<Output, (WaitEnd, Output)> {
        let end = self.wait_until(limit, true);
        let output = Output {
            status: self.child.wait().expect("reaped"),
            stdout: self.stdout_bytes(),
            stderr: self.stderr_bytes(),
        };
        match end {
            Ok(()) => Ok(output),
            Err(end) => Err((end, output)),
        }
    }

    /// Returns once the child has exited (`Child` keeps its status for `wait`), or kills it at the
    /// deadline or on an interruption.
    fn wait_until(&mut self, limit: Duration, interruptible: bool) -> Result<(), WaitEnd> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                forget(self.child.id());
                return Ok(());
            }
            if interruptible && interrupted().load(Ordering::Relaxed) {
                self.kill();
                return Err(WaitEnd::Interrupted);
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(WaitEnd::Deadline);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Ask the child to stop (SIGTERM), wait up to `grace` for it, then kill it.
    pub fn terminate(&mut self, grace: Duration) {
        if self.is_running() {
            let _ = signal(self.child.id(), Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && self.is_running() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.kill();
    }

    /// What the child wrote to stderr; complete once it has exited.
    pub fn stderr_text(&mut self) -> String {
        String::from_utf8_lossy(&self.stderr_bytes()).into_owned()
    }

    fn stderr_bytes(&mut self) -> Vec<u8> {
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        forget(self.child.id());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

fn forget(pid: u32) {
    if let Ok(mut pids) = CHILDREN.lock() {
        pids.retain(|&p| p != pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn a_child_that_writes_megabytes_to_stderr_is_drained_while_it_runs() {
        // 4 MiB is far beyond a pipe's 64 KiB: read only after exit, the child never exits.
        let mut child =
            Running::spawn(sh("head -c 4194304 /dev/zero | tr '\\0' x >&2; exit 3")).unwrap();
        let (status, err) = child.wait(Duration::from_secs(20)).expect("exits");
        assert_eq!(status.code(), Some(3));
        assert_eq!(err.len(), 4 << 20);
    }

    #[test]
    fn a_child_past_its_deadline_is_killed_and_reaped() {
        let mut child = Running::spawn(sh("exec sleep 30")).unwrap();
        let pid = child.child.id();
        let started = Instant::now();
        assert_eq!(
            child.wait(Duration::from_millis(200)),
            Err(WaitEnd::Deadline)
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        // Reaped: the pid no longer names a process (or zombie) of ours.
        assert!(signal(pid, Signal::SIGCONT).is_err());
        assert!(!CHILDREN.lock().unwrap().contains(&pid));
    }

    #[test]
    fn stdout_lines_arrive_with_a_limit_and_terminate_uses_sigterm() {
        // The child says hello, then waits for SIGTERM and reports that it got it on stderr.
        let mut child = Running::spawn(sh(
            "trap 'echo got-term >&2; exit 0' TERM; echo hello; while :; do sleep 0.05; done",
        ))
        .unwrap();
        assert_eq!(
            child.stdout_line(Duration::from_secs(10)).as_deref(),
            Some("hello")
        );
        assert_eq!(child.stdout_line(Duration::from_millis(100)), None);
        child.terminate(Duration::from_secs(5));
        assert!(child.stderr_text().contains("got-term"));
    }

    #[test]
    fn a_dropped_child_is_killed() {
        let child = Running::spawn(sh("exec sleep 30")).unwrap();
        let pid = child.child.id();
        drop(child);
        assert!(signal(pid, Signal::SIGCONT).is_err());
    }
}

//! The suite runner's child processes (bench-server, `load-gen run`): spawned with their output
//! drained while they run, waited for with a deadline, signalled through the `kill` system call, and
//! killed on every exit path: on drop, on SIGINT/SIGTERM to the runner, and from the panic hook
//! (which runs even with `panic = "abort"`, where no destructor does; it also deletes the network
//! namespaces the process made).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Every child process alive now, by pid, for the panic hook.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Set by SIGINT or SIGTERM to the runner: waits end early and the children are killed.
pub fn interrupted() -> &'static Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Install the SIGINT/SIGTERM flag and the panic hook that kills every child. Once per process.
pub fn install_cleanup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let _ = signal_hook::flag::register(signal, interrupted().clone());
        }
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // try_lock: the panic may have happened while the list was held.
            if let Ok(pids) = CHILDREN.try_lock() {
                for &pid in pids.iter() {
                    let _ = signal(pid, Signal::SIGKILL);
                }
            }
            crate::netns::remove_leftovers();
            default(info);
        }));
    });
}

/// Send `sig` to process `pid`.
pub fn signal(pid: u32, sig: Signal) -> nix::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| nix::errno::Errno::ESRCH)?;
    kill(Pid::from_raw(pid), sig)
}

/// How a wait ended other than by the child's exit.
#[derive(Debug, PartialEq, Eq)]
pub enum WaitEnd {
    /// The deadline passed (the child was then killed).
    Deadline,
    /// The runner was interrupted (the child was then killed).
    Interrupted,
}

/// A child process whose stdout and stderr are read by threads as it runs (so a chatty child never
/// blocks on a full pipe), killed and reaped when dropped.
pub struct Running {
    child: Child,
    stdout_lines: Option<std::sync::mpsc::Receiver<String>>,
    stderr: Option<JoinHandle<String>>,
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
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Nobody listening any more is fine: the rest is drained and dropped.
                let _ = tx.send(line);
            }
        });
        let mut stderr = child.stderr.take().expect("piped");
        let stderr = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        });
        Ok(Running {
            child,
            stdout_lines: Some(rx),
            stderr: Some(stderr),
        })
    }

    /// The next line the child writes to stdout, waiting at most `limit`; None when it closed its
    /// stdout, the limit passed, or the runner was interrupted.
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
                Ok(line) => return Some(line),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Everything the child wrote to stdout that has not been read as a line yet; complete once it
    /// has exited.
    pub fn stdout_rest(&mut self) -> String {
        let mut text = String::new();
        if let Some(rx) = self.stdout_lines.take() {
            for line in rx.iter() {
                text.push_str(&line);
                text.push('\n');
            }
        }
        text
    }

    /// Wait for the child to exit, at most `limit`; on the deadline or an interruption the child is
    /// killed. Returns its status and everything it wrote to stderr.
    pub fn wait(&mut self, limit: Duration) -> Result<(ExitStatus, String), WaitEnd> {
        self.wait_until(limit, true)
    }

    /// [`wait`](Self::wait), but not cut short by an interruption: for a short command that
    /// cleans up after one (stopping a process on another host), bounded by `limit` alone.
    pub fn wait_through(&mut self, limit: Duration) -> Result<(ExitStatus, String), WaitEnd> {
        self.wait_until(limit, false)
    }

    fn wait_until(
        &mut self,
        limit: Duration,
        interruptible: bool,
    ) -> Result<(ExitStatus, String), WaitEnd> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                forget(self.child.id());
                return Ok((status, self.stderr_text()));
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
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = signal(self.child.id(), Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.kill();
    }

    /// What the child wrote to stderr; complete once it has exited.
    pub fn stderr_text(&mut self) -> String {
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

//! Child processes whose stdout and stderr are read while they run (so a child that writes more
//! than a pipe holds never blocks on it), waited for with a time limit, signalled through the
//! `kill` system call, and killed and reaped when dropped. Every child alive is listed, so a panic
//! hook can kill them all ([`kill_all`]) where no destructor runs (`panic = "abort"`).
//!
//! A child that may start children of its own (a command pollbench does not know, such as a shell
//! script that runs the real server) is started as the leader of a process group of its own
//! ([`Running::spawn_group`]): every signal that stops it goes to the whole group, so what it
//! started does not outlive it.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;

/// Every child process alive now, for [`kill_all`]: its pid, and whether it leads a process
/// group of its own (signalled as a whole).
static CHILDREN: Mutex<Vec<(u32, bool)>> = Mutex::new(Vec::new());

/// When set (a program registers it for SIGINT and SIGTERM), waits end early and their children
/// are killed.
pub fn interrupted() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// SIGKILL every child spawned through [`Running`] that is still alive, and the whole process
/// group of one spawned with [`Running::spawn_group`]; for a panic hook.
pub fn kill_all() {
    // try_lock: the panic may have happened while the list was held.
    if let Ok(pids) = CHILDREN.try_lock() {
        for &(pid, group) in pids.iter() {
            let _ = send(pid, group, Some(Signal::SIGKILL));
        }
    }
}

/// Send `sig` to process `pid`.
pub fn signal(pid: u32, sig: Signal) -> nix::Result<()> {
    send(pid, false, Some(sig))
}

/// Send `sig` to process `pid`, or with `group` to every process of the group it leads (`kill`
/// of -pid); no signal only checks that one exists (a zombie counts). Never pid 0 or 1: as
/// groups, 0 and -1 would name the caller's own group and every process it may signal.
fn send(pid: u32, group: bool, sig: Option<Signal>) -> nix::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .filter(|&p| p > 1)
        .ok_or(nix::errno::Errno::ESRCH)?;
    let target = if group { -pid } else { pid };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(target), sig)
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
    /// Whether it leads a process group of its own, signalled as a whole.
    group: bool,
    /// Stdout as it arrives, a line (with its newline, if it had one) at a time.
    stdout_lines: Option<Receiver<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Running {
    /// Spawn `cmd` with stdin closed, stdout read line by line, stderr collected.
    pub fn spawn(cmd: Command) -> std::io::Result<Running> {
        Running::start(cmd, false)
    }

    /// [`spawn`](Self::spawn) `cmd` as the leader of a new process group, so that the processes it
    /// starts (a script's server, `sh -c 'server & wait'`) are signalled with it: by
    /// [`terminate`](Self::terminate), on drop, and by [`kill_all`], even after it has ended.
    ///
    /// For a command that may fork. The group is not the terminal's foreground one: a Ctrl-C
    /// reaches the caller only, which stops the group, and a program that reads the terminal (an
    /// ssh password prompt) is stopped by SIGTTIN, so launchers are not started this way.
    pub fn spawn_group(mut cmd: Command) -> std::io::Result<Running> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        Running::start(cmd, true)
    }

    fn start(mut cmd: Command, group: bool) -> std::io::Result<Running> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        CHILDREN
            .lock()
            .expect("child list")
            .push((child.id(), group));
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
            group,
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

    /// Whether the child, or a process left in its group, has not exited yet (an unreaped
    /// zombie of the group counts: the wait for it lasts until its parent reaps it).
    fn any_running(&mut self) -> bool {
        // The child first: reaped, its zombie no longer counts as one of the group.
        self.is_running() || (self.group && self.group_left())
    }

    /// Whether a process of the child's group is left. When none is, the group is over for good:
    /// its id is free for another group, which must never be signalled in its place, so it is
    /// never signalled again.
    fn group_left(&mut self) -> bool {
        if !self.group {
            return false;
        }
        let left = send(self.child.id(), true, None).is_ok();
        if !left && !self.is_running() {
            self.group = false;
            if let Ok(mut pids) = CHILDREN.lock() {
                for entry in pids.iter_mut().filter(|(p, _)| *p == self.child.id()) {
                    entry.1 = false;
                }
            }
        }
        left
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
                // A group's other processes may still run: it stays listed until dropped.
                if !self.group {
                    forget(self.child.id());
                }
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

    /// Ask the child (and its group, if it leads one) to stop (SIGTERM), wait up to `grace` for
    /// it (for all of the group: a process of it that ended counts until its parent, init once it
    /// is reparented, reaps it), then kill it (all of the group).
    pub fn terminate(&mut self, grace: Duration) {
        if self.any_running() {
            let _ = send(self.child.id(), self.group, Some(Signal::SIGTERM));
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && self.any_running() {
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
        // The group's id is the child's pid, not reused while a process of the group or the
        // child's zombie is left; `group_left` says whether one is, and ends the group if not.
        if self.group_left() {
            let _ = send(self.child.id(), true, Some(Signal::SIGKILL));
        }
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
        pids.retain(|&(p, _)| p != pid);
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
        assert!(!CHILDREN.lock().unwrap().iter().any(|&(p, _)| p == pid));
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

    /// A shell that starts `sleep 30` in the background (its output not on our pipes), says its
    /// pid, then runs `then`; started as a group. The child and the sleep's pid.
    fn forking(then: &str) -> (Running, u32) {
        let script = format!("sleep 30 </dev/null >/dev/null 2>&1 & echo $!; {then}");
        let mut child = Running::spawn_group(sh(&script)).unwrap();
        let line = child.stdout_line(Duration::from_secs(5)).expect("a pid");
        (child, line.trim().parse().expect("a pid"))
    }

    /// Whether process `pid` is gone: no such process, or a zombie (dead; reparented, it waits
    /// for init, which is not ours to hurry, to reap it).
    fn gone(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat.rfind(')').is_some_and(|end| {
                matches!(stat[end + 1..].trim_start().chars().next(), Some('Z' | 'X'))
            }),
            Err(_) if std::path::Path::new("/proc/self/stat").exists() => true,
            // No /proc: init reaps at once.
            Err(_) => send(pid, false, None).is_err(),
        }
    }

    /// Assert `pid` is gone within 1 s; if it is not, kill it (not to leave it behind) and fail.
    fn assert_gone_soon(pid: u32, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while !gone(pid) {
            if Instant::now() >= deadline {
                let _ = signal(pid, Signal::SIGKILL);
                panic!("{what}: process {pid} it started still runs");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// As groups, 0 and 1 name the caller's own group and every process it may signal: never
    /// sent to (checked with no signal, so a failure harms nothing).
    #[test]
    fn pid_0_and_1_are_never_signalled() {
        for (pid, group) in [(0, false), (0, true), (1, false), (1, true)] {
            assert_eq!(send(pid, group, None), Err(nix::errno::Errno::ESRCH));
        }
    }

    /// Once every process of a child's group has ended, its id may name another group: it is
    /// not signalled again, by the child or by `kill_all`.
    #[test]
    fn a_group_that_has_ended_is_never_signalled_again() {
        let mut child = Running::spawn_group(sh("exit 0")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.any_running() {
            assert!(Instant::now() < deadline, "sh -c 'exit 0' still runs");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!child.group);
        let listed = CHILDREN
            .lock()
            .unwrap()
            .iter()
            .find(|(p, _)| *p == child.id())
            .copied();
        assert_eq!(listed, Some((child.id(), false)));
    }

    #[test]
    fn a_group_child_stopped_takes_what_it_started_with_it() {
        let (mut child, grandchild) = forking("wait");
        assert!(!gone(grandchild));
        let started = Instant::now();
        child.terminate(Duration::from_millis(500));
        let took = started.elapsed();
        assert_gone_soon(grandchild, "a terminated group child");
        assert!(took < Duration::from_secs(2), "{took:?}");
        assert!(!CHILDREN
            .lock()
            .unwrap()
            .iter()
            .any(|&(p, _)| p == child.id()));
    }

    #[test]
    fn a_group_child_dropped_takes_what_it_started_with_it() {
        let (child, grandchild) = forking("wait");
        assert!(!gone(grandchild));
        drop(child);
        assert_gone_soon(grandchild, "a dropped group child");
    }

    /// A script that starts its server in the background and exits: the server is stopped with
    /// the child's handle, after the child's own end.
    #[test]
    fn a_group_child_that_exited_leaves_nothing_running_once_dropped() {
        let (mut child, grandchild) = forking("exit 0");
        let (status, _) = child.wait(Duration::from_secs(5)).expect("exits");
        assert!(status.success());
        assert!(!gone(grandchild));
        // Still listed, as a group, for the panic hook's kill_all.
        let listed = CHILDREN.lock().unwrap().contains(&(child.id(), true));
        drop(child);
        assert_gone_soon(grandchild, "a group child that exited");
        assert!(listed);
    }
}

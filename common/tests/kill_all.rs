//! `kill_all` (what a panic hook calls) takes down the whole process group of a child started as
//! one, not only the child. The only test of its binary: `kill_all` kills every child of the
//! process, so it must not run beside other tests' children.

use std::process::Command;
use std::time::{Duration, Instant};

use pollbench_common::process::{kill_all, signal, Running, Signal};

/// Whether process `pid` is gone: no such process, or a zombie (dead; reparented, it waits for
/// init to reap it).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rfind(')').is_some_and(|end| {
            matches!(stat[end + 1..].trim_start().chars().next(), Some('Z' | 'X'))
        }),
        Err(_) if std::path::Path::new("/proc/self/stat").exists() => true,
        // No /proc: init reaps at once. SIGCONT changes nothing for a running process.
        Err(_) => signal(pid, Signal::SIGCONT).is_err(),
    }
}

#[test]
fn kill_all_kills_the_processes_a_group_child_started() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "sleep 30 </dev/null >/dev/null 2>&1 & echo $!; wait"]);
    let mut child = Running::spawn_group(cmd).unwrap();
    let grandchild: u32 = child
        .stdout_line(Duration::from_secs(5))
        .expect("a pid")
        .trim()
        .parse()
        .expect("a pid");
    assert!(!gone(grandchild));
    kill_all();
    // Both the grandchild and the child end; on a loaded machine that may take a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !gone(grandchild) || child.is_running() {
        if Instant::now() >= deadline {
            let _ = signal(grandchild, Signal::SIGKILL);
            panic!(
                "kill_all left process {grandchild} (started by a group child) or the child {} running",
                child.id()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

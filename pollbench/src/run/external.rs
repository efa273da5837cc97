//! Servers pollbench does not build: a suite's `external:NAME` column runs the command given on
//! `pollbench suite --external NAME=COMMAND` (liburing's example echo server, say, built beside the
//! repository, never by it) in place of bench-server, on this machine over 127.0.0.1, against the
//! same load-gen. It counts nothing for pollbench, so pollbench reads what it can from outside:
//! its CPU time from `/proc/PID/stat` at every whole wall-clock second while the clients run
//! (`cells/ID.external.json`). Its messages in a span are load-gen's (msgs/s x the span).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pollbench_schema::external::{CpuSecond, ExternalServer, SCHEMA};

use crate::place::network::{Process, Site};

/// How a suite names an external column: `external:NAME`.
pub const PREFIX: &str = "external:";

/// What stands for the port in a command.
const PORT: &str = "{port}";

/// How long an external server may take to accept a first connection.
const START: Duration = Duration::from_secs(10);

/// The external servers given on the command line: name -> command words (with `{port}`).
pub type Commands = BTreeMap<String, Vec<String>>;

/// The name of an external column's backend (`external:NAME`), or None for bench-server's.
pub fn name_of(backend: &str) -> Option<&str> {
    backend.strip_prefix(PREFIX)
}

/// One `--external NAME=COMMAND`: the name and the command's words, which must say where the port
/// goes (`{port}`) and start with a program.
pub fn parse(arg: &str) -> Result<(String, Vec<String>), String> {
    let (name, command) = arg.split_once('=').ok_or_else(|| {
        format!("--external {arg:?}: NAME=COMMAND, as liburing='/path/echo-server {PORT}'")
    })?;
    let words: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "--external {arg:?}: the name is letters, digits, '-' and '_' (the suite's external:NAME)"
        ));
    }
    if words.is_empty() || !words.iter().any(|w| w.contains(PORT)) {
        return Err(format!(
            "--external {arg:?}: the command must say where the port goes with {PORT} (the server must listen on 127.0.0.1 at that port)"
        ));
    }
    Ok((name.to_string(), words))
}

/// The command with the port put in.
pub fn command_for(words: &[String], port: u16) -> Vec<String> {
    words
        .iter()
        .map(|w| w.replace(PORT, &port.to_string()))
        .collect()
}

/// A port on 127.0.0.1 free now: the kernel picks one, and it is let go for the server to take.
///
/// Free when asked, not certainly when the server binds it: in between, another process may take
/// it (an outgoing connection's local port comes from the same range). Nothing closes that gap
/// for a program that binds a port it is told (handing it a bound socket would need the program
/// to take one). A server that cannot bind exits, and the cell fails rather than measure another
/// process: it ended before accepting, or, if another listener there accepted first, it ended
/// during the run ([`Running::stop`]). Only a server that keeps running without its port would
/// go unnoticed.
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Wait until the server at `addr` accepts a connection (closed at once), within [`START`]; false
/// when it does not, `still_running` says it ended, or the runner is interrupted.
pub fn wait_until_listening(addr: SocketAddr, mut still_running: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + START;
    let interrupted = crate::run::process::interrupted();
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        if !still_running() || interrupted.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Reads a process's CPU time at every whole wall-clock second on a thread of its own, until
/// [`CpuReader::finish`].
pub struct CpuReader {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<CpuSecond>>,
    pid: u32,
}

impl CpuReader {
    /// Start reading process `pid`'s CPU time.
    pub fn start(pid: u32) -> CpuReader {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut seconds = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let now = unix_now();
                let next = now.floor() + 1.0;
                std::thread::sleep(Duration::from_secs_f64((next - now).max(0.0)));
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let at_unix_s = unix_now();
                match cpu_time(pid) {
                    Some((user, system)) => seconds.push(CpuSecond {
                        at_unix_s,
                        cpu_user_s: user,
                        cpu_system_s: system,
                    }),
                    None => break,
                }
            }
            seconds
        });
        CpuReader { stop, thread, pid }
    }

    /// Stop reading, take a last reading, and make the record of the run.
    pub fn finish(
        self,
        name: &str,
        command: Vec<String>,
        pinned_core: Option<usize>,
    ) -> ExternalServer {
        let last = cpu_time(self.pid);
        self.stop.store(true, Ordering::Relaxed);
        let seconds = self.thread.join().unwrap_or_default();
        ExternalServer {
            schema: SCHEMA.into(),
            name: name.into(),
            command,
            pinned_core,
            seconds,
            cpu_user_s: last.map(|(u, _)| u),
            cpu_system_s: last.map(|(_, s)| s),
        }
    }
}

/// An external server running for one round of a cell, its CPU time being read.
pub struct Running<'a> {
    pub process: Process<'a>,
    pub addr: SocketAddr,
    name: String,
    command: Vec<String>,
    core: Option<usize>,
    reader: CpuReader,
}

impl<'a> Running<'a> {
    /// Start external server `name` (its command `words`) at `site` on a free port of 127.0.0.1,
    /// pinned to `core` if given, and wait until it accepts connections.
    pub fn start(
        site: &Site<'a>,
        name: &str,
        words: &[String],
        core: Option<usize>,
    ) -> Result<Running<'a>, String> {
        let port = free_port().map_err(|e| format!("no free port on 127.0.0.1: {e}"))?;
        let command = command_for(words, port);
        let mut process = site
            .start_pinned(Path::new(&command[0]), &command[1..], core)
            .map_err(|e| format!("cannot start external server {name} ({}): {e}", command[0]))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        if !wait_until_listening(addr, || process.is_running()) {
            process.stop(Duration::from_secs(1));
            let err = process.stderr_text();
            return Err(format!(
                "external server {name} did not accept on {addr} within {START:?}: {}",
                err.trim()
            ));
        }
        let reader = CpuReader::start(process.local_pid());
        Ok(Running {
            process,
            addr,
            name: name.into(),
            command,
            core,
            reader,
        })
    }

    /// Take the last CPU reading, stop the server (SIGTERM, killed after `grace`) and write its
    /// record to `path`. An error when it had ended before it was stopped: its readings stopped
    /// counting where it did.
    pub fn stop(mut self, grace: Duration, path: &Path) -> Result<(), String> {
        let alive = self.process.is_running();
        let record = self.reader.finish(&self.name, self.command, self.core);
        self.process.stop(grace);
        if !alive {
            return Err(format!(
                "external server {} ended during the run",
                self.name
            ));
        }
        pollbench_schema::file::write_json_atomically(path, &record)
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Process `pid`'s CPU time so far, user and system in seconds, every thread (`/proc/PID/stat`,
/// in clock ticks); None where it cannot be read (it ended, or this is not Linux).
pub fn cpu_time(pid: u32) -> Option<(f64, f64)> {
    let text =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    cpu_of_stat(&text, clock_ticks()?)
}

/// utime and stime (fields 14 and 15) of a `/proc/PID/stat` line, in seconds. The command name
/// (field 2) is in parentheses and may hold spaces and parentheses: fields are counted after
/// the last ')'.
fn cpu_of_stat(stat: &str, ticks_per_s: f64) -> Option<(f64, f64)> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) is the 12th and stime (15) the 13th.
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user / ticks_per_s, system / ticks_per_s))
}

fn clock_ticks() -> Option<f64> {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    (ticks > 0).then_some(ticks as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollbench_common::process::Signal;

    #[test]
    fn an_external_is_a_name_and_a_command_with_a_port() {
        let (name, words) = parse("liburing=/opt/echo-server {port}").unwrap();
        assert_eq!(name, "liburing");
        assert_eq!(command_for(&words, 4242), ["/opt/echo-server", "4242"]);
        let (_, words) = parse("x=srv --listen=127.0.0.1:{port} -v").unwrap();
        assert_eq!(
            command_for(&words, 80),
            ["srv", "--listen=127.0.0.1:80", "-v"]
        );
        for bad in [
            "liburing",
            "=srv {port}",
            "a b=srv {port}",
            "x=/opt/srv 8000",
            "x=",
        ] {
            assert!(parse(bad).is_err(), "{bad} was taken");
        }
        assert_eq!(name_of("external:liburing"), Some("liburing"));
        assert_eq!(name_of("epoll"), None);
    }

    #[test]
    fn cpu_time_is_counted_after_the_command_name() {
        // A name with spaces and a ')' of its own; utime 250 and stime 75 ticks.
        let stat = "4242 (echo (x) srv) S 1 4242 4242 0 -1 4194560 120 0 0 0 250 75 0 0 20 0 1 0 \
                    100 1000 10 18446744073709551615";
        assert_eq!(cpu_of_stat(stat, 100.0), Some((2.5, 0.75)));
        assert_eq!(cpu_of_stat("4242 (srv) S 1", 100.0), None);
    }

    /// Whether process `pid` is gone: no such process, or a zombie (reparented, it waits for
    /// init, which is not ours to hurry, to reap it).
    fn gone(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat.rfind(')').is_some_and(|end| {
                matches!(stat[end + 1..].trim_start().chars().next(), Some('Z' | 'X'))
            }),
            Err(_) if Path::new("/proc/self/stat").exists() => true,
            // No /proc: init reaps at once. SIGCONT changes nothing for a running process.
            Err(_) => pollbench_common::process::signal(pid, Signal::SIGCONT).is_err(),
        }
    }

    /// Assert `pid` is gone within 1 s; if it is not, kill it (not to leave it behind) and fail.
    fn assert_gone_soon(pid: u32, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while !gone(pid) {
            if Instant::now() >= deadline {
                let _ = pollbench_common::process::signal(pid, Signal::SIGKILL);
                panic!("{what}: process {pid} it started still runs");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The pid the command's shell says first (`echo $!` after starting one in the background).
    fn said_pid(process: &mut Process) -> u32 {
        let line = process.stdout_line(Duration::from_secs(5)).expect("a pid");
        line.trim().parse().expect("a pid")
    }

    /// An external command that starts the listener in the background and waits (as a script that
    /// runs the real server does): stopping it stops the listener too, which lets its port go.
    #[test]
    fn an_external_server_that_forks_is_stopped_with_its_listener() {
        let perl = std::process::Command::new("perl")
            .args(["-MIO::Socket::INET", "-e1"])
            .output();
        if !perl.is_ok_and(|o| o.status.success()) {
            return pollbench_test_support::skip(
                "a forking external server",
                "no perl with IO::Socket::INET to listen with",
            );
        }
        let listener =
            "perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => \"127.0.0.1\", \
                        LocalPort => $ARGV[0], Listen => 8, ReuseAddr => 1) or die; \
                        close $s->accept while 1' {port}";
        let script = format!("{listener} </dev/null >/dev/null 2>&1 & echo $!; wait");
        let words = ["sh".to_string(), "-c".into(), script];
        let net = crate::place::network::Network::Loopback;
        let mut server = Running::start(&net.server(), "forks", &words, None).expect("started");
        let listener = said_pid(&mut server.process);
        let addr = server.addr;
        let dir = pollbench_test_support::Temp::new("external-forks");
        server
            .stop(Duration::from_millis(500), &dir.0.join("x.external.json"))
            .expect("recorded");
        assert_gone_soon(listener, "a stopped external server");
        assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
    }

    /// An external server's program dropped, not stopped (an early return, a panic's unwinding),
    /// pinned where it can be: what it started goes with it.
    #[test]
    fn a_forking_program_started_pinned_is_killed_with_what_it_started_when_dropped() {
        let core = if cfg!(target_os = "linux") {
            pollbench_common::cores::allowed().first().copied()
        } else {
            None
        };
        let script = "sleep 30 </dev/null >/dev/null 2>&1 & echo $!; wait";
        let net = crate::place::network::Network::Loopback;
        let mut process = net
            .server()
            .start_pinned(Path::new("sh"), &["-c".into(), script.into()], core)
            .expect("started");
        let sleeper = said_pid(&mut process);
        assert!(!gone(sleeper));
        drop(process);
        assert_gone_soon(sleeper, "a dropped external server");
    }

    /// This process's own CPU time, read the external way, grows with work it does.
    #[test]
    fn a_process_cpu_time_is_read_from_proc() {
        if !Path::new("/proc/self/stat").exists() {
            eprintln!("skipped: no /proc here");
            return;
        }
        let pid = std::process::id();
        let before = cpu_time(pid).expect("own stat");
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = cpu_time(pid).expect("own stat");
        assert!(
            after.0 + after.1 > before.0 + before.1,
            "{before:?} -> {after:?}"
        );
    }
}

//! Spawning bench-server and talking to it, for the integration tests. Loopback only; every loop
//! below is bounded in count and time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use pollbench_test_support::{skip, Argv, Spawned, Temp};
use poller::{BackendKind, Support};

pub const BIN: &str = env!("CARGO_BIN_EXE_bench-server");
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Can this test process open `n` more descriptors (beyond the few it already holds)? If not, print
/// a visible skip naming the open-files limit: a test that needs 1,000 connections must not fail
/// with EMFILE on a machine whose limit is 1,024 or less.
pub fn have_descriptors(n: u64, what: &str) -> bool {
    let Some(soft) = pollbench_common::open_files_limit() else {
        return true; // no limit
    };
    let need = n + 64; // stdio, the harness, listeners and files of concurrently running tests
    if soft < need {
        skip(
            what,
            &format!("needs {need} descriptors, open-files limit is {soft} (raise ulimit -n)"),
        );
        return false;
    }
    true
}

/// The poller backends that work here, with their capabilities.
pub fn backends() -> Vec<(BackendKind, poller::Capabilities)> {
    let mut out = Vec::new();
    for kind in BackendKind::ALL {
        match kind.capabilities() {
            Ok(caps) => out.push((kind, caps)),
            Err(e) => skip(&format!("bench-server {kind}"), &e.to_string()),
        }
    }
    out
}

/// Whether `--backend io_uring_completion` can run here; said (skipped) when not.
pub fn completion_available(what: &str) -> bool {
    completion_min_wait(what).is_some()
}

/// Whether `--backend io_uring_completion --batch N --batch-wait D` can run here (Linux 6.12);
/// said (skipped) when not.
pub fn completion_batch_available(what: &str) -> bool {
    let min_wait = completion_min_wait(what);
    if min_wait == Some(false) {
        skip(
            what,
            "this kernel cannot hold a wait out for a batch (Linux 6.12+)",
        );
    }
    min_wait == Some(true)
}

/// Whether a completion ring can be set up here (`None`, said, when not), and whether its waits
/// can hold out for a batch.
#[cfg(target_os = "linux")]
fn completion_min_wait(what: &str) -> Option<bool> {
    let config = poller::completion_ring::RingConfig {
        entries: 8,
        buffers: 8,
        buffer_size: 64,
        fixed_files: 0,
    };
    match poller::completion_ring::CompletionRing::new(&config) {
        Ok(ring) => Some(ring.features().min_wait),
        Err(e) => {
            skip(what, &format!("io_uring completion mode: {e}"));
            None
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn completion_min_wait(what: &str) -> Option<bool> {
    skip(what, "io_uring completion mode: io_uring is Linux's");
    None
}

/// Triggers and accept strategies a backend supports (what bench-server accepts for it).
pub fn combinations(caps: &poller::Capabilities) -> Vec<(&'static str, &'static str)> {
    let mut triggers = vec!["level", "oneshot"];
    if caps.edge.is_supported() {
        triggers.push("edge");
    }
    let mut accepts = vec!["reuseport", "shared", "acceptor"];
    if caps.exclusive != Support::No {
        accepts.push("exclusive");
    }
    triggers
        .iter()
        .flat_map(|t| accepts.iter().map(move |a| (*t, *a)))
        .collect()
}

/// Run bench-server on 127.0.0.1:0 with `args`, expected to refuse them: its output once it
/// exits. Bounded: a server that starts instead of refusing would run until signalled, so it is
/// killed after 5 s and the test fails.
pub fn refusal(args: &[&str]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command
        .args(["--addr", "127.0.0.1:0", "--stats-interval", "0s"])
        .args(args);
    Spawned::new(command)
        .output_or_kill(Duration::from_secs(5))
        .unwrap_or_else(|out| {
            panic!(
                "{args:?} started instead of refusing: stdout {:?}, stderr {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub stats: PathBuf,
    _dir: Temp,
}

impl Server {
    /// Start bench-server on 127.0.0.1:0 with `args` (and `--stats-interval 0s` unless `args` has
    /// one); `ulimit_n` runs it under that open-files limit.
    pub fn start(args: &[&str], ulimit_n: Option<u32>) -> Server {
        let dir = Temp::new("stats");
        let stats = dir.0.join("stats.json");
        let mut cmd = match ulimit_n {
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.args(["--addr", "127.0.0.1:0"]);
        // Summaries off, unless the test asks for them.
        if !args.contains(&"--stats-interval") {
            cmd.args(["--stats-interval", "0s"]);
        }
        cmd.arg("--stats-json")
            .arg(&stats)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn bench-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line {line:?} for {args:?}"))
            .trim()
            .parse()
            .unwrap();
        Server {
            child,
            addr,
            stats,
            _dir: dir,
        }
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        s
    }

    /// SIGTERM; returns the exit status, how long it took, and the stats JSON (checked to read as
    /// the schema's `ServerStats`).
    pub fn stop(mut self) -> (ExitStatus, Duration, serde_json::Value) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let start = Instant::now();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                panic!("bench-server did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let took = start.elapsed();
        let json = std::fs::read_to_string(&self.stats).unwrap_or_else(|e| {
            panic!(
                "stats JSON {} not written on exit ({e}); the server exited with {status}",
                self.stats.display()
            )
        });
        // Every document the server writes reads through the schema's own struct.
        if let Err(e) =
            pollbench_schema::file::read_json::<pollbench_schema::server::ServerStats>(&self.stats)
        {
            panic!("the stats JSON does not read as pollbench_schema::server::ServerStats: {e}");
        }
        (
            status,
            took,
            serde_json::from_str(&json).expect("valid JSON"),
        )
    }

    /// User+system CPU time of the server so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .unwrap()
            .unwrap_or(100) as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    /// Resident memory of the server, in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send `payload` and read the echo concurrently (the server applies backpressure, so writing all
/// before reading would deadlock on large payloads); true if every byte came back in order.
pub fn echo(stream: &TcpStream, payload: &[u8]) -> bool {
    let mut back = vec![0u8; payload.len()];
    std::thread::scope(|s| {
        s.spawn(|| (&*stream).write_all(payload).expect("write"));
        (&*stream).read_exact(&mut back).is_ok()
    }) && back == payload
}

/// Deterministic pseudo-random bytes.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen()).collect()
}

/// Half-close: the client shuts its write side; the server echoes everything, then closes.
pub fn half_close(stream: &TcpStream, data: &[u8]) -> std::io::Result<Vec<u8>> {
    (&*stream).write_all(data)?;
    stream.shutdown(Shutdown::Write)?;
    let mut back = Vec::new();
    (&*stream).read_to_end(&mut back)?;
    Ok(back)
}

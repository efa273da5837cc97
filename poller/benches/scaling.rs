//! The classic readiness scaling experiment (libevent's `bench.c`, Kegel's Poller_bench): N watched
//! sources, A of them active. One dispatch round = signal A random sources, wait until all A are
//! reported, drain them. select and poll pay for N on every call; epoll, kqueue and io_uring should
//! not. Also: the cost of register+deregister and of modify with N sources registered.
//!
//! Sources are eventfds on Linux (one descriptor each, so 10,000 fit under a 20,000 open-files limit,
//! and signalling one costs a single write), pipes elsewhere. Every backend runs level-triggered so
//! the numbers compare like with like.
//!
//! `POLLER_BENCH_QUICK=1` shortens every measurement (a smoke run in about a minute). After criterion
//! finishes, a Markdown table of the means is written to `target/pollbench/scaling.md`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};

// The open-files limit, read as the tests read it.
#[path = "../tests/common/mod.rs"]
mod common;
use poller::{Backend, BackendKind, Events, Interest, Mode, Token, WithBackend};
use rand::{rngs::SmallRng, seq::index::sample, SeedableRng};

const SIZES: [usize; 5] = [10, 100, 500, 1_000, 10_000];
const ACTIVE: [usize; 2] = [1, 100];
/// Precomputed active sets, cycled through, so no random numbers are drawn in the timed loop.
const SETS: usize = 512;
/// Descriptors kept free beyond the sources: stdio, the backend's own, criterion's files.
const HEADROOM: u64 = 32;

fn quick() -> bool {
    std::env::var_os("POLLER_BENCH_QUICK").is_some_and(|v| v != "0")
}

/// Something that can be made readable and drained again.
struct Source {
    read: OwnedFd,
    #[cfg(not(target_os = "linux"))]
    write: OwnedFd,
}

impl Source {
    /// Descriptors one source takes.
    const FDS: usize = if cfg!(target_os = "linux") { 1 } else { 2 };

    #[cfg(target_os = "linux")]
    fn new() -> nix::Result<Source> {
        use nix::sys::eventfd::{EfdFlags, EventFd};
        let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        Ok(Source { read: efd.into() })
    }

    #[cfg(not(target_os = "linux"))]
    fn new() -> nix::Result<Source> {
        let (read, write) = nix::unistd::pipe()?;
        for fd in [&read, &write] {
            nix::fcntl::fcntl(
                fd.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )?;
        }
        nix::fcntl::fcntl(
            read.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        Ok(Source { read, write })
    }

    fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    fn signal(&self) {
        #[cfg(target_os = "linux")]
        nix::unistd::write(&self.read, &1u64.to_ne_bytes()).unwrap();
        #[cfg(not(target_os = "linux"))]
        nix::unistd::write(&self.write, &[1u8]).unwrap();
    }

    fn drain(&self) {
        let mut buf = [0u8; 8];
        let _ = nix::unistd::read(self.read.as_raw_fd(), &mut buf);
    }
}

/// N sources registered with backend B; `None` (after saying why on stderr) if they do not fit: the
/// open-files limit, or select's FD_SETSIZE.
fn setup<B: Backend>(n: usize, what: &str) -> Option<(B, Vec<Source>)> {
    let needed = (n * Source::FDS) as u64;
    let limit = common::open_files_limit();
    if needed + HEADROOM > limit {
        eprintln!(
            "skipped: {} {what} N={n}: needs {needed} descriptors, open-files limit is {limit} \
             (raise `ulimit -n`)",
            B::KIND
        );
        return None;
    }
    let mut p = B::new().ok()?;
    let mut sources = Vec::with_capacity(n);
    for _ in 0..n {
        match Source::new() {
            Ok(s) => sources.push(s),
            Err(e) => {
                eprintln!("skipped: {} {what} N={n}: a source: {e}", B::KIND);
                return None;
            }
        }
    }
    for (i, s) in sources.iter().enumerate() {
        if let Err(e) = p.register(s.fd(), Token(i), Interest::READABLE, Mode::Level) {
            eprintln!("skipped: {} {what} N={n}: {e}", B::KIND);
            return None;
        }
    }
    Some((p, sources))
}

fn active_sets(n: usize, a: usize) -> Vec<Vec<usize>> {
    let mut rng = SmallRng::seed_from_u64(0x5ca1ab1e);
    (0..SETS)
        .map(|_| sample(&mut rng, n, a).into_vec())
        .collect()
}

struct Dispatch<'c> {
    c: &'c mut Criterion,
}

impl WithBackend for Dispatch<'_> {
    type Output = ();

    fn run<B: Backend>(self) {
        for a in ACTIVE {
            let mut group = self.c.benchmark_group(format!("dispatch_active_{a}"));
            group.throughput(Throughput::Elements(a as u64));
            for n in SIZES.into_iter().filter(|&n| n >= a) {
                let Some((mut p, sources)) = setup::<B>(n, &format!("dispatch_active_{a}")) else {
                    continue;
                };
                let sets = active_sets(n, a);
                let mut events = Events::with_capacity(256);
                let mut round = 0;
                group.bench_function(BenchmarkId::new(B::KIND.name(), n), |bench| {
                    bench.iter(|| {
                        let set = &sets[round % SETS];
                        round += 1;
                        for &i in set {
                            sources[i].signal();
                        }
                        let mut seen = 0;
                        while seen < a {
                            p.wait(&mut events, Some(Duration::from_secs(5))).unwrap();
                            assert!(!events.is_empty(), "signalled sources are reported");
                            for e in &events {
                                sources[e.token().0].drain();
                            }
                            seen += events.len();
                        }
                    })
                });
            }
            group.finish();
        }
    }
}

struct Registration<'c> {
    c: &'c mut Criterion,
}

impl WithBackend for Registration<'_> {
    type Output = ();

    fn run<B: Backend>(self) {
        const N: usize = 1_000;
        let Some((mut p, _sources)) = setup::<B>(N, "registration") else {
            return;
        };
        let extra = Source::new().expect("one more source");
        let mut events = Events::with_capacity(64);
        let register_extra = |p: &mut B| {
            p.register(
                extra.fd(),
                Token(usize::MAX - 1),
                Interest::READABLE,
                Mode::Level,
            )
            .unwrap()
        };
        let mut group = self.c.benchmark_group("register_deregister");
        group.bench_function(B::KIND.name(), |bench| {
            bench.iter(|| {
                register_extra(&mut p);
                p.deregister(extra.fd()).unwrap();
            })
        });
        group.finish();
        register_extra(&mut p);
        let mut group = self.c.benchmark_group("modify");
        let mut k = 0usize;
        group.bench_function(B::KIND.name(), |bench| {
            bench.iter(|| {
                k += 1;
                let interest = if k.is_multiple_of(2) {
                    Interest::READABLE
                } else {
                    Interest::BOTH
                };
                p.modify(extra.fd(), Token(usize::MAX - 1), interest, Mode::Level)
                    .unwrap();
                // Work a backend defers (io_uring submissions) is paid here, amortized over 64.
                if k.is_multiple_of(64) {
                    p.wait(&mut events, Some(Duration::ZERO)).unwrap();
                }
            })
        });
        group.finish();
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    c = if quick() {
        c.sample_size(10)
            .warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300))
    } else {
        c.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
    };
    let backends = BackendKind::available();
    for kind in BackendKind::ALL
        .into_iter()
        .filter(|k| !backends.contains(k))
    {
        eprintln!("skipped: {kind}: {}", kind.probe().unwrap_err());
    }
    for &kind in &backends {
        kind.with(Dispatch { c: &mut c }).unwrap();
        kind.with(Registration { c: &mut c }).unwrap();
    }
    c.final_summary();
    match write_report(&backends) {
        Ok(path) => eprintln!("report: {}", path.display()),
        Err(e) => eprintln!("report not written: {e}"),
    }
}

// ----- the Markdown report, from criterion's saved estimates -----

fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // The bench runs as target/<profile>/deps/scaling-<hash>.
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors().nth(3).expect("target dir").to_path_buf()
}

/// Mean time in nanoseconds of one criterion benchmark, if it ran.
fn mean_ns(group: &str, id: &str) -> Option<f64> {
    let path = target_dir()
        .join("criterion")
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn human(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn write_report(backends: &[BackendKind]) -> std::io::Result<PathBuf> {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Poller scaling{}\n",
        if quick() { " (quick mode)" } else { "" }
    );
    for a in ACTIVE {
        let _ =
            writeln!(
            md,
            "## One dispatch round, {a} active of N (mean time per round)\n\n| N | {} |\n|---|{}",
            backends.iter().map(|b| b.name()).collect::<Vec<_>>().join(" | "),
            "---|".repeat(backends.len())
        );
        for n in SIZES.into_iter().filter(|&n| n >= a) {
            let cells: Vec<String> = backends
                .iter()
                .map(|b| {
                    mean_ns(
                        &format!("dispatch_active_{a}"),
                        &format!("{}/{n}", b.name()),
                    )
                    .map_or("–".into(), human)
                })
                .collect();
            let _ = writeln!(md, "| {n} | {} |", cells.join(" | "));
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "## Registration cost, 1,000 others registered (mean per call)\n"
    );
    let _ = writeln!(
        md,
        "| backend | register + deregister | modify (amortized) |\n|---|---|---|"
    );
    for b in backends {
        let cell = |g: &str| mean_ns(g, b.name()).map_or("–".into(), human);
        let _ = writeln!(
            md,
            "| {b} | {} | {} |",
            cell("register_deregister"),
            cell("modify")
        );
    }
    let dir = target_dir().join("pollbench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("scaling.md");
    let tmp = dir.join(".scaling.md.tmp");
    std::fs::File::create(&tmp)?.write_all(md.as_bytes())?;
    std::fs::rename(&tmp, &path)?;
    print!("{md}");
    Ok(path)
}

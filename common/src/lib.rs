//! What the programs share: human units on the command line ("64B", "16KiB", "10k", "30s", CPU
//! lists) and for people ("12.3k", "1.25 ms"), command-line errors as one line, CPU time, the
//! CPU pinning plans ([`cores`]), and child processes drained while they run ([`process`]).

/// What every binary's `--version` prints after its name: the workspace version and the git commit
/// it was built from (`unknown` outside a checkout). The suite runner compares it across hosts.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("POLLBENCH_COMMIT"),
    ")"
);

pub mod cores;
pub mod process;

use std::time::Duration;

/// A count with an optional k/M suffix ("10k" = 10,000).
pub fn parse_count(s: &str) -> Result<usize, String> {
    let v = parse_size::Config::new()
        .with_decimal()
        .parse_size(s)
        .map_err(|e| format!("'{s}' is not a count ({e}); examples: 64, 10k, 1M"))?;
    if v == 0 {
        return Err("must be at least 1".into());
    }
    usize::try_from(v).map_err(|_| format!("'{s}' is too large"))
}

/// A byte size ("64B", "16KiB", "1MiB"; a bare number is bytes).
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let v = parse_size::Config::new()
        .with_binary()
        .parse_size(s)
        .map_err(|e| format!("'{s}' is not a size ({e}); examples: 64B, 16KiB, 1MiB"))?;
    if v == 0 {
        return Err("must be at least 1 byte".into());
    }
    usize::try_from(v).map_err(|_| format!("'{s}' is too large"))
}

/// The longest duration any option takes: 30 days. Deadlines are computed as `Instant + duration`,
/// which panics on overflow; no benchmark phase or timeout needs longer.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// A duration ("1s", "250ms", "2m"), at most [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration ({e}); examples: 1s, 250ms"))?;
    if d > MAX_DURATION {
        return Err(format!("'{s}' is too long (at most 30 days)"));
    }
    Ok(d)
}

/// A percentage ("10%" or "10"), returned as a fraction (0.10). Must be above 0.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("'{s}' is not a percentage; examples: 10%, 2.5%"))?;
    if !(v > 0.0 && v.is_finite()) {
        return Err(format!("'{s}': must be above 0%"));
    }
    Ok(v / 100.0)
}

/// The largest CPU id a CPU list may name: Linux's own ceiling (NR_CPUS is at most 8192).
pub const MAX_CPU_ID: usize = 8191;

/// A CPU list as taskset and /sys write it: "1", "0-3", "0,2,4-5". Ids in the order given, each at
/// most [`MAX_CPU_ID`] (a range is expanded, so "0-4000000000" must be refused, not allocated).
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("'{s}' is not a CPU list; examples: 1, 2-3, 0,2,4-7");
    let mut ids = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.parse::<usize>(), hi.parse::<usize>()),
            None => (part.parse::<usize>(), part.parse::<usize>()),
        };
        let (Ok(lo), Ok(hi)) = (lo, hi) else {
            return Err(bad());
        };
        if lo > hi {
            return Err(bad());
        }
        if hi > MAX_CPU_ID {
            return Err(format!(
                "'{s}': CPU {hi} does not exist (ids go up to {MAX_CPU_ID})"
            ));
        }
        ids.extend(lo..=hi);
    }
    Ok(ids)
}

/// A count or rate for people: 950, 12.3k, 4.56M, 1.20G; below 1, three significant figures
/// (0.054).
pub fn human_count(v: f64) -> String {
    if v.abs() < 1.0 {
        human_figure(v)
    } else if v >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The soft open-files limit (`RLIMIT_NOFILE`) of this process, which its children inherit;
/// `None` when unlimited or unknown.
pub fn open_files_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
    let (soft, _hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft == RLIM_INFINITY {
        return None;
    }
    // rlim_t is u64 on Linux and macOS but i64 on FreeBSD: the same line for both.
    #[allow(clippy::useless_conversion)]
    let soft = u64::try_from(soft).ok();
    soft
}

/// User + system CPU time this process has used, all threads (getrusage: exact to the
/// microsecond the kernel accounts, no clock-tick guess).
pub fn process_cpu_time() -> Duration {
    rusage_time(nix::sys::resource::UsageWho::RUSAGE_SELF)
}

/// What [`process_usage`] returns: this process's own resource use so far, all threads (those
/// that ended included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessUsage {
    /// CPU time in user mode (`ru_utime`).
    pub user: Duration,
    /// CPU time in the kernel on the process's behalf (`ru_stime`).
    pub system: Duration,
    /// Context switches because a thread blocked, e.g. waiting for I/O (`ru_nvcsw`).
    pub voluntary_switches: u64,
    /// Context switches because the scheduler preempted a thread (`ru_nivcsw`).
    pub involuntary_switches: u64,
}

/// This process's CPU time, user and system apart, and its context switches: one
/// getrusage(RUSAGE_SELF) ([`process_cpu_time`] is its `user + system`).
pub fn process_usage() -> ProcessUsage {
    // getrusage fails only for an invalid `who`, which RUSAGE_SELF is not.
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .expect("getrusage");
    let time = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    ProcessUsage {
        user: time(usage.user_time()),
        system: time(usage.system_time()),
        voluntary_switches: usage.voluntary_context_switches().max(0) as u64,
        involuntary_switches: usage.involuntary_context_switches().max(0) as u64,
    }
}

/// User + system CPU time the calling thread has used (Linux and Android; elsewhere the process's,
/// since there is no per-thread getrusage).
pub fn thread_cpu_time() -> Duration {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let who = nix::sys::resource::UsageWho::RUSAGE_THREAD;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let who = nix::sys::resource::UsageWho::RUSAGE_SELF;
    rusage_time(who)
}

fn rusage_time(who: nix::sys::resource::UsageWho) -> Duration {
    // getrusage fails only for an invalid `who`, which these callers never pass.
    let usage = nix::sys::resource::getrusage(who).expect("getrusage");
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    micros(usage.user_time()) + micros(usage.system_time())
}

/// A latency in microseconds for people: 950 µs, 1.25 ms, 2.44 s; below 1 µs, three
/// significant figures (0.5 µs).
pub fn human_us(us: f64) -> String {
    if us.abs() < 1.0 {
        return format!("{} µs", human_figure(us));
    }
    format_us(us, 2, " ")
}

/// A figure for people, with the digits its size needs: three significant figures below 100
/// (0.0541, 0.913, 0.00312, 0.100 for 0.1003, 9.50, 74.3), without the trailing zeros of a value
/// they write exactly (0.054, 0.5, 2); whole from 100 on (642, 1250).
pub fn human_figure(v: f64) -> String {
    if v.abs() >= 100.0 {
        return format!("{v:.0}");
    }
    let text = significant(v, 3);
    let exact = text.trim_end_matches('0').trim_end_matches('.');
    if text.contains('.') && exact.parse::<f64>() == Ok(v) {
        exact.to_string()
    } else {
        text
    }
}

/// `v` to `digits` significant figures (whole numbers keep every digit): 0.054 to 3 is "0.0540",
/// 0.91349 is "0.913", 1.0041 to 4 is "1.004", 0.99962 to 3 is "1.00"; 0 is "0".
pub fn significant(v: f64, digits: usize) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor() as i64;
    let decimals = (digits as i64 - 1 - magnitude).max(0) as usize;
    let text = format!("{v:.decimals$}");
    // Rounding up to the next power of ten (0.99962 to 1.000) leaves one digit too many.
    let rounded_up = text
        .parse::<f64>()
        .is_ok_and(|r| r.abs() >= 10f64.powi(magnitude as i32 + 1));
    if rounded_up && decimals > 0 {
        format!("{v:.prec$}", prec = decimals - 1)
    } else {
        text
    }
}

/// A duration in microseconds, in the largest of µs, ms and s that keeps it at 1 or more: whole
/// microseconds, `decimals` digits after the point in ms and s, `sep` between number and unit
/// (`format_us(2_440_000.0, 0, "")` is the axis label `2s`).
pub fn format_us(us: f64, decimals: usize, sep: &str) -> String {
    if us >= 1e6 {
        format!("{:.decimals$}{sep}s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.decimals$}{sep}ms", us / 1e3)
    } else {
        format!("{us:.0}{sep}µs")
    }
}

/// Parse the command line; `--help`/`--version` print and exit 0, any other error prints one line
/// (`NAME: reason (see --help)`) and exits 2.
pub fn parse_args_or_exit<P: clap::Parser>(name: &str) -> P {
    match P::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            std::process::exit(0);
        }
        Err(e) => {
            let rendered = e.render().to_string();
            let line = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "{name}: {} (see --help)",
                line.trim_start_matches("error: ")
            );
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_counts_this_threads_work_and_not_a_sleeping_one() {
        let (p0, t0) = (process_cpu_time(), thread_cpu_time());
        // Busy for a while on this thread; another thread only sleeps.
        let sleeper = std::thread::spawn(|| {
            let t = thread_cpu_time();
            std::thread::sleep(Duration::from_millis(150));
            thread_cpu_time() - t
        });
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(150) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let slept = sleeper.join().unwrap();
        let (p1, t1) = (process_cpu_time(), thread_cpu_time());
        assert!(t1 - t0 >= Duration::from_millis(50), "{:?}", t1 - t0);
        assert!(p1 - p0 >= t1 - t0);
        if cfg!(target_os = "linux") {
            assert!(
                slept < Duration::from_millis(20),
                "a sleeping thread: {slept:?}"
            );
        }
    }

    /// Below 1 a figure keeps three significant figures: 0.054 is never "0.1".
    #[test]
    fn figures_below_1_keep_three_significant_figures() {
        assert_eq!(human_figure(0.054), "0.054");
        assert_eq!(human_figure(0.05412), "0.0541");
        assert_eq!(human_figure(0.91349), "0.913");
        assert_eq!(human_figure(0.00312), "0.00312");
        assert_eq!(human_figure(0.0), "0");
        assert_eq!(human_figure(0.9), "0.9");
        assert_eq!(human_figure(0.1003), "0.100");
        assert_eq!(human_figure(0.05400001), "0.0540");
        assert_eq!(human_figure(0.99962), "1.00");
        assert_eq!(human_figure(9.46), "9.46");
        assert_eq!(human_figure(9.5), "9.5");
        assert_eq!(human_figure(74.31), "74.3");
        assert_eq!(human_figure(642.4), "642");
        assert_eq!(significant(1.0041, 4), "1.004");
        assert_eq!(significant(0.99962, 4), "0.9996");
        assert_eq!(significant(0.99962, 3), "1.00");
        assert_eq!(significant(9.996, 3), "10.0");
        assert_eq!(significant(-0.0543, 2), "-0.054");
        assert_eq!(significant(0.054, 3), "0.0540");
        assert_eq!(significant(1234.5, 2), "1234");
    }

    #[test]
    fn units_parse_as_documented() {
        assert_eq!(parse_count("10k"), Ok(10_000));
        assert_eq!(parse_count("64"), Ok(64));
        assert_eq!(parse_bytes("64B"), Ok(64));
        assert_eq!(parse_bytes("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert!(parse_count("0").is_err());
        assert!(parse_count("lots").is_err());
        assert!(parse_bytes("12XB").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_cpu_list("1"), Ok(vec![1]));
        assert_eq!(parse_cpu_list("0,2,4-6"), Ok(vec![0, 2, 4, 5, 6]));
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("one").is_err());
        assert!(parse_cpu_list("").is_err());
        assert_eq!(parse_cpu_list("8191").map(|v| v.len()), Ok(1));
        assert!(parse_cpu_list("0-4000000000")
            .unwrap_err()
            .contains("does not exist"));
        assert_eq!(parse_duration("30days"), Ok(MAX_DURATION));
        assert!(parse_duration("100000000y")
            .unwrap_err()
            .contains("too long"));
        assert_eq!(parse_percent("10%"), Ok(0.10));
        assert_eq!(parse_percent("2.5"), Ok(0.025));
        assert!(parse_percent("0%").is_err());
        assert!(parse_percent("-5%").is_err());
        assert!(parse_percent("ten").is_err());
        assert_eq!(human_count(950.0), "950");
        assert_eq!(human_count(12_345.0), "12.3k");
        assert_eq!(human_count(4_560_000.0), "4.56M");
        assert_eq!(human_count(1.2e9), "1.20G");
        assert_eq!(human_count(0.054), "0.054");
        assert_eq!(human_us(950.0), "950 µs");
        assert_eq!(human_us(0.5), "0.5 µs");
        assert_eq!(human_us(0.0), "0 µs");
        assert_eq!(human_us(1_250.0), "1.25 ms");
        assert_eq!(human_us(2_440_000.0), "2.44 s");
        assert_eq!(format_us(100.0, 0, ""), "100µs");
        assert_eq!(format_us(10_000.0, 0, ""), "10ms");
        assert_eq!(format_us(2_000_000.0, 0, ""), "2s");
    }
}

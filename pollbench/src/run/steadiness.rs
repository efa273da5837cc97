//! The suite's `steadiness` probe: before the rounds, fixed work on every core this process may
//! use, all at once, counted in back-to-back windows as long as a cell. Two kinds of work, in
//! alternating slices of each window: arithmetic in registers (the core alone) and a chain of
//! dependent loads over a working set larger than the core's own cache (the caches a server's
//! sockets and buffers live in, which other tenants of the machine share). Each kind's chunks per
//! second of thread CPU time is the machine's speed at it in that window, with nothing of the
//! benchmark in it; `analysis::steadiness` turns the windows into the spread a cell's CPU figures
//! cannot beat.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pollbench_schema::results::{CoreSpeed, Steadiness};

/// Rounds of a xorshift in one arithmetic chunk: tens of microseconds on a current core.
const ARITHMETIC_CHUNK: u64 = 1 << 15;

/// Dependent loads in one cache chunk: tens to hundreds of microseconds, by where they hit.
const CACHE_CHUNK: usize = 1 << 12;

/// How long each kind of work runs before the other takes over, within a window: short enough
/// that both see the same moments of the window, long enough that reading the clock costs nothing.
const SLICE: Duration = Duration::from_millis(10);

/// The cache chase's working set where the system does not say how large the core's own cache
/// is: twice a common 1 MiB.
const DEFAULT_CACHE_BYTES: u64 = 2 << 20;

/// A cache line: one load per line, so every load is a different line.
const LINE: usize = 64;

/// One arithmetic chunk: rounds of a xorshift, each depending on the one before, so neither the
/// compiler nor the CPU can skip or overlap them; no memory traffic.
fn arithmetic(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..ARITHMETIC_CHUNK {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

/// A random cycle through every cache line of a buffer: each load's address is the value the one
/// before it read, so the loads cannot overlap and the prefetcher cannot guess them, and each one
/// costs what the cache level holding the line costs.
struct Chase {
    next: Vec<u32>,
    at: u32,
}

impl Chase {
    fn new(bytes: u64) -> Chase {
        let per_line = LINE / std::mem::size_of::<u32>();
        let lines = (bytes as usize / LINE).max(2);
        // A shuffled order of the lines (Fisher-Yates on a fixed xorshift: the same cycle every
        // run), then each line points at the next in that order.
        let mut order: Vec<usize> = (0..lines).collect();
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for i in (1..lines).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut next = vec![0u32; lines * per_line];
        for (i, &line) in order.iter().enumerate() {
            next[line * per_line] = (order[(i + 1) % lines] * per_line) as u32;
        }
        Chase { next, at: 0 }
    }

    /// One cache chunk.
    fn chunk(&mut self) {
        let mut at = self.at;
        for _ in 0..CACHE_CHUNK {
            at = self.next[at as usize];
        }
        self.at = black_box(at);
    }
}

/// The working set of the cache chase on `core`: twice the largest data cache below its last
/// level (on most machines the L2, its own or its SMT pair's), so the chase spills into the
/// last-level cache the core shares with others; [`DEFAULT_CACHE_BYTES`] where /sys (Linux) does
/// not say.
fn cache_bytes(core: Option<usize>) -> u64 {
    let caches: Vec<(u32, u64)> = (0..8)
        .filter_map(|index| {
            let dir = format!(
                "/sys/devices/system/cpu/cpu{}/cache/index{index}",
                core.unwrap_or(0)
            );
            let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).ok();
            if read("type")?.trim() == "Instruction" {
                return None;
            }
            let level: u32 = read("level")?.trim().parse().ok()?;
            let kib: u64 = read("size")?.trim().strip_suffix('K')?.parse().ok()?;
            Some((level, kib * 1024))
        })
        .collect();
    let last = caches.iter().map(|c| c.0).max();
    caches
        .iter()
        .filter(|c| Some(c.0) < last)
        .map(|c| c.1)
        .max()
        .map_or(DEFAULT_CACHE_BYTES, |b| 2 * b)
}

/// What a window's work is timed against: the thread's own CPU time where there is a per-thread
/// clock, so time the hypervisor or another task took from the thread does not count as slowness
/// (a cell's CPU per message does not count it either); the wall clock elsewhere.
#[cfg(any(target_os = "linux", target_os = "android"))]
const CLOCK: &str = "thread CPU time";
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const CLOCK: &str = "wall time";

fn clock_now(start: Instant) -> Duration {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let _ = start;
        pollbench_common::thread_cpu_time()
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        start.elapsed()
    }
}

/// Run the probe for `windows` windows of `window` on each of `cores` at once (one thread pinned to
/// each; an empty list: one unpinned thread). None when `stop` is set before it ends (the runner's
/// interrupt flag): a part of the windows is not the measurement asked for.
pub fn measure(
    cores: &[usize],
    window: Duration,
    windows: usize,
    stop: &AtomicBool,
) -> Option<Steadiness> {
    let targets: Vec<Option<usize>> = if cores.is_empty() {
        vec![None]
    } else {
        cores.iter().copied().map(Some).collect()
    };
    let cache = cache_bytes(targets[0]);
    let start = Instant::now();
    let speeds = std::thread::scope(|scope| {
        let threads: Vec<_> = targets
            .iter()
            .map(|&core| scope.spawn(move || one_core(core, cache, start, window, windows, stop)))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a probe thread does not panic"))
            .collect()
    });
    (!stop.load(Ordering::Relaxed)).then(|| Steadiness {
        window_s: window.as_secs_f64(),
        clock: CLOCK.into(),
        arithmetic_chunk: ARITHMETIC_CHUNK,
        cache_bytes: cache,
        cache_chunk: CACHE_CHUNK as u64,
        cores: speeds,
    })
}

fn one_core(
    core: Option<usize>,
    cache: u64,
    start: Instant,
    window: Duration,
    windows: usize,
    stop: &AtomicBool,
) -> CoreSpeed {
    let pinned = core.filter(|&id| pollbench_common::cores::pin_current(id));
    let mut chase = Chase::new(cache);
    // Once through the buffer before the first window: its pages are touched and in cache.
    for _ in 0..(cache as usize / LINE).div_ceil(CACHE_CHUNK) {
        chase.chunk();
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut speed = CoreSpeed {
        core: pinned,
        arithmetic_per_s: Vec::with_capacity(windows),
        cache_per_s: Vec::with_capacity(windows),
    };
    // Windows are laid on the probe's common start, so every core's k-th window is the same time
    // (the first a little shorter: the buffer was made in it).
    for w in 1..=windows {
        let ends = start + window * w as u32;
        // Chunks and clock time of each kind in this window: [arithmetic, cache].
        let mut done = [0u64; 2];
        let mut spent = [Duration::ZERO; 2];
        let mut kind = 0;
        while Instant::now() < ends && !stop.load(Ordering::Relaxed) {
            let began = clock_now(start);
            let slice_ends = (Instant::now() + SLICE).min(ends);
            while Instant::now() < slice_ends {
                if kind == 0 {
                    seed = black_box(arithmetic(black_box(seed)));
                } else {
                    chase.chunk();
                }
                done[kind] += 1;
            }
            spent[kind] += clock_now(start).saturating_sub(began);
            kind = 1 - kind;
        }
        let rate = |k: usize| {
            let s = spent[k].as_secs_f64();
            if s > 0.0 {
                done[k] as f64 / s
            } else {
                0.0
            }
        };
        speed.arithmetic_per_s.push(rate(0));
        speed.cache_per_s.push(rate(1));
    }
    speed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every core gets its windows, each with both kinds of work done at a plausible rate (a chunk
    /// is more than a nanosecond and less than 100 ms on anything that runs the tests), on the
    /// core asked for.
    #[test]
    fn every_core_is_measured_at_both_kinds_of_work_in_every_window() {
        let cores = pollbench_common::cores::allowed();
        let s = measure(
            &cores,
            Duration::from_millis(60),
            3,
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(s.cores.len(), cores.len().max(1));
        assert_eq!(s.window_s, 0.06);
        assert!(s.cache_bytes >= 64 << 10, "{}", s.cache_bytes);
        for speed in &s.cores {
            for rates in [&speed.arithmetic_per_s, &speed.cache_per_s] {
                assert_eq!(rates.len(), 3, "{s:?}");
                for &rate in rates {
                    assert!((10.0..1e9).contains(&rate), "{rate} chunks/s: {s:?}");
                }
            }
        }
        // Pinned where the system lets it (Linux does), each thread on its own core.
        if cfg!(target_os = "linux") {
            let measured: Vec<Option<usize>> = s.cores.iter().map(|c| c.core).collect();
            let asked: Vec<Option<usize>> = cores.iter().copied().map(Some).collect();
            assert_eq!(measured, asked);
        }
    }

    /// The chase visits every line of its buffer once per cycle: a single cycle, not several
    /// small loops that would fit in a smaller cache than the one meant.
    #[test]
    fn the_chase_is_one_cycle_through_every_line() {
        let mut chase = Chase::new(64 << 10);
        let lines = (64 << 10) / LINE;
        let mut seen = std::collections::HashSet::new();
        let mut at = 0u32;
        for _ in 0..lines {
            assert!(seen.insert(at), "line {at} visited twice within a cycle");
            at = chase.next[at as usize];
        }
        assert_eq!(at, 0, "back at the start after every line");
        chase.chunk();
    }

    /// The runner's interrupt ends the probe at once, with nothing recorded.
    #[test]
    fn an_interrupt_ends_it_with_nothing() {
        let began = Instant::now();
        let stop = AtomicBool::new(true);
        assert_eq!(measure(&[], Duration::from_secs(5), 3, &stop), None);
        assert!(began.elapsed() < Duration::from_secs(1));
    }
}

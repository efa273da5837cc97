//! The suite's `steadiness` probe: before the rounds, the same fixed arithmetic on every core this
//! process may use, all at once, counted in back-to-back windows as long as a cell. Each window's
//! chunks per second of thread CPU time is the machine's speed in that window, with nothing of the
//! benchmark in it; `analysis::steadiness` turns the windows into the spread a cell's CPU figures
//! cannot beat.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pollbench_schema::results::{CoreSpeed, Steadiness};

/// Units of arithmetic in one chunk: tens of microseconds on a current core, so a window's end is
/// overshot by no more than that.
pub const CHUNK: u64 = 1 << 15;

/// One chunk: CHUNK rounds of a xorshift, each depending on the one before, so neither the
/// compiler nor the CPU can skip or overlap them; no memory traffic, so it measures the core
/// alone, not caches shared with other tenants.
fn chunk(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..CHUNK {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
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
    let speeds = std::thread::scope(|scope| {
        let threads: Vec<_> = targets
            .iter()
            .map(|&core| scope.spawn(move || one_core(core, window, windows, stop)))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a probe thread does not panic"))
            .collect()
    });
    (!stop.load(Ordering::Relaxed)).then(|| Steadiness {
        window_s: window.as_secs_f64(),
        chunk: CHUNK,
        clock: CLOCK.into(),
        cores: speeds,
    })
}

fn one_core(core: Option<usize>, window: Duration, windows: usize, stop: &AtomicBool) -> CoreSpeed {
    let pinned = core.filter(|&id| pollbench_common::cores::pin_current(id));
    let start = Instant::now();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut chunks_per_s = Vec::with_capacity(windows);
    for w in 1..=windows {
        let ends = start + window * w as u32;
        let clock_began = clock_now(start);
        let mut done = 0u64;
        while Instant::now() < ends && !stop.load(Ordering::Relaxed) {
            seed = black_box(chunk(black_box(seed)));
            done += 1;
        }
        let spent = clock_now(start).saturating_sub(clock_began).as_secs_f64();
        chunks_per_s.push(if spent > 0.0 {
            done as f64 / spent
        } else {
            0.0
        });
    }
    CoreSpeed {
        core: pinned,
        chunks_per_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every core gets its windows, each with work done at a plausible rate (a chunk is more than
    /// a nanosecond and less than 100 ms on anything that runs the tests), on the core asked for.
    #[test]
    fn every_core_is_measured_in_every_window() {
        let cores = pollbench_common::cores::allowed();
        let s = measure(
            &cores,
            Duration::from_millis(50),
            3,
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(s.cores.len(), cores.len().max(1));
        assert_eq!(s.window_s, 0.05);
        assert_eq!(s.chunk, CHUNK);
        for speed in &s.cores {
            assert_eq!(speed.chunks_per_s.len(), 3, "{s:?}");
            for &rate in &speed.chunks_per_s {
                assert!((10.0..1e9).contains(&rate), "{rate} chunks/s");
            }
        }
        // Pinned where the system lets it (Linux does), each thread on its own core.
        if cfg!(target_os = "linux") {
            let measured: Vec<Option<usize>> = s.cores.iter().map(|c| c.core).collect();
            let asked: Vec<Option<usize>> = cores.iter().copied().map(Some).collect();
            assert_eq!(measured, asked);
        }
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

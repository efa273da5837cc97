//! What a run shows while it runs: each second's rate and live connections, on a progress bar on a
//! terminal and as plain lines otherwise, read from counters the load threads keep.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::RunArgs;

/// One counter per worker of its connections still alive, each starting at the worker's share, so
/// the watcher's sum is the number of live connections from the first moment, before any worker
/// has started (a counter that started at a sentinel made the sum overflow, or wrap to 0 and end
/// the run as if every connection were gone).
pub fn alive_counters(shares: &[Vec<(usize, TcpStream)>]) -> Vec<Arc<AtomicU64>> {
    shares
        .iter()
        .map(|share| Arc::new(AtomicU64::new(share.len() as u64)))
        .collect()
}

/// Clears the progress bar however `watch` returns.
struct FinishBar(Option<indicatif::ProgressBar>);
impl Drop for FinishBar {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Wait out the run, printing progress each second; the reason if it ended early.
pub fn watch(
    args: &RunArgs,
    start: Instant,
    stop: &AtomicBool,
    progress: &[Arc<AtomicU64>],
    alive: &[Arc<AtomicU64>],
    window_cpu: &mut Option<Duration>,
) -> Option<String> {
    let window = start + args.warmup;
    let end = window + args.duration;
    let mut last = (Instant::now(), 0u64);
    let mut next_print = Instant::now() + Duration::from_secs(1);
    // A progress bar with the time left on a terminal; plain lines (for logs) otherwise.
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new((args.warmup + args.duration).as_millis() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {eta} left  {msg}",
            )
            .expect("valid template"),
        );
        bar
    });
    let _finish = FinishBar(bar.clone());
    loop {
        // Wake at the window's opening to read the process's CPU time there.
        let tick = Duration::from_millis(20);
        std::thread::sleep(match window_cpu {
            None => tick.min(window.saturating_duration_since(Instant::now())),
            Some(_) => tick,
        });
        let now = Instant::now();
        if window_cpu.is_none() && now >= window {
            *window_cpu = Some(pollbench_common::process_cpu_time());
        }
        if stop.load(Ordering::Relaxed) {
            return Some("interrupted".into());
        }
        let alive_now: u64 = alive.iter().map(|a| a.load(Ordering::Relaxed)).sum();
        if alive_now == 0 {
            return Some("every connection is gone (did the server die?)".into());
        }
        if now >= end {
            return None;
        }
        if now >= next_print {
            let done: u64 = progress.iter().map(|p| p.load(Ordering::Relaxed)).sum();
            let rate = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            let phase = if now < start + args.warmup {
                "warm-up"
            } else {
                "measuring"
            };
            match &bar {
                Some(bar) => {
                    bar.set_position(now.duration_since(start).as_millis() as u64);
                    bar.set_message(format!(
                        "{phase}: {rate:.0} msgs/s, {alive_now} connections alive"
                    ));
                }
                None => eprintln!(
                    "[{:>5.1}s] {phase}: {:.0} msgs/s, {} connections alive",
                    now.duration_since(start).as_secs_f64(),
                    rate,
                    alive_now
                ),
            }
            last = (now, done);
            next_print += Duration::from_secs(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alive_counters_sum_to_the_connections_before_any_worker_runs() {
        // The watcher sums these from the moment the workers are spawned. Starting each at a
        // sentinel (u64::MAX) overflowed that sum in debug builds and wrapped it in release: one
        // worker at 1 and one not yet started summed to 0, "every connection is gone".
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conn = |i| (i, TcpStream::connect(addr).unwrap());
        let shares = vec![vec![conn(0), conn(2)], vec![conn(1)], Vec::new()];
        let alive = alive_counters(&shares);
        let loads: Vec<u64> = alive.iter().map(|a| a.load(Ordering::Relaxed)).collect();
        assert_eq!(loads, vec![2, 1, 0]);
        let total = alive
            .iter()
            .try_fold(0u64, |sum, a| sum.checked_add(a.load(Ordering::Relaxed)));
        assert_eq!(total, Some(3));
    }
}

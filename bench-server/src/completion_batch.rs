//! `--batch N --batch-wait D`, adaptive: a completion loop's wait holds out for a batch only while
//! the load brings batches. A batch wait pays off when completions come fast enough to gather
//! within D (fewer enters for the same work); under a moderate load it only adds up to D of latency
//! to each message and a timer wake-up to each wait. So the loop measures how fast completions
//! come, over spans of at least 10 D, and holds out for batches while they come at least N/2 per
//! D.
//!
//! The rate, not the size of what a wait brought: a batched wait makes the waits longer and so
//! their hauls bigger, whatever the load (at a fixed 60k msgs/s here, batched waits brought over
//! 16 completions each once they ran 200 µs apart: results/20261202T064239Z-vm-completion-batch,
//! which judged by haul). Over 10 D, not D: at 12 per D on average, one span of D in eight brings
//! more than 16 by chance, and each such span cost a batch wait (p50 +93 to +118 µs at 60k msgs/s:
//! results/20261202T064748Z-vm-completion-batch, which measured over single spans). And half a
//! batch: on a machine where the client is the bottleneck, a
//! closed loop at 1,000 connections brings about 19 completions per 100 µs and a fixed 60k msgs/s
//! 12 (two per message; results/20261202T063703Z-vm-completion-batch, which batched only on full
//! batches): a full batch of 32 tells them apart by neither, half of one by both.

use std::time::{Duration, Instant};

/// How many batch waits a span of measurement lasts at least.
const SPAN: u32 = 10;

/// Whether the next wait is batched, from how fast completions came.
#[derive(Debug)]
pub struct Batching {
    /// `--batch` (1: never batched) and `--batch-wait`.
    batch: usize,
    wait: Duration,
    batched: bool,
    /// Completions the waits brought since `since`.
    since: Instant,
    seen: usize,
}

impl Batching {
    pub fn new(batch: usize, wait: Duration, now: Instant) -> Batching {
        Batching {
            batch,
            wait,
            batched: false,
            since: now,
            seen: 0,
        }
    }

    /// The next wait's batch and how long it may hold out for it, or None: wait for one.
    pub fn next(&self) -> Option<(usize, Duration)> {
        self.batched.then_some((self.batch, self.wait))
    }

    /// A wait brought `n` completions; it returned at `now`.
    pub fn waited(&mut self, n: usize, now: Instant) {
        if self.batch <= 1 {
            return;
        }
        self.seen += n;
        let span = now.saturating_duration_since(self.since);
        if span < self.wait * SPAN {
            return;
        }
        // At least half a batch per `wait`, over this span.
        self.batched =
            2 * self.seen as u128 * self.wait.as_nanos() >= self.batch as u128 * span.as_nanos();
        self.since = now;
        self.seen = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_micros(100);

    /// `waits` of `per_wait` completions each, `apart` apart; whether each next wait is batched.
    fn play(
        b: &mut Batching,
        now: &mut Instant,
        waits: usize,
        per_wait: usize,
        apart: Duration,
    ) -> Vec<bool> {
        (0..waits)
            .map(|_| {
                *now += apart;
                b.waited(per_wait, *now);
                b.next().is_some()
            })
            .collect()
    }

    /// A moderate load (12 completions per 100 µs, under half a batch of 32 per 100 µs) never
    /// batches; a heavier one (20 per 100 µs) batches from the end of the first full span (1 ms)
    /// on and stays batched while the rate holds; a lower rate ends it at the end of its span.
    #[test]
    fn batches_only_while_completions_come_at_half_a_batch_per_wait() {
        let mut now = Instant::now();
        let mut b = Batching::new(32, WAIT, now);
        assert_eq!(b.next(), None, "starts unbatched");
        assert!(play(&mut b, &mut now, 100, 12, WAIT).iter().all(|x| !x));
        let heavier = play(&mut b, &mut now, 10, 20, WAIT);
        assert_eq!(heavier[..9], [false; 9]);
        assert!(heavier[9]);
        assert_eq!(b.next(), Some((32, WAIT)));
        assert!(play(&mut b, &mut now, 30, 16, WAIT).iter().all(|x| *x));
        let lower = play(&mut b, &mut now, 10, 15, WAIT);
        assert_eq!(
            (lower[8], lower[9]),
            (true, false),
            "under half, at the span's end"
        );
    }

    /// A burst in one wait's time does not start batching when the span around it is slow: 40
    /// completions in one 100 µs, 10 in each of the nine after.
    #[test]
    fn a_short_burst_is_not_a_high_rate() {
        let mut now = Instant::now();
        let mut b = Batching::new(32, WAIT, now);
        assert_eq!(play(&mut b, &mut now, 1, 40, WAIT), [false]);
        assert!(play(&mut b, &mut now, 9, 10, WAIT).iter().all(|x| !x));
    }

    /// Batched waits that run 200 µs apart bring 24 completions each at 12 per 100 µs: a big
    /// haul, a low rate. They end the batching.
    #[test]
    fn a_big_haul_from_a_long_wait_is_not_a_high_rate() {
        let mut now = Instant::now();
        let mut b = Batching::new(32, WAIT, now);
        assert_eq!(play(&mut b, &mut now, 1, 200, WAIT * SPAN), [true]);
        assert!(!play(&mut b, &mut now, 5, 24, 2 * WAIT)[4]);
    }

    /// An idle spell (one wait that blocked for a second) does not count as a fast one.
    #[test]
    fn a_long_wait_is_not_a_burst() {
        let mut now = Instant::now();
        let mut b = Batching::new(32, WAIT, now);
        assert_eq!(
            play(&mut b, &mut now, 1, 40, Duration::from_secs(1)),
            [false]
        );
    }

    /// Without --batch nothing is ever batched.
    #[test]
    fn a_batch_of_one_never_batches() {
        let mut now = Instant::now();
        let mut b = Batching::new(1, Duration::ZERO, now);
        assert!(play(&mut b, &mut now, 10, 1000, Duration::from_micros(1))
            .iter()
            .all(|x| !x));
    }
}

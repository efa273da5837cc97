//! What a run's steadiness probe (meta.json `steadiness`) says: how much the machine's own speed
//! moved from one cell-long window to the next, and so the smallest difference the suite's rounds
//! can judge on it.
//!
//! The step from the probe to a verdict's power assumes that the per-round ratio of two columns
//! spreads like the ratio of two adjacent windows of the probe, normally and independently from
//! round to round. That is a lower bound on a real pair's spread (the cells of a pair are seldom
//! adjacent, and the server, the kernel and the client add their own), so the difference it names
//! is the least the machine allows, not one the suite is sure to see.

use pollbench_schema::results::Steadiness;

use crate::analysis::stats;

/// A verdict that a real difference gets this often is one a reader can expect to reproduce.
pub const POWER: f64 = 0.9;

/// The most rounds [`Reading::rounds_for`] looks at.
const MOST_ROUNDS: usize = 1000;

/// One core's windows of one kind of work, as spreads.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreReading {
    pub core: Option<usize>,
    /// The windows' standard deviation over their mean.
    pub spread: f64,
    /// The standard deviation of the ratio of each window to the one before.
    pub adjacent: f64,
}

/// One kind of work over every core.
#[derive(Debug, Clone, PartialEq)]
pub struct KindReading {
    pub cores: Vec<CoreReading>,
    /// Each core's windows over its own mean, pooled, as a standard deviation.
    pub spread: f64,
    /// The standard deviation of every adjacent-window ratio of every core.
    pub adjacent: f64,
}

impl KindReading {
    /// None unless every core has at least 3 windows (2 adjacent ratios), all of them positive.
    fn of<'a>(cores: impl Iterator<Item = (Option<usize>, &'a [f64])> + Clone) -> Option<Self> {
        let windows = cores.clone().map(|(_, w)| w.len()).min()?;
        if windows < 3 || cores.clone().flat_map(|(_, w)| w).any(|&w| w <= 0.0) {
            return None;
        }
        let mut relative = Vec::new();
        let mut ratios = Vec::new();
        let cores = cores
            .map(|(core, w)| {
                let mean = mean(w);
                let own: Vec<f64> = w.iter().map(|x| x / mean).collect();
                let adjacent: Vec<f64> = w.windows(2).map(|p| p[1] / p[0]).collect();
                let reading = CoreReading {
                    core,
                    spread: sd(&own),
                    adjacent: sd(&adjacent),
                };
                relative.extend(own);
                ratios.extend(adjacent);
                reading
            })
            .collect();
        Some(KindReading {
            cores,
            spread: sd(&relative),
            adjacent: sd(&ratios),
        })
    }
}

/// The probe, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub window_s: f64,
    pub windows: usize,
    pub clock: String,
    pub cache_bytes: u64,
    /// Arithmetic in registers: the cores alone.
    pub arithmetic: KindReading,
    /// Dependent loads through the shared cache.
    pub cache: KindReading,
}

impl Reading {
    /// The probe's spreads; None unless every core has at least 3 windows of each kind.
    pub fn of(s: &Steadiness) -> Option<Reading> {
        let arithmetic = s
            .cores
            .iter()
            .map(|c| (c.core, c.arithmetic_per_s.as_slice()));
        let cache = s.cores.iter().map(|c| (c.core, c.cache_per_s.as_slice()));
        Some(Reading {
            window_s: s.window_s,
            windows: s.cores.iter().map(|c| c.arithmetic_per_s.len()).min()?,
            clock: s.clock.clone(),
            cache_bytes: s.cache_bytes,
            arithmetic: KindReading::of(arithmetic)?,
            cache: KindReading::of(cache)?,
        })
    }

    /// How much the machine moved between adjacent windows: the larger of the two kinds' (a
    /// server's work is some of each).
    pub fn adjacent(&self) -> f64 {
        self.arithmetic.adjacent.max(self.cache.adjacent)
    }

    /// The smallest difference (as a fraction: 0.05 for 5%) that `rounds` rounds judge in
    /// [`POWER`] of runs, if per-round ratios spread like adjacent windows ([`Reading::adjacent`]);
    /// None where that many rounds never give a verdict.
    pub fn smallest_judged(&self, rounds: usize) -> Option<f64> {
        let share = stats::side_share_needed(rounds, POWER)?;
        Some(stats::normal_quantile(share) * self.adjacent())
    }

    /// The fewest rounds whose [`Reading::smallest_judged`] is `difference` or less; None beyond
    /// a thousand.
    pub fn rounds_for(&self, difference: f64) -> Option<usize> {
        (1..=MOST_ROUNDS).find(|&n| self.smallest_judged(n).is_some_and(|d| d <= difference))
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Sample standard deviation (n - 1); 0 for fewer than two values.
fn sd(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollbench_schema::results::CoreSpeed;

    /// A probe whose cores did `arithmetic` windows of arithmetic, and steady cache work.
    fn probe(arithmetic: &[&[f64]]) -> Steadiness {
        with_cache(arithmetic, &vec![&[7.0; 8][..]; arithmetic.len()])
    }

    fn with_cache(arithmetic: &[&[f64]], cache: &[&[f64]]) -> Steadiness {
        Steadiness {
            window_s: 4.0,
            clock: "thread CPU time".into(),
            arithmetic_chunk: 1,
            cache_bytes: 2 << 20,
            cache_chunk: 1,
            cores: arithmetic
                .iter()
                .zip(cache)
                .enumerate()
                .map(|(i, (a, c))| CoreSpeed {
                    core: Some(i),
                    arithmetic_per_s: a.to_vec(),
                    cache_per_s: c[..a.len()].to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_steady_machine_reads_no_spread_and_resolves_anything() {
        let r = Reading::of(&probe(&[&[100.0; 5], &[50.0; 5]])).unwrap();
        assert_eq!((r.arithmetic.spread, r.arithmetic.adjacent), (0.0, 0.0));
        assert_eq!(
            (r.cache.spread, r.cache.adjacent, r.adjacent()),
            (0.0, 0.0, 0.0)
        );
        assert_eq!(r.smallest_judged(6), Some(0.0));
        assert_eq!(r.rounds_for(0.01), Some(6));
    }

    /// Windows alternating 0.9 and 1.1 of their mean: spread 0.1 x sqrt(n/(n-1)); adjacent ratios
    /// 1.1/0.9 and 0.9/1.1 alternate, and their sd is known.
    #[test]
    fn spreads_are_the_windows_own() {
        let w = [90.0, 110.0, 90.0, 110.0];
        let r = Reading::of(&probe(&[&w])).unwrap();
        let a = &r.arithmetic;
        assert!(
            (a.spread - 0.1 * (4.0f64 / 3.0).sqrt()).abs() < 1e-12,
            "{r:?}"
        );
        let ratios = [110.0 / 90.0, 90.0 / 110.0, 110.0 / 90.0];
        assert!((a.adjacent - sd(&ratios)).abs() < 1e-12);
        assert_eq!(a.cores[0].core, Some(0));
        assert_eq!(r.adjacent(), a.adjacent, "the unsteadier kind is the floor");
        // Each core is taken relative to its own mean: a core twice as fast adds no spread.
        let both = Reading::of(&probe(&[&w, &[180.0, 220.0, 180.0, 220.0]])).unwrap();
        assert!((both.arithmetic.cores[1].spread - a.spread).abs() < 1e-12);
        // Unsteady cache work and steady arithmetic: the cache's is the floor.
        let cache = Reading::of(&with_cache(&[&[100.0; 4]], &[&w])).unwrap();
        assert_eq!(cache.arithmetic.adjacent, 0.0);
        assert!((cache.adjacent() - sd(&ratios)).abs() < 1e-12);
    }

    /// With 6 rounds a call needs all six on the right side: 9 runs of 10 at 0.9^(1/6) per round,
    /// 2.11 standard deviations. More rounds resolve less, and the fewest rounds for a difference
    /// are the first that reach it.
    #[test]
    fn the_smallest_judged_difference_shrinks_with_rounds() {
        let r = Reading::of(&probe(&[&[95.0, 100.0, 105.0, 100.0, 95.0]])).unwrap();
        let six = r.smallest_judged(6).unwrap();
        assert!(
            (six / r.adjacent() - 2.11).abs() < 0.01,
            "{}",
            six / r.adjacent()
        );
        assert_eq!(r.smallest_judged(5), None);
        let twenty = r.smallest_judged(20).unwrap();
        assert!(twenty < six);
        let n = r.rounds_for(twenty).unwrap();
        assert!(n <= 20 && r.smallest_judged(n).unwrap() <= twenty);
        assert!(r.smallest_judged(n - 1).is_none_or(|d| d > twenty));
    }

    #[test]
    fn too_few_windows_say_nothing() {
        assert_eq!(Reading::of(&probe(&[&[100.0, 101.0]])), None);
        assert_eq!(Reading::of(&probe(&[])), None);
        assert_eq!(Reading::of(&probe(&[&[100.0, 0.0, 100.0]])), None);
    }
}

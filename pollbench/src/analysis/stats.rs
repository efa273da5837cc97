//! The statistics behind a report's uncertainty: a distribution-free interval for a median (order
//! statistics, from the binomial distribution of how many values fall below it), and a verdict on
//! two columns measured in the same rounds, from the interval of their per-round ratios.
//!
//! Why order statistics: a handful of rounds on a noisy machine is not normally distributed, and
//! the median's interval from order statistics assumes only that the rounds are independent draws
//! of the same cell. With n rounds, (x(k), x(n+1-k)) covers the true median with probability
//! 1 - 2·P(Binomial(n, 1/2) < k); k is the largest that keeps that at 95% or more.

/// The confidence a report's intervals aim for.
pub const CONFIDENCE: f64 = 0.95;

/// A median and an interval around it, with the confidence the interval actually has (below 95%
/// when there are too few values for a 95% interval: fewer than 6).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub median: f64,
    pub lo: f64,
    pub hi: f64,
    pub confidence: f64,
}

/// The median of `values` and its order-statistics interval; None for no values.
pub fn median_interval(values: &[f64]) -> Option<Interval> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    let (k, confidence) = order_statistics(n);
    Some(Interval {
        median,
        lo: sorted[k - 1],
        hi: sorted[n - k],
        confidence,
    })
}

/// The ranks of the median's interval over `n` values (n >= 1): k, for the k-th lowest and the
/// k-th highest value, and the confidence that interval has. k is the largest whose interval
/// reaches [`CONFIDENCE`]; k = 1 (the extremes) when none does, with the confidence it has.
pub fn order_statistics(n: usize) -> (usize, f64) {
    let k = (1..=n.div_ceil(2))
        .rev()
        .find(|&k| coverage(n, k) >= CONFIDENCE)
        .unwrap_or(1);
    (k, coverage(n, k))
}

/// What the interval of a median over `n` rounds is, in words: "the lowest and the highest of the
/// 6 rounds, which cover the median with 96.9% confidence".
pub fn interval_in_words(n: usize) -> String {
    let (k, confidence) = order_statistics(n.max(1));
    let ranks = if k == 1 {
        format!("the lowest and the highest of the {n} rounds")
    } else {
        format!(
            "the {} lowest and the {} highest of the {n} rounds",
            ordinal(k),
            ordinal(k)
        )
    };
    let below = if confidence < CONFIDENCE {
        format!(
            ", below the {:.0}% a verdict needs (6 rounds are the fewest that reach it)",
            100.0 * CONFIDENCE
        )
    } else {
        String::new()
    };
    format!(
        "{ranks}, which cover the median with {:.1}% confidence{below}",
        100.0 * confidence
    )
}

/// "2nd", "3rd", "11th".
fn ordinal(k: usize) -> String {
    let suffix = match (k % 10, k % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{k}{suffix}")
}

/// The chance that [`paired`] calls a clear difference between two columns that do not differ
/// (their per-round ratios as likely above 1 as below): its interval of the ratio, of confidence
/// `confidence`, then misses the true ratio 1. A verdict is called only at [`CONFIDENCE`], so an
/// interval below it never calls one. With 6 rounds the interval is the extremes, and a call
/// needs all six ratios on one side of 1: 2/64 = 3.1%.
pub fn false_call_rate(confidence: f64) -> f64 {
    if confidence >= CONFIDENCE {
        1.0 - confidence
    } else {
        0.0
    }
}

/// The probability that (x(k), x(n+1-k)) of n independent draws covers their median:
/// 1 - 2·P(Binomial(n, 1/2) <= k - 1).
fn coverage(n: usize, k: usize) -> f64 {
    let below: f64 = (0..k).map(|i| binomial(n, i)).sum::<f64>() / 2f64.powi(n as i32);
    (1.0 - 2.0 * below).max(0.0)
}

/// n choose i, as a float (n is a number of rounds: small).
fn binomial(n: usize, i: usize) -> f64 {
    (0..i).fold(1.0, |acc, j| acc * (n - j) as f64 / (j + 1) as f64)
}

/// The chance that [`paired`] over `n` rounds calls a difference in its true direction when each
/// round's ratio falls on that side of 1 with probability `p`, rounds independent: the interval
/// (x(k), x(n+1-k)) leaves 1 out on that side when at least n+1-k of the ratios are there. 0 where
/// `n` rounds give no verdict at all.
pub fn chance_of_a_call(n: usize, p: f64) -> f64 {
    match rounds_a_call_needs(n) {
        Some(need) => at_least(n, need, p),
        None => 0.0,
    }
}

/// How many of `n` rounds must fall on one side of 1 for [`paired`] to call a difference: n+1-k
/// for its interval (x(k), x(n+1-k)); None where `n` rounds give no verdict.
fn rounds_a_call_needs(n: usize) -> Option<usize> {
    let (k, confidence) = order_statistics(n.max(1));
    (confidence >= CONFIDENCE).then_some(n + 1 - k)
}

/// P(Binomial(n, p) >= need). Each term from the one before, in logarithms: (1-p)^n alone
/// underflows to 0 for p near 1 at a few hundred rounds, and every term after it would too.
fn at_least(n: usize, need: usize, p: f64) -> f64 {
    let p = p.clamp(0.0, 1.0);
    if p == 1.0 {
        return 1.0;
    }
    // ln P(X = i) for i = 0, 1, ..., n: n ln(1-p), then + ln((n-i)/(i+1)) + ln(p/(1-p)) each step.
    let odds = (p / (1.0 - p)).ln();
    let mut log_term = n as f64 * (1.0 - p).ln();
    let mut tail = 0.0;
    for i in 0..=n {
        if i >= need {
            tail += log_term.exp();
        }
        log_term += ((n - i) as f64 / (i + 1) as f64).ln() + odds;
    }
    tail.min(1.0)
}

/// The smallest share of rounds on the right side of 1 that gets a call from [`paired`] over `n`
/// rounds with probability `power`; None where `n` rounds never give a verdict.
pub fn side_share_needed(n: usize, power: f64) -> Option<f64> {
    let need = rounds_a_call_needs(n)?;
    let (mut lo, mut hi) = (0.5, 1.0);
    for _ in 0..50 {
        let mid = (lo + hi) / 2.0;
        if at_least(n, need, mid) >= power {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// The fewest rounds (up to `most`) over which [`paired`] calls a difference with probability
/// `power` or more, when each round falls on its side of 1 with probability `p`.
pub fn rounds_to_reach(p: f64, power: f64, most: usize) -> Option<usize> {
    (1..=most).find(|&n| chance_of_a_call(n, p) >= power)
}

/// What two columns' paired rounds say: summary.json's own type.
pub use pollbench_schema::summary::Judgement;

/// Compare `a` and `b` (higher is better, e.g. msgs/s) measured in the same rounds, pairing round i
/// of one with round i of the other: the interval of the per-round ratios a/b, and the verdict.
/// None when they are not paired (different numbers of rounds) or a value is not positive.
pub fn paired(a: &[f64], b: &[f64]) -> Option<(Interval, Judgement)> {
    if a.len() != b.len() || a.iter().chain(b).any(|v| *v <= 0.0 || !v.is_finite()) {
        return None;
    }
    let ratios: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
    let interval = median_interval(&ratios)?;
    let verdict = if interval.confidence < CONFIDENCE {
        Judgement::NoClearDifference
    } else if interval.lo > 1.0 {
        Judgement::ABetter
    } else if interval.hi < 1.0 {
        Judgement::BBetter
    } else {
        Judgement::NoClearDifference
    };
    Some((interval, verdict))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_statistic_intervals_have_the_textbook_ranks_and_coverage() {
        // n = 6: the extremes, 96.9%; n = 10: 2nd and 9th, 97.9%; n = 20: 6th and 15th, 95.9%.
        let ranks = |n: usize| {
            let values: Vec<f64> = (1..=n).map(|v| v as f64).collect();
            let i = median_interval(&values).unwrap();
            (
                i.lo as usize,
                i.hi as usize,
                (i.confidence * 1000.0).round() / 1000.0,
            )
        };
        assert_eq!(ranks(6), (1, 6, 0.969));
        assert_eq!(ranks(10), (2, 9, 0.979));
        assert_eq!(ranks(20), (6, 15, 0.959));
        // Five values cannot give 95%: the extremes, with the 93.8% they have.
        assert_eq!(ranks(5), (1, 5, 0.938));
        let i = median_interval(&[3.0, 1.0, 2.0, 4.0]).unwrap();
        assert_eq!(i.median, 2.5);
        assert!(median_interval(&[]).is_none());
    }

    /// A call needs every one of 6 rounds on one side (the extremes are the interval), and 15 of
    /// 20 (the 6th and 15th); the share of rounds that gives a call 9 times in 10 follows.
    #[test]
    fn the_chance_of_a_call_counts_the_rounds_its_interval_needs() {
        assert!((chance_of_a_call(6, 0.9) - 0.9f64.powi(6)).abs() < 1e-12);
        assert_eq!(chance_of_a_call(5, 1.0), 0.0, "5 rounds never reach 95%");
        let twenty: f64 = (15..=20)
            .map(|i| binomial(20, i) * 0.8f64.powi(i as i32) * 0.2f64.powi(20 - i as i32))
            .sum();
        assert!((chance_of_a_call(20, 0.8) - twenty).abs() < 1e-12);
        let p6 = side_share_needed(6, 0.9).unwrap();
        assert!((p6 - 0.9f64.powf(1.0 / 6.0)).abs() < 1e-9, "{p6}");
        assert!(side_share_needed(20, 0.9).unwrap() < p6);
        assert_eq!(side_share_needed(4, 0.9), None);
    }

    /// Far into a tail and near p = 1, where (1-p)^n alone underflows: the sums still add up.
    #[test]
    fn binomial_tails_hold_at_hundreds_of_rounds() {
        assert!((at_least(200, 115, 0.99) - 1.0).abs() < 1e-12);
        assert!(at_least(200, 199, 0.99) > 0.39 && at_least(200, 199, 0.99) < 0.41);
        assert!((at_least(200, 0, 0.3) - 1.0).abs() < 1e-9);
        assert!(at_least(200, 150, 0.5) < 1e-12);
        assert_eq!(at_least(10, 3, 0.0), 0.0);
        // Against the direct sum where it does not underflow.
        let direct: f64 = (4..=10)
            .map(|i| binomial(10, i) * 0.3f64.powi(i as i32) * 0.7f64.powi(10 - i as i32))
            .sum();
        assert!((at_least(10, 4, 0.3) - direct).abs() < 1e-12);
    }

    #[test]
    fn the_rounds_to_reach_a_power_are_the_fewest_that_do() {
        // Every round on its side: 6 rounds, the fewest that give a verdict.
        assert_eq!(rounds_to_reach(1.0, 0.9, 100), Some(6));
        let n = rounds_to_reach(0.9, 0.9, 100).unwrap();
        assert!(chance_of_a_call(n, 0.9) >= 0.9);
        assert!((6..n).all(|m| chance_of_a_call(m, 0.9) < 0.9), "{n}");
        assert_eq!(
            rounds_to_reach(0.5, 0.9, 100),
            None,
            "a coin never gets there"
        );
    }

    /// The false-call rate is what the procedure does under no difference: with 6 rounds, every
    /// one of the 64 equally likely sign patterns of the ratios about 1 enumerated, the two where
    /// all six fall on one side are called.
    #[test]
    fn the_false_call_rate_is_the_share_of_sign_patterns_paired_calls() {
        for n in [5usize, 6, 7, 10] {
            let mut called = 0;
            for pattern in 0..1u32 << n {
                let a: Vec<f64> = (0..n)
                    .map(|i| if pattern >> i & 1 == 1 { 1.1 } else { 0.9 })
                    .collect();
                let b = vec![1.0; n];
                if paired(&a, &b).unwrap().1 != Judgement::NoClearDifference {
                    called += 1;
                }
            }
            let (_, confidence) = order_statistics(n);
            let rate = false_call_rate(confidence);
            assert!(
                (rate - called as f64 / (1u32 << n) as f64).abs() < 1e-12,
                "{n} rounds: {rate} against {called} of {}",
                1u32 << n
            );
        }
        assert_eq!(false_call_rate(order_statistics(6).1), 2.0 / 64.0);
        assert_eq!(false_call_rate(order_statistics(5).1), 0.0);
        assert_eq!(
            interval_in_words(6),
            "the lowest and the highest of the 6 rounds, which cover the median with 96.9% \
             confidence"
        );
        assert_eq!(
            interval_in_words(10),
            "the 2nd lowest and the 2nd highest of the 10 rounds, which cover the median with \
             97.9% confidence"
        );
        assert!(interval_in_words(5).contains("93.8% confidence, below the 95%"));
    }

    #[test]
    fn a_planted_difference_is_found_and_identical_data_is_not() {
        // Noisy rounds (±15%, the same slow phases hitting both columns), b 30% faster.
        let noise = [1.00, 0.86, 1.12, 0.95, 1.15, 0.90, 1.05, 0.88];
        let a: Vec<f64> = noise.iter().map(|n| 100_000.0 * n).collect();
        let b: Vec<f64> = noise
            .iter()
            .enumerate()
            .map(|(i, n)| 130_000.0 * n * if i % 2 == 0 { 1.04 } else { 0.97 })
            .collect();
        let (ratio, verdict) = paired(&a, &b).unwrap();
        assert_eq!(verdict, Judgement::BBetter, "{ratio:?}");
        assert!(
            ratio.hi < 1.0 && ratio.median > 0.7 && ratio.median < 0.8,
            "{ratio:?}"
        );
        assert_eq!(paired(&b, &a).unwrap().1, Judgement::ABetter);
        // The same column against itself, and two columns that alternate: no clear difference.
        assert_eq!(paired(&a, &a).unwrap().1, Judgement::NoClearDifference);
        let alternating: Vec<f64> = a
            .iter()
            .enumerate()
            .map(|(i, v)| v * if i % 2 == 0 { 1.05 } else { 0.95 })
            .collect();
        assert_eq!(
            paired(&a, &alternating).unwrap().1,
            Judgement::NoClearDifference
        );
        // Too few rounds for 95%: never a verdict, however large the difference.
        assert_eq!(
            paired(&[2.0, 2.0, 2.0], &[1.0, 1.0, 1.0]).unwrap().1,
            Judgement::NoClearDifference
        );
        // Unpaired or non-positive data is not judged.
        assert!(paired(&[1.0, 2.0], &[1.0]).is_none());
        assert!(paired(&[1.0, 0.0], &[1.0, 1.0]).is_none());
    }
}

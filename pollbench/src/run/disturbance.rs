//! What the machine did besides the benchmark: the kernel's own counters read before and after a
//! stretch of the run (a round, the whole suite), so a report can say whether a slow round was the
//! machine's doing. Linux only (/proc); elsewhere nothing is recorded.

use std::time::Instant;

use pollbench_schema::results::Disturbance;

/// The counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    at: Instant,
    /// Stolen time over all CPUs, in clock ticks.
    steal_ticks: u64,
    context_switches: u64,
    load_avg: f64,
}

impl Sample {
    /// The counters now; None where /proc is not there (or not as Linux writes it).
    pub fn now() -> Option<Sample> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
        parse(&stat, &loadavg, Instant::now())
    }

    /// What happened from this sample to `later`.
    pub fn until(&self, later: &Sample) -> Disturbance {
        Disturbance {
            wall_s: later.at.saturating_duration_since(self.at).as_secs_f64(),
            steal_s: later.steal_ticks.saturating_sub(self.steal_ticks) as f64 / clock_ticks(),
            context_switches: later.context_switches.saturating_sub(self.context_switches),
            load_avg_start: self.load_avg,
            load_avg_end: later.load_avg,
        }
    }
}

/// A sample from the texts of /proc/stat (the `cpu` line's eighth value is steal; `ctxt` the
/// context switches since boot) and /proc/loadavg (its first value).
fn parse(stat: &str, loadavg: &str, at: Instant) -> Option<Sample> {
    let mut steal_ticks = None;
    let mut context_switches = None;
    for line in stat.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("cpu") => steal_ticks = words.nth(7).and_then(|w| w.parse().ok()),
            Some("ctxt") => context_switches = words.next().and_then(|w| w.parse().ok()),
            _ => {}
        }
    }
    Some(Sample {
        at,
        steal_ticks: steal_ticks?,
        context_switches: context_switches?,
        load_avg: loadavg.split_whitespace().next()?.parse().ok()?,
    })
}

/// Clock ticks per second, the unit of /proc/stat's times (USER_HZ; 100 on every Linux port but
/// asked, not assumed).
fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&t| t > 0)
        .map_or(100.0, |t| t as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 0 50 1000 3 0 2 40 0 0\n\
                        cpu0 50 0 25 500 1 0 1 20 0 0\n\
                        intr 12345 0 0\n\
                        ctxt 5000\n\
                        btime 1700000000\n";

    #[test]
    fn steal_and_context_switches_come_from_the_cpu_and_ctxt_lines() {
        let at = Instant::now();
        let before = parse(STAT, "0.50 0.40 0.30 1/100 42\n", at).unwrap();
        assert_eq!((before.steal_ticks, before.context_switches), (40, 5000));
        let later_stat = STAT
            .replace(
                "cpu  100 0 50 1000 3 0 2 40",
                "cpu  200 0 90 1800 3 0 2 140",
            )
            .replace("ctxt 5000", "ctxt 9000");
        let after = parse(
            &later_stat,
            "1.25 0.60 0.30 2/100 43\n",
            at + std::time::Duration::from_secs(2),
        )
        .unwrap();
        let d = before.until(&after);
        assert_eq!(d.wall_s, 2.0);
        assert!((d.steal_s - 100.0 / clock_ticks()).abs() < 1e-9, "{d:?}");
        assert_eq!(d.context_switches, 4000);
        assert_eq!((d.load_avg_start, d.load_avg_end), (0.5, 1.25));
    }

    #[test]
    fn a_stat_without_steal_or_ctxt_is_no_sample() {
        let at = Instant::now();
        assert!(parse("cpu  1 2 3 4\nctxt 5\n", "0.1 0 0", at).is_none());
        assert!(parse("cpu  1 2 3 4 5 6 7 8\n", "0.1 0 0", at).is_none());
        assert!(parse(STAT, "", at).is_none());
    }

    #[test]
    fn this_machine_has_the_counters_where_it_is_linux() {
        if cfg!(target_os = "linux") {
            let a = Sample::now().expect("/proc/stat and /proc/loadavg");
            let b = Sample::now().unwrap();
            assert!(a.until(&b).wall_s >= 0.0);
        } else {
            eprintln!("skipped: /proc counters: not Linux");
        }
    }
}

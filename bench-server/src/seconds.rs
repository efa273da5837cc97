//! The server's counters and CPU time read at every whole wall-clock second, cumulative from its
//! start, for the stats document's `seconds`: load-gen cuts its measured window at whole seconds
//! too, so a reader can take what the server did inside that window alone (the difference of the
//! two readings that bound it), without its start-up, warm-up and shutdown.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pollbench_schema::server::{Counters, ServerSecond};

use crate::stats::SharedCounters;

/// How many readings are kept: the last hour's. A server left running for days keeps its
/// document (and its memory) the size of an hour's.
const KEPT: usize = 3600;

/// The readings taken so far, and the whole second the next one is due at.
pub struct Seconds {
    rows: VecDeque<ServerSecond>,
    next: u64,
}

impl Seconds {
    /// Readings from the next whole second on.
    pub fn new() -> Seconds {
        Seconds {
            rows: VecDeque::new(),
            next: unix_now().as_secs() + 1,
        }
    }

    /// How long until the next reading is due (zero once it is).
    pub fn until_next(&self) -> Duration {
        Duration::from_secs(self.next).saturating_sub(unix_now())
    }

    /// Take the reading if its second has come: every thread's published counts and the
    /// process's CPU time, now. A second missed (the thread was not scheduled through it) is
    /// skipped, not read late under its name.
    pub fn record_if_due(&mut self, threads: &[Arc<SharedCounters>]) {
        let now = unix_now();
        if now.as_secs() < self.next {
            return;
        }
        let mut counters = Counters::default();
        for thread in threads {
            counters.add(&thread.counters());
        }
        let usage = pollbench_common::process_usage();
        if self.rows.len() == KEPT {
            self.rows.pop_front();
        }
        self.rows.push_back(ServerSecond {
            at_unix_s: now.as_secs_f64(),
            cpu_user_s: usage.user.as_secs_f64(),
            cpu_system_s: usage.system.as_secs_f64(),
            counters,
        });
        self.next = now.as_secs() + 1;
    }

    /// The readings, oldest first.
    pub fn into_rows(self) -> Vec<ServerSecond> {
        self.rows.into()
    }
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Counts;

    #[test]
    fn a_reading_is_taken_once_per_whole_second_and_holds_the_counts_so_far() {
        let thread = Arc::new(SharedCounters::new(true, false));
        let threads = [thread.clone()];
        let mut seconds = Seconds::new();
        // Not due before the next whole second.
        seconds.record_if_due(&threads);
        assert!(seconds.rows.is_empty() || seconds.until_next() > Duration::ZERO);
        let mut counts = Counts::default();
        for k in 1..=2u64 {
            counts.bytes_out = 100 * k;
            thread.publish(&counts);
            std::thread::sleep(seconds.until_next() + Duration::from_millis(5));
            seconds.record_if_due(&threads);
            // Twice in the same second: one reading.
            seconds.record_if_due(&threads);
        }
        let rows = seconds.into_rows();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].counters.bytes_out, 100);
        assert_eq!(rows[1].counters.bytes_out, 200);
        assert_eq!(rows[0].counters.syscalls, Some(0));
        assert_eq!(rows[1].at_unix_s.floor() - rows[0].at_unix_s.floor(), 1.0);
        assert!(
            rows[1].at_unix_s.fract() < 0.5,
            "read just after the second"
        );
        assert!(rows[1].cpu_user_s + rows[1].cpu_system_s >= rows[0].cpu_user_s);
    }

    #[test]
    fn only_the_last_hour_is_kept() {
        let mut seconds = Seconds::new();
        seconds.next = 0;
        for _ in 0..KEPT + 5 {
            seconds.next = 0;
            seconds.record_if_due(&[]);
        }
        assert_eq!(seconds.into_rows().len(), KEPT);
    }
}

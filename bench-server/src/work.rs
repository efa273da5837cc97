//! `--work`: a cost per echoed message, as a request handler's own work. The server echoes bytes
//! and frames nothing, so a message is `--message-size` bytes of a connection's stream: each
//! connection has a [`WorkMeter`] that counts what it received, and every whole message's worth
//! of bytes costs one spin of `--work`. Every server kind calls it after each read (or received
//! buffer), before echoing, as a handler works before it answers.

use std::time::{Duration, Instant};

/// The most `--work` takes per message: beyond that a server is no longer an echo server.
pub const MAX_WORK: Duration = Duration::from_secs(1);

/// `--work` and `--message-size`, checked: a non-zero spin per whole message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Work {
    pub per_message: Duration,
    pub message_size: usize,
}

impl Work {
    /// Spin `messages` times `per_message`.
    pub fn spin(&self, messages: u32) {
        for _ in 0..messages {
            spin(self.per_message);
        }
    }
}

/// Busy-wait for `d` on the monotonic clock: the CPU is the handler's for that long, as with real
/// work. Sleeping would cost nothing and leave the core to others, which is not what `--work`
/// plants.
pub fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// One connection's count of received bytes towards its next whole message. Messages may arrive
/// split over reads or several in one read: the bytes of a partial message are carried to the
/// next read.
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkMeter {
    /// `None`: no `--work`, nothing is counted.
    work: Option<Work>,
    /// Bytes of the message under way (less than a message).
    partial: usize,
}

impl WorkMeter {
    pub fn new(work: Option<Work>) -> WorkMeter {
        WorkMeter { work, partial: 0 }
    }

    /// `n` bytes were received: the messages they complete (0 without `--work`).
    pub fn received(&mut self, n: usize) -> u32 {
        let Some(work) = self.work else {
            return 0;
        };
        let total = self.partial + n;
        self.partial = total % work.message_size;
        u32::try_from(total / work.message_size).unwrap_or(u32::MAX)
    }

    /// `n` bytes were received: spin for the messages they complete (see [`Work::spin`]).
    pub fn charge(&mut self, n: usize) {
        let messages = self.received(n);
        if let Some(work) = self.work {
            work.spin(messages);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(message_size: usize) -> WorkMeter {
        WorkMeter::new(Some(Work {
            per_message: Duration::from_micros(1),
            message_size,
        }))
    }

    /// Partial messages are carried across reads; a read may complete several at once.
    #[test]
    fn partial_messages_carry_across_reads() {
        let mut m = meter(64);
        assert_eq!(m.received(30), 0);
        assert_eq!(m.received(34), 1, "30 + 34: the first message");
        assert_eq!(m.received(63), 0);
        assert_eq!(m.received(1), 1);
        assert_eq!(m.received(64 * 3 + 10), 3, "three whole, ten carried");
        assert_eq!(m.received(54), 1, "10 + 54");
        assert_eq!(m.received(1), 0);
        assert_eq!(
            m.received(16384 - 1),
            256,
            "a full buffer ends on a message boundary"
        );
    }

    /// Without `--work` nothing is counted, however much comes.
    #[test]
    fn without_work_no_message_is_counted() {
        let mut m = WorkMeter::default();
        assert_eq!(m.received(1 << 20), 0);
        m.charge(1 << 20); // and nothing spins
    }

    /// A message of one byte: every byte is a message.
    #[test]
    fn one_byte_messages() {
        let mut m = meter(1);
        assert_eq!(m.received(5), 5);
        assert_eq!(m.received(0), 0);
    }

    /// The spin takes at least its duration.
    #[test]
    fn a_spin_lasts_its_duration() {
        let start = Instant::now();
        Work {
            per_message: Duration::from_micros(300),
            message_size: 64,
        }
        .spin(3);
        assert!(start.elapsed() >= Duration::from_micros(900));
    }
}

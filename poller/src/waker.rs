//! Waking a blocked wait from another thread.

use std::io;
use std::sync::Arc;

use crate::backend::notify::Notifier;

/// Interrupts a blocked [`Backend::wait`](crate::Backend::wait) from any thread.
///
/// Cheap to clone; wakes coalesce (many wakes before a wait make that wait return once). A wait
/// that a wake ends returns with no event for the wake itself: the caller checks its own queue or
/// flag. Using a waker after its poller is dropped is harmless.
#[derive(Clone, Debug)]
pub struct Waker {
    notifier: Arc<Notifier>,
}

impl Waker {
    pub(crate) fn new(notifier: Arc<Notifier>) -> Waker {
        Waker { notifier }
    }

    /// Make the current or next wait of the poller return.
    pub fn wake(&self) -> io::Result<()> {
        self.notifier.notify()
    }
}

//! The backends, one private file each (re-exported at the crate root: `poller::Epoll`), the
//! waker descriptor they all watch (`notify`), and the fd-indexed table of registrations of the
//! backends whose kernel does not keep one (`fd_table`). What they share of the operating system
//! (system-call results, descriptor checks, wait helpers) is in `crate::sys`.

mod fd_table;
pub(crate) mod notify;

mod poll;
mod select;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod epoll;

#[cfg(target_os = "linux")]
mod io_uring;

#[cfg(crate_kqueue)]
mod kqueue;

pub use poll::Poll;
pub use select::Select;

#[cfg(any(target_os = "linux", target_os = "android"))]
pub use epoll::Epoll;

#[cfg(target_os = "linux")]
pub use io_uring::IoUring;

#[cfg(crate_kqueue)]
pub use kqueue::Kqueue;

/// Visit each index of `range` once at most, from `first` on and wrapping around, for as long as
/// `visit` does (it returns false, having done nothing, once it wants no more); returns where to
/// start next time, so that a wait whose `Events` fills up does not starve the later entries.
pub(crate) fn scan_wrapping(
    range: std::ops::Range<usize>,
    first: usize,
    mut visit: impl FnMut(usize) -> bool,
) -> usize {
    let mut i = first;
    for _ in range.clone() {
        if !visit(i) {
            break;
        }
        i = if i + 1 == range.end {
            range.start
        } else {
            i + 1
        };
    }
    i
}

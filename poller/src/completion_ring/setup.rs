//! Making a ring (with what the kernel takes of it, its buffers and its registrations) and taking
//! it down once its requests are over.

use std::alloc::dealloc;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use io_uring::{opcode, types, IoUring};

use super::{
    user_data, Buffers, Completion, CompletionRing, RingConfig, RingFeatures, RingStats,
    SendInFlight, GROUP, NEXT_RING_ID, OP_CANCEL,
};

/// `struct io_uring_rsrc_update`, for registering the ring's own descriptor.
#[repr(C)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

const IORING_REGISTER_RING_FDS: u32 = 20;
const IORING_UNREGISTER_RING_FDS: u32 = 21;

impl CompletionRing {
    /// Set up a ring, its buffer ring and its buffers. A kernel without what this needs gives an
    /// `Unsupported` error naming the feature and the Linux version that has it.
    pub fn new(config: &RingConfig) -> io::Result<CompletionRing> {
        if !config.buffers.is_power_of_two() || config.buffers > 32768 || config.buffer_size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "provided buffers: a power of two up to 32768, of at least 1 byte",
            ));
        }
        require_kernel(6, 0, "multishot receive with provided buffer rings")?;
        let (ring, features) = build_ring(config.entries)?;
        let bufs = Buffers::allocate(config.buffers, config.buffer_size)?;
        // SAFETY: plain eventfd creation; the descriptor is checked and then owned.
        let wake_fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if wake_fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let wake_fd = std::sync::Arc::new(unsafe { std::os::fd::OwnedFd::from_raw_fd(wake_fd) });
        let mut this = CompletionRing {
            ring,
            id: NEXT_RING_ID.fetch_add(1, Ordering::Relaxed),
            features,
            stats: RingStats::default(),
            bufs,
            in_flight: 0,
            completions: VecDeque::with_capacity(4 * config.entries as usize),
            sends: vec![SendInFlight::default(); usize::from(config.buffers)],
            ring_index: None,
            wake_fd,
            wake_word: Box::into_raw(Box::new(0u64)),
            closing: false,
        };
        this.features.min_wait = this.ring.params().is_feature_min_timeout();
        // SAFETY: the entries are ours, page-aligned, `buffers` long, and stay allocated until
        // Drop unregisters them (after the ring's requests have finished).
        unsafe {
            this.ring.submitter().register_buf_ring_with_flags(
                this.bufs.entries as u64,
                this.bufs.count,
                GROUP,
                0,
            )
        }
        .map_err(|e| {
            unsupported_or(
                e,
                "provided buffer rings (IORING_REGISTER_PBUF_RING)",
                "5.19",
            )
        })?;
        for id in 0..this.bufs.count {
            this.bufs.push(id);
        }
        this.bufs.publish();
        if config.fixed_files > 0 {
            this.ring
                .submitter()
                .register_files_sparse(config.fixed_files)
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::EMFILE) => io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "a table of {} fixed files is more than the open-files limit allows: {e}",
                            config.fixed_files
                        ),
                    ),
                    _ => unsupported_or(e, "sparse fixed-file tables", "5.19"),
                })?;
            this.features.fixed_files = true;
        }
        this.ring_index = register_ring_fd(this.ring.as_raw_fd());
        this.features.registered_ring = this.ring_index.is_some();
        this.arm_waker()?;
        Ok(this)
    }
}

impl Drop for CompletionRing {
    fn drop(&mut self) {
        // Every request must be over before the buffers are freed: cancel them all, and reap
        // until none is in flight (bounded: a kernel that never answers leaks rather than hangs).
        self.closing = true;
        let entry = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(user_data(OP_CANCEL, 0));
        let _ = self.push(&entry);
        for _ in 0..100 {
            // Connections accepted in the meantime are nobody's: close their descriptors (a
            // fixed file goes with the ring's table).
            while let Some(completion) = self.completions.pop_front() {
                if let Completion::Accept {
                    result: Ok(socket), ..
                } = completion
                {
                    if let Some(fd) = socket.raw_fd() {
                        // SAFETY: a descriptor the kernel accepted for us that no one else holds.
                        unsafe { libc::close(fd) };
                    }
                }
            }
            if self.in_flight == 0 || self.wait(1, Some(Duration::from_millis(10))).is_err() {
                break;
            }
        }
        if let Some(index) = self.ring_index {
            let mut update = RsrcUpdate {
                offset: index,
                resv: 0,
                data: 0,
            };
            ring_fds(
                self.ring.as_raw_fd(),
                IORING_UNREGISTER_RING_FDS,
                &mut update,
            );
        }
        if self.in_flight > 0 {
            return; // leak the memory: the kernel may still write to it
        }
        let _ = self.ring.submitter().unregister_buf_ring(GROUP);
        // SAFETY: allocated in `new` with these layouts (the word by Box); no request uses them
        // any more.
        unsafe {
            dealloc(self.bufs.entries.cast(), self.bufs.entries_layout);
            dealloc(self.bufs.data, self.bufs.data_layout);
            drop(Box::from_raw(self.wake_word));
        }
    }
}

/// A ring with the best task-running flags the kernel takes.
fn build_ring(entries: u32) -> io::Result<(IoUring, RingFeatures)> {
    let cq = entries.saturating_mul(4);
    if let Ok(ring) = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(cq)
        .build(entries)
    {
        let features = RingFeatures {
            single_issuer: true,
            defer_taskrun: true,
            ..RingFeatures::default()
        };
        return Ok((ring, features));
    }
    if let Ok(ring) = IoUring::builder()
        .setup_coop_taskrun()
        .setup_cqsize(cq)
        .build(entries)
    {
        let features = RingFeatures {
            coop_taskrun: true,
            ..RingFeatures::default()
        };
        return Ok((ring, features));
    }
    let ring = IoUring::builder()
        .setup_cqsize(cq)
        .build(entries)
        .map_err(|e| unsupported_or(e, "io_uring", "5.1"))?;
    Ok((ring, RingFeatures::default()))
}

/// Register the ring's descriptor with the calling thread, so its enters skip the descriptor
/// lookup: its index, or None where the kernel (before 5.18) cannot.
fn register_ring_fd(ring_fd: RawFd) -> Option<u32> {
    let mut update = RsrcUpdate {
        offset: u32::MAX, // any free index: the kernel writes the one it chose
        resv: 0,
        data: ring_fd as u64,
    };
    (ring_fds(ring_fd, IORING_REGISTER_RING_FDS, &mut update) == 1).then_some(update.offset)
}

/// `io_uring_register(ring_fd, op, update, 1)` for `IORING_(UN)REGISTER_RING_FDS`: the number of
/// entries done, or -1.
fn ring_fds(ring_fd: RawFd, op: u32, update: &mut RsrcUpdate) -> libc::c_long {
    // SAFETY: a register call on our own ring with one `io_uring_rsrc_update` that lives across
    // the call (the kernel writes the chosen index into it when registering).
    unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring_fd,
            op,
            update as *mut RsrcUpdate,
            1,
        )
    }
}

/// `Unsupported` naming the feature where the kernel refused it as unknown, else `e` as it is.
fn unsupported_or(e: io::Error, feature: &str, version: &str) -> io::Error {
    match e.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => io::Error::new(
            io::ErrorKind::Unsupported,
            format!("io_uring completion mode needs {feature} (Linux {version}+): {e}"),
        ),
        _ => e,
    }
}

/// `Unsupported`, naming `feature` and the version, on a kernel older than `major.minor`.
fn require_kernel(major: u32, minor: u32, feature: &str) -> io::Result<()> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    kernel_has(release.trim(), major, minor, feature)
}

/// The check of [`require_kernel`] against a given release string (`uname -r`).
fn kernel_has(release: &str, major: u32, minor: u32, feature: &str) -> io::Result<()> {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let running = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if running < (major, minor) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "io_uring completion mode needs {feature}, Linux {major}.{minor}+; this is {release}"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An older kernel gets one line naming the feature, the version that has it and its own.
    #[test]
    fn an_older_kernel_is_told_which_feature_and_version() {
        let err = kernel_has("5.15.0-91-generic", 6, 0, "multishot receive").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        assert_eq!(
            err.to_string(),
            "io_uring completion mode needs multishot receive, Linux 6.0+; this is 5.15.0-91-generic"
        );
        assert!(kernel_has("5.19.17", 6, 0, "x").is_err());
        assert!(kernel_has("6.0.0", 6, 0, "x").is_ok());
        assert!(kernel_has("6.18.44-fc-v782", 6, 0, "x").is_ok());
        assert!(kernel_has("10.1", 6, 12, "x").is_ok());
        assert!(
            kernel_has("", 6, 0, "x").is_err(),
            "an unreadable release is not assumed new"
        );
    }
}

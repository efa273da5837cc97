//! The provided buffers: made once with their ring, handed to the kernel through it, given back
//! one by one.

use std::alloc::{alloc, alloc_zeroed, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{cqueue, types};

use super::{Buffers, Completion, RecvBuf};

impl Buffers {
    /// `count` buffers of `size` bytes (both at least 1) and their ring, all written once.
    pub(super) fn allocate(count: u16, size: u32) -> io::Result<Buffers> {
        let (ring_layout, data_layout) = buffer_layouts(count, size)?;
        // SAFETY: both layouts have a non-zero size (buffers >= 1, buffer_size >= 1).
        let (ring_entries, data) = unsafe { (alloc_zeroed(ring_layout), alloc(data_layout)) };
        if ring_entries.is_null() || data.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        // Written once here, so every page of the buffers is resident from the start: the ring's
        // memory is what it will stay (not growing as receives first touch pages), and no
        // first-touch page fault lands on the echo path. (This is what a big ring costs at
        // start-up: the caller sizes it.)
        // SAFETY: `data` is a fresh allocation of `data_layout.size()` bytes.
        unsafe { std::ptr::write_bytes(data, 0, data_layout.size()) };
        Ok(Buffers {
            entries: ring_entries.cast(),
            entries_layout: ring_layout,
            data,
            data_layout,
            count,
            size,
            tail: 0,
        })
    }

    /// A receive's completion, from its result and flags; a buffer that came back with nothing in
    /// it goes straight back to the ring.
    pub(super) fn received(
        &mut self,
        ring: u32,
        token: u64,
        res: i32,
        flags: u32,
        more: bool,
    ) -> Completion {
        match (res, cqueue::buffer_select(flags)) {
            (n, Some(id)) if n > 0 => Completion::Received {
                token,
                buf: RecvBuf {
                    ring,
                    id,
                    len: n as u32,
                },
                more,
            },
            (0, buffer) => {
                if let Some(b) = buffer {
                    self.push(b);
                    self.publish();
                }
                Completion::Eof { token }
            }
            (n, _) if n == -libc::ENOBUFS => Completion::NoBuffers { token },
            (n, _) => Completion::RecvFailed { token, errno: -n },
        }
    }

    pub(super) fn ptr(&self, buffer: u16) -> *mut u8 {
        debug_assert!(buffer < self.count);
        // SAFETY: buffer < count, so the offset is inside `data`.
        unsafe { self.data.add(usize::from(buffer) * self.size as usize) }
    }

    /// Put buffer `id` in the ring's next slot (not visible to the kernel until published).
    pub(super) fn push(&mut self, id: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: slot < count: inside the entries we allocated; the kernel reads only the slots
        // before the published tail, and this one is after it.
        let entry = unsafe { &mut *self.entries.add(slot) };
        entry.set_addr(self.ptr(id) as u64);
        entry.set_len(self.size);
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Let the kernel see every buffer pushed so far.
    pub(super) fn publish(&self) {
        // SAFETY: the tail field lives in the first entry of our buffer ring, which is allocated
        // and aligned; the kernel reads it concurrently, hence the atomic release store (the
        // entries written before become visible first).
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

/// The layouts of `count` buffer-ring entries (page-aligned, as the kernel wants them) and of
/// `count` buffers of `size` bytes; `InvalidInput` where they do not fit in the address space.
fn buffer_layouts(count: u16, size: u32) -> io::Result<(Layout, Layout)> {
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "provided buffers: too many bytes",
        )
    };
    let page = 4096;
    let ring_bytes = usize::from(count)
        .checked_mul(std::mem::size_of::<types::BufRingEntry>())
        .and_then(|b| b.checked_next_multiple_of(page))
        .ok_or_else(too_big)?;
    let data_bytes = usize::try_from(size)
        .ok()
        .and_then(|size| size.checked_mul(usize::from(count)))
        .ok_or_else(too_big)?;
    Ok((
        Layout::from_size_align(ring_bytes, page).map_err(|_| too_big())?,
        Layout::from_size_align(data_bytes, 64).map_err(|_| too_big())?,
    ))
}

//! What a backend keeps per registered descriptor, indexed by the descriptor, for the backends
//! whose kernel interface does not itself keep the set of registered fds (select, poll, kqueue).

use std::os::fd::RawFd;

/// Registrations indexed by fd. It grows when a new highest fd is registered, never in a wait.
pub(crate) struct FdTable<T> {
    slots: Vec<Option<T>>,
}

impl<T: Copy> FdTable<T> {
    pub(crate) fn new() -> FdTable<T> {
        FdTable { slots: Vec::new() }
    }

    /// A table allocated once for the fds below `len`, for a backend that can watch no others.
    pub(crate) fn with_len(len: usize) -> FdTable<T> {
        FdTable {
            slots: vec![None; len],
        }
    }

    pub(crate) fn get(&self, fd: RawFd) -> Option<T> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get(i).copied().flatten())
    }

    pub(crate) fn contains(&self, fd: RawFd) -> bool {
        self.get(fd).is_some()
    }

    /// The registration of an fd known to be registered (`Backend` checked it).
    pub(crate) fn registered(&mut self, fd: RawFd) -> &mut T {
        self.slots[fd as usize]
            .as_mut()
            .expect("Backend checks that the fd is registered")
    }

    /// Set the registration of a non-negative fd (`Backend` checked it).
    pub(crate) fn insert(&mut self, fd: RawFd, value: T) {
        let i = fd as usize;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, None);
        }
        self.slots[i] = Some(value);
    }

    /// Take out the registration of an fd known to be registered (`Backend` checked it).
    pub(crate) fn remove(&mut self, fd: RawFd) -> T {
        self.slots[fd as usize]
            .take()
            .expect("Backend checks that the fd is registered")
    }
}

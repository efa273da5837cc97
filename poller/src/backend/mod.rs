//! The backends, one file each, and the waker descriptor they all watch (`notify`). What they
//! share of the operating system (system-call results, descriptor checks, wait helpers) is in
//! `crate::sys`.

pub(crate) mod notify;

pub mod poll;
pub mod select;

#[cfg(any(target_os = "linux", target_os = "android"))]
pub mod epoll;

#[cfg(target_os = "linux")]
pub mod io_uring;

#[cfg(crate_kqueue)]
pub mod kqueue;

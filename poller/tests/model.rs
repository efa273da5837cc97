//! Model-based property test: random register / modify / deregister / write / read / wait sequences
//! over a few socket pairs, checked after every wait against a simple model of readiness, for every
//! backend available here.
//!
//! The model is exact for level-triggered and oneshot registrations. For edge-triggered ones it says
//! what must be reported (a new arrival since the last report, readiness at (re)registration), what
//! must not (nothing new), and leaves open only what the mechanisms legitimately disagree on: an
//! arrival that was read before the wait, and writability re-reported on an unrelated wake-up.

mod common;

use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{backend, drain, unix_pair, wait_once};
use poller::{Backend, Capabilities, Interest, Mode, Token};
use proptest::prelude::*;

const PAIRS: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    Register(usize, Interest, Mode),
    Modify(usize, Interest, Mode),
    Deregister(usize),
    /// The peer writes this many bytes, making the registered end readable.
    Write(usize, usize),
    /// The registered end reads everything.
    Read(usize),
    Wait,
}

/// What an edge-triggered registration owes the next wait for one direction.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Edge {
    Nothing,
    Maybe,
    Pending,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    reg: Option<(Token, Interest, Mode)>,
    /// False once a oneshot registration has reported, until modify.
    armed: bool,
    unread: usize,
    read_edge: Edge,
    write_edge: Edge,
    /// io_uring only: a poll completion is a snapshot taken at wake-up, so data read between the
    /// wake-up and the wait may still be reported once (spurious, never missed). epoll, poll, select
    /// and kqueue look at the fd during the wait and are held to the exact answer.
    stale_read: bool,
}

impl Slot {
    fn arm(&mut self, token: Token, interest: Interest, mode: Mode) {
        self.reg = Some((token, interest, mode));
        self.armed = true;
        let pending = |on: bool| if on { Edge::Pending } else { Edge::Nothing };
        self.read_edge = pending(interest.is_readable() && self.unread > 0);
        self.write_edge = pending(interest.is_writable());
    }
}

fn interest() -> impl Strategy<Value = Interest> {
    prop_oneof![
        3 => Just(Interest::READABLE),
        3 => Just(Interest::WRITABLE),
        3 => Just(Interest::BOTH),
        // Priority rides along: these sockets never carry out-of-band data, so it must never be
        // reported, and must not change what readable and writable do.
        1 => Just(Interest::READABLE | Interest::PRIORITY),
        1 => Just(Interest::PRIORITY),
        1 => Just(Interest::BOTH | Interest::PRIORITY),
    ]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        3 => Just(Mode::Level),
        2 => Just(Mode::Edge),
        2 => Just(Mode::Oneshot),
        1 => Just(Mode::EdgeOneshot),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0..PAIRS;
    prop_oneof![
        3 => (i.clone(), interest(), mode()).prop_map(|(i, n, m)| Op::Register(i, n, m)),
        2 => (i.clone(), interest(), mode()).prop_map(|(i, n, m)| Op::Modify(i, n, m)),
        1 => i.clone().prop_map(Op::Deregister),
        4 => (i.clone(), 1..16usize).prop_map(|(i, n)| Op::Write(i, n)),
        2 => i.prop_map(Op::Read),
        5 => Just(Op::Wait),
    ]
}

fn supported(caps: &Capabilities, interest: Interest, mode: Mode) -> bool {
    (!mode.is_edge() || caps.edge.is_supported())
        && (!mode.is_oneshot() || caps.oneshot.is_supported())
        && (!interest.is_priority() || caps.priority.is_supported())
}

fn check_error(result: std::io::Result<()>, kind: ErrorKind, op: &Op) -> Result<(), TestCaseError> {
    match result {
        Err(e) => prop_assert_eq!(e.kind(), kind, "{:?}: {}", op, e),
        Ok(()) => prop_assert!(false, "{:?} succeeded, expected {:?}", op, kind),
    }
    Ok(())
}

fn run<B: Backend>(ops: &[Op]) -> Result<(), TestCaseError> {
    let Some(mut p) = backend::<B>(&format!("{}::model", B::KIND)) else {
        return Ok(());
    };
    let caps = p.capabilities();
    let pairs: Vec<(UnixStream, UnixStream)> = (0..PAIRS).map(|_| unix_pair()).collect();
    let mut slots = [Slot {
        reg: None,
        armed: false,
        unread: 0,
        read_edge: Edge::Nothing,
        write_edge: Edge::Nothing,
        stale_read: false,
    }; PAIRS];
    let mut serial = 0;
    for op in ops {
        match *op {
            Op::Register(i, interest, mode) | Op::Modify(i, interest, mode) => {
                // A token names its pair (token % PAIRS) and is new on every call, to catch stale ones.
                serial += 1;
                let token = Token(serial * PAIRS + i);
                let fd = pairs[i].0.as_raw_fd();
                let registering = matches!(op, Op::Register(..));
                let result = if registering {
                    p.register(fd, token, interest, mode)
                } else {
                    p.modify(fd, token, interest, mode)
                };
                if !supported(&caps, interest, mode) {
                    check_error(result, ErrorKind::Unsupported, op)?;
                } else if registering && slots[i].reg.is_some() {
                    check_error(result, ErrorKind::AlreadyExists, op)?;
                } else if !registering && slots[i].reg.is_none() {
                    check_error(result, ErrorKind::NotFound, op)?;
                } else {
                    prop_assert!(result.is_ok(), "{:?}: {:?}", op, result);
                    slots[i].arm(token, interest, mode);
                }
            }
            Op::Deregister(i) => {
                let result = p.deregister(pairs[i].0.as_raw_fd());
                if slots[i].reg.take().is_none() {
                    check_error(result, ErrorKind::NotFound, op)?;
                } else {
                    prop_assert!(result.is_ok(), "{:?}: {:?}", op, result);
                }
            }
            Op::Write(i, n) => {
                (&pairs[i].1).write_all(&vec![b'x'; n]).unwrap();
                let s = &mut slots[i];
                s.unread += n;
                if let Some((_, interest, _)) = s.reg {
                    if interest.is_readable() {
                        s.read_edge = Edge::Pending;
                    }
                    // epoll and io_uring re-evaluate every event bit on any wake-up of the socket.
                    if interest.is_writable() && s.write_edge == Edge::Nothing {
                        s.write_edge = Edge::Maybe;
                    }
                }
            }
            Op::Read(i) => {
                prop_assert_eq!(drain(&pairs[i].0), slots[i].unread);
                let s = &mut slots[i];
                s.stale_read |= B::KIND == poller::BackendKind::IoUring && s.unread > 0;
                s.unread = 0;
                if s.read_edge == Edge::Pending {
                    s.read_edge = Edge::Maybe;
                }
            }
            Op::Wait => check_wait(&mut p, &mut slots)?,
        }
    }
    Ok(())
}

fn check_wait<B: Backend>(p: &mut B, slots: &mut [Slot; PAIRS]) -> Result<(), TestCaseError> {
    let got = wait_once(p, Some(Duration::ZERO));
    for (token, ready) in &got {
        let slot = &slots[token.0 % PAIRS];
        let Some((current, interest, _)) = slot.reg else {
            return Err(TestCaseError::fail(format!(
                "event for a deregistered fd: {token:?} {ready:?}"
            )));
        };
        prop_assert_eq!(*token, current, "stale token");
        prop_assert!(slot.armed, "a disarmed oneshot reported: {:?}", ready);
        prop_assert!(
            !ready.readable || interest.is_readable(),
            "readable not asked: {:?}",
            ready
        );
        prop_assert!(
            !ready.writable || interest.is_writable(),
            "writable not asked: {:?}",
            ready
        );
        prop_assert!(
            !ready.error && !ready.hangup && !ready.read_hangup && !ready.priority,
            "{:?}",
            ready
        );
    }
    for slot in slots.iter_mut() {
        let Some((token, interest, mode)) = slot.reg else {
            slot.stale_read = false;
            continue;
        };
        let ready = got.get(&token).copied().unwrap_or_default();
        if !slot.armed {
            continue; // checked above: nothing reported
        }
        let stale = slot.stale_read;
        // io_uring: a completion carries the flags of the moment the kernel saw readiness, which may
        // precede the wait (a poll submitted early by a deregister, or woken by one direction);
        // readiness arising after it is reported by a later wait. A report is still owed.
        let snapshot = B::KIND == poller::BackendKind::IoUring && got.contains_key(&token);
        let expect = |edge: Edge, level: bool, seen: bool| -> Result<(), TestCaseError> {
            match (mode.is_edge(), edge) {
                (false, _) if stale && seen && !level => {} // the one spurious report allowed
                (false, _) if snapshot && level && !seen => {} // reported, with the earlier flags
                (false, _) => prop_assert_eq!(seen, level, "level: {:?} {:?}", mode, ready),
                (true, Edge::Pending) if snapshot && mode.is_oneshot() => {} // reported earlier flags
                (true, Edge::Pending) => prop_assert!(seen, "edge owed a report: {:?}", ready),
                (true, Edge::Nothing) => prop_assert!(!seen, "edge with nothing new: {:?}", ready),
                (true, Edge::Maybe) => {}
            }
            Ok(())
        };
        let readable = interest.is_readable() && slot.unread > 0;
        expect(slot.read_edge, readable, ready.readable)?;
        expect(slot.write_edge, interest.is_writable(), ready.writable)?;
        if !mode.is_edge() && (readable || interest.is_writable()) {
            prop_assert!(
                got.contains_key(&token),
                "an armed, ready registration must report"
            );
        }
        slot.read_edge = Edge::Nothing;
        slot.write_edge = Edge::Nothing;
        slot.stale_read = false;
        if mode.is_oneshot() && got.contains_key(&token) {
            slot.armed = false;
        }
    }
    Ok(())
}

macro_rules! model_tests {
    ($($name:ident: $backend:ty,)*) => {
        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
            $(
                #[test]
                fn $name(ops in proptest::collection::vec(op(), 1..80)) {
                    run::<$backend>(&ops)?;
                }
            )*
        }
    };
}

model_tests! {
    select: poller::Select,
    poll: poller::Poll,
}

#[cfg(target_os = "linux")]
model_tests! {
    epoll: poller::Epoll,
    io_uring: poller::IoUring,
}

#[cfg(crate_kqueue)]
model_tests! {
    kqueue: poller::Kqueue,
}

#[cfg(not(crate_kqueue))]
#[test]
fn kqueue() {
    common::skip(
        "kqueue::model",
        "kqueue is not built: on Linux it needs libkqueue and `--features libkqueue`",
    );
}

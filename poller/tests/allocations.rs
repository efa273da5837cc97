//! Zero heap allocations in the hot loop: 100,000 wait cycles that return events, and a modify loop,
//! for every backend and mode, counted by a global allocator after a warm-up.
//!
//! One test function on purpose: the counter is process-wide, so nothing else may run meanwhile.

mod common;

use std::alloc::System;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::{skip, unix_pair};
use poller::{Backend, BackendKind, Events, Interest, Mode, Token, WithBackend};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const PAIRS: usize = 64;
const ACTIVE: usize = 8;
const CYCLES: usize = 100_000;
const WARMUP: usize = 1_000;

struct Dispatch {
    mode: Mode,
}

/// Allocations counted over the measured cycles, and the events they returned.
struct Counted {
    allocations: usize,
    events: usize,
}

impl WithBackend for Dispatch {
    type Output = Option<Counted>;

    fn run<B: Backend>(self) -> Option<Counted> {
        let mut p = B::new().ok()?;
        let caps = p.capabilities();
        if (self.mode.is_edge() && !caps.edge.is_supported())
            || (self.mode.is_oneshot() && !caps.oneshot.is_supported())
        {
            return None;
        }
        let pairs: Vec<_> = (0..PAIRS).map(|_| unix_pair()).collect();
        for (i, (a, _)) in pairs.iter().enumerate() {
            p.register(a.as_raw_fd(), Token(i), Interest::READABLE, self.mode)
                .unwrap();
        }
        let mut events = Events::with_capacity(PAIRS);
        let mut buf = [0u8; 16];
        let mut cycle = |p: &mut B, events: &mut Events, n: usize| -> usize {
            for k in 0..ACTIVE {
                let (_, b) = &pairs[(n * 7 + k * 5) % PAIRS];
                (&*b).write_all(&[n as u8]).unwrap();
            }
            let mut got = 0;
            while got < ACTIVE {
                p.wait(events, Some(Duration::from_secs(5))).unwrap();
                assert!(
                    !events.is_empty(),
                    "cycle {n}: the written sockets are reported"
                );
                for e in events.iter() {
                    let (a, _) = &pairs[e.token().0];
                    let read = (&*a).read(&mut buf).unwrap();
                    assert!(read > 0);
                    if self.mode.is_oneshot() {
                        p.modify(a.as_raw_fd(), e.token(), Interest::READABLE, self.mode)
                            .unwrap();
                    }
                    got += 1;
                }
            }
            got
        };
        for n in 0..WARMUP {
            cycle(&mut p, &mut events, n);
        }
        let region = Region::new(GLOBAL);
        let mut total = 0;
        for n in 0..CYCLES {
            total += cycle(&mut p, &mut events, n);
        }
        let allocations = region.change().allocations + region.change().reallocations;
        Some(Counted {
            allocations,
            events: total,
        })
    }
}

struct ModifyLoop;

impl WithBackend for ModifyLoop {
    type Output = Option<usize>;

    fn run<B: Backend>(self) -> Option<usize> {
        let mut p = B::new().ok()?;
        let (a, _b) = unix_pair();
        let fd = a.as_raw_fd();
        p.register(fd, Token(1), Interest::READABLE, Mode::Level)
            .unwrap();
        let mut events = Events::with_capacity(16);
        let step = |p: &mut B, events: &mut Events, n: usize| {
            let interest = if n % 2 == 0 {
                Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            p.modify(fd, Token(n % 1000), interest, Mode::Level)
                .unwrap();
            if n % 64 == 0 {
                // Let queued work (io_uring submissions and cancellations) reach the kernel.
                p.wait(events, Some(Duration::ZERO)).unwrap();
            }
        };
        for n in 0..WARMUP {
            step(&mut p, &mut events, n);
        }
        let region = Region::new(GLOBAL);
        for n in 0..CYCLES {
            step(&mut p, &mut events, n);
        }
        Some(region.change().allocations + region.change().reallocations)
    }
}

#[test]
fn hot_loops_do_not_allocate() {
    let mut checked = 0;
    for kind in BackendKind::ALL {
        if let Err(why) = kind.probe() {
            skip(&format!("{kind}::allocations"), &why);
            continue;
        }
        for mode in Mode::ALL {
            match kind.with(Dispatch { mode }).unwrap() {
                None => skip(
                    &format!("{kind}::allocations::{mode:?}"),
                    "mode not supported by this backend",
                ),
                Some(c) => {
                    assert!(
                        c.events >= CYCLES * ACTIVE,
                        "{kind} {mode:?}: {} events",
                        c.events
                    );
                    assert_eq!(
                        c.allocations, 0,
                        "{kind} {mode:?}: allocations in {CYCLES} wait cycles"
                    );
                    checked += 1;
                }
            }
        }
        let modify = kind
            .with(ModifyLoop)
            .unwrap()
            .expect("level modify works everywhere");
        assert_eq!(modify, 0, "{kind}: allocations in {CYCLES} modifies");
    }
    assert!(checked >= 2, "at least select and poll were measured");
}

//! Zero heap allocations in the hot loop: 100,000 wait cycles that return events, and a modify loop,
//! for every backend and mode, counted by a global allocator after a warm-up.
//!
//! The allocator counts only the allocations of the thread that is measuring (a thread-local
//! counter), so whatever else the process does meanwhile (the test harness printing its "running
//! for over 60 seconds" notice on a busy machine, other tests) cannot show up in the count.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{skip, unix_pair};
use poller::{Backend, BackendKind, Events, Interest, Mode, Token, WithBackend};

/// The system allocator, counting the allocations of a thread while it measures.
struct PerThreadCounting;

thread_local! {
    /// `Some(n)`: this thread is measuring and has allocated `n` times since it started. A const
    /// initializer and a `Cell` of a type without `Drop`, so the allocator's access to it neither
    /// allocates nor registers a destructor (either would recurse into the allocator).
    static ALLOCATIONS: Cell<Option<usize>> = const { Cell::new(None) };
}

fn count_one() {
    // `try_with`: during thread teardown the slot may be gone; nothing is measured then.
    let _ = ALLOCATIONS.try_with(|n| {
        if let Some(k) = n.get() {
            n.set(Some(k + 1));
        }
    });
}

// SAFETY: every call is passed on unchanged to the system allocator, which upholds the contract;
// counting touches only a thread-local `Cell` and never allocates.
unsafe impl GlobalAlloc for PerThreadCounting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller's guarantees for `layout` are passed on as they are.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: PerThreadCounting = PerThreadCounting;

/// A measured window on the current thread: allocations and reallocations made by this thread
/// between `start` and `stop`. Other threads' allocations are not counted.
struct Measure;

impl Measure {
    fn start() -> Measure {
        ALLOCATIONS.set(Some(0));
        Measure
    }

    fn stop(self) -> usize {
        ALLOCATIONS.replace(None).expect("measuring")
    }
}

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
        // Priority interest too where the backend has it (the kernel checks one more bit).
        let interest = if caps.priority.is_supported() {
            Interest::READABLE | Interest::PRIORITY
        } else {
            Interest::READABLE
        };
        let pairs: Vec<_> = (0..PAIRS).map(|_| unix_pair()).collect();
        for (i, (a, _)) in pairs.iter().enumerate() {
            p.register(a.as_raw_fd(), Token(i), interest, self.mode)
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
                        p.modify(a.as_raw_fd(), e.token(), interest, self.mode)
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
        let measure = Measure::start();
        let mut total = 0;
        for n in 0..CYCLES {
            total += cycle(&mut p, &mut events, n);
        }
        let allocations = measure.stop();
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
            let interest = if n.is_multiple_of(2) {
                Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            p.modify(fd, Token(n % 1000), interest, Mode::Level)
                .unwrap();
            if n.is_multiple_of(64) {
                // Let queued work (io_uring submissions and cancellations) reach the kernel.
                p.wait(events, Some(Duration::ZERO)).unwrap();
            }
        };
        for n in 0..WARMUP {
            step(&mut p, &mut events, n);
        }
        let measure = Measure::start();
        for n in 0..CYCLES {
            step(&mut p, &mut events, n);
        }
        Some(measure.stop())
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

/// The counter is exact however busy the machine is: another thread allocating during the measured
/// window (as the test harness does when it prints its 60-second notice) is not counted, while an
/// allocation of the measuring thread is.
#[test]
fn only_the_measuring_threads_allocations_are_counted() {
    let barrier = Arc::new(Barrier::new(2));
    let other = {
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            barrier.wait(); // the window is open
            let boxes: Vec<Box<u64>> = (0..100).map(Box::new).collect();
            black_box(&boxes);
            black_box(format!("{} boxes and a string", boxes.len()));
            barrier.wait(); // done; the window closes after this
        })
    };
    // The thread was spawned (which allocates) before the window opens.
    let measure = Measure::start();
    barrier.wait();
    barrier.wait();
    let counted = measure.stop();
    other.join().unwrap();
    assert_eq!(
        counted, 0,
        "another thread's 100+ allocations during the window are not counted"
    );

    let measure = Measure::start();
    black_box(Box::new(7u64));
    let counted = measure.stop();
    assert_eq!(
        counted, 1,
        "the measuring thread's own allocation is counted"
    );

    let measure = Measure::start();
    let mut v: Vec<u8> = black_box(Vec::with_capacity(1));
    v.extend_from_slice(black_box(&[1, 2, 3, 4, 5, 6, 7, 8, 9]));
    let counted = measure.stop();
    assert_eq!(counted, 2, "an allocation and a reallocation");
}

/// Completion mode: an echo of 64-byte messages through `poller::completion_ring` (multishot
/// receive into a provided buffer, a send from it, the buffer recycled) allocates nothing per
/// message: 10,000 measured round trips after 1,000 of warm-up, client on the same thread; with
/// the connection as a descriptor and as a fixed file.
#[cfg(target_os = "linux")]
#[test]
fn completion_ring_echo_allocates_nothing_per_message() {
    for fixed_files in [0, 8] {
        completion_ring_echo(fixed_files);
    }
}

#[cfg(target_os = "linux")]
fn completion_ring_echo(fixed_files: u32) {
    use poller::completion_ring::{Completion, CompletionRing, RingConfig};
    use std::net::{TcpListener, TcpStream};

    let config = RingConfig {
        fixed_files,
        ..RingConfig::default()
    };
    let mut ring = match CompletionRing::new(&config) {
        Ok(r) => r,
        Err(e) => return skip("completion_ring::allocations", &e.to_string()),
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    ring.accept_multishot(listener.as_raw_fd(), 0).unwrap();
    let mut fd = None;
    while fd.is_none() {
        ring.wait(1, Some(Duration::from_secs(5))).unwrap();
        while let Some(c) = ring.next_completion() {
            if let Completion::Accept { result, .. } = c {
                fd = Some(result.unwrap());
            }
        }
    }
    let fd = fd.unwrap();
    ring.recv_multishot(&fd, 1).unwrap();
    let message = [7u8; 64];
    let mut back = [0u8; 64];
    // One round trip: the client writes, the ring receives it into a provided buffer and sends
    // it back from there, the buffer is recycled, the client reads. Loopback delivers the 64
    // bytes as one receive.
    let mut round_trip = |ring: &mut CompletionRing| {
        client.write_all(&message).unwrap();
        let mut received = None;
        for _ in 0..100 {
            ring.wait(1, Some(Duration::from_millis(100))).unwrap();
            if let Some(Completion::Received { buf, more, .. }) = ring.next_completion() {
                if !more {
                    ring.recv_multishot(&fd, 1).unwrap();
                }
                received = Some(buf);
                break;
            }
        }
        let buf = received.expect("the message was received");
        assert_eq!(buf.len(), 64);
        ring.send(&fd, 1, buf, 0, 64).unwrap();
        let mut sent = None;
        for _ in 0..100 {
            ring.wait(1, Some(Duration::from_millis(100))).unwrap();
            if let Some(Completion::Sent { result, buf, .. }) = ring.next_completion() {
                sent = Some(result);
                ring.recycle(buf);
                break;
            }
        }
        assert_eq!(sent, Some(Ok(64)), "the echo was sent");
        client.read_exact(&mut back).unwrap();
        assert_eq!(back, message);
    };
    for _ in 0..1_000 {
        round_trip(&mut ring);
    }
    let measure = Measure::start();
    for _ in 0..10_000 {
        round_trip(&mut ring);
    }
    let allocations = measure.stop();
    assert_eq!(
        allocations, 0,
        "heap allocations in 10,000 echoed messages ({fixed_files} fixed files)"
    );
    assert_eq!(fd.is_fixed(), fixed_files > 0);
    ring.close(fd).unwrap();
}

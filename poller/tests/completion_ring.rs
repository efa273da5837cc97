//! `poller::completion_ring` against real loopback TCP: multishot accept, multishot receive into
//! provided buffers, sends from those buffers (short ones continued), end-of-file, the buffer ring
//! running dry (ENOBUFS) without losing a byte. Every loop is bounded in count and time.
#![cfg(target_os = "linux")]

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use poller::completion_ring::{Completion, CompletionRing, RingConfig};

fn skip(what: &str, why: &str) {
    eprintln!("skipped: {what}: {why}");
}

/// A ring, or None (said) where this kernel or sandbox has no io_uring completion mode.
fn ring(config: RingConfig, what: &str) -> Option<CompletionRing> {
    match CompletionRing::new(&config) {
        Ok(r) => Some(r),
        Err(e) => {
            skip(what, &e.to_string());
            None
        }
    }
}

/// The bytes client `i` sends: `len` of them, different for every client and position.
fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|k| (k * 31 + i * 7) as u8).collect()
}

/// One connection of the echo server under test: its descriptor, whether a send is in flight,
/// and what waits to be sent (buffer, offset, bytes left).
struct Conn {
    fd: RawFd,
    sending: Option<(u16, u32, u32)>,
    queue: VecDeque<(u16, u32, u32)>,
    done: bool,
}

/// An echo server on `ring` until `clients` connections have reached end-of-file (or 20 s):
/// accept, receive, send every received buffer back in order (short sends continued), recycle.
/// Returns how many sends were short.
fn echo(
    ring: &mut CompletionRing,
    listener: &TcpListener,
    clients: usize,
    sndbuf: Option<i32>,
) -> usize {
    ring.accept_multishot(listener.as_raw_fd(), 0).unwrap();
    let mut conns: HashMap<u64, Conn> = HashMap::new();
    let mut next_token = 1;
    let mut finished = 0;
    let mut short = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while finished < clients {
        assert!(
            Instant::now() < deadline,
            "echo server: {finished} of {clients} done"
        );
        ring.wait(1, Some(Duration::from_millis(100))).unwrap();
        let completions: Vec<Completion> = ring.completions().to_vec();
        for c in completions {
            match c {
                Completion::Accept { result, more, .. } => {
                    let fd = result.expect("accepted");
                    if let Some(size) = sndbuf {
                        set_sndbuf(fd, size);
                    }
                    let token = next_token;
                    next_token += 1;
                    conns.insert(
                        token,
                        Conn {
                            fd,
                            sending: None,
                            queue: VecDeque::new(),
                            done: false,
                        },
                    );
                    ring.recv_multishot(fd, token).unwrap();
                    if !more {
                        ring.accept_multishot(listener.as_raw_fd(), 0).unwrap();
                    }
                }
                Completion::Received {
                    token,
                    buffer,
                    len,
                    more,
                } => {
                    let conn = conns.get_mut(&token).unwrap();
                    conn.queue.push_back((buffer, 0, len));
                    if !more {
                        ring.recv_multishot(conn.fd, token).unwrap();
                    }
                    start_send(ring, token, conn);
                }
                Completion::Sent { token, result } => {
                    let conn = conns.get_mut(&token).unwrap();
                    let sent = result.expect("send");
                    let (buffer, offset, left) = conn.sending.take().unwrap();
                    if sent < left {
                        short += 1;
                        conn.queue.push_front((buffer, offset + sent, left - sent));
                    } else {
                        ring.recycle(buffer);
                    }
                    start_send(ring, token, conn);
                    if conn.done && conn.sending.is_none() {
                        finished += 1;
                        close(conn.fd);
                    }
                }
                Completion::Eof { token } => {
                    let conn = conns.get_mut(&token).unwrap();
                    conn.done = true;
                    if conn.sending.is_none() {
                        finished += 1;
                        close(conn.fd);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    short
}

fn start_send(ring: &mut CompletionRing, token: u64, conn: &mut Conn) {
    if conn.sending.is_some() {
        return; // one send per connection at a time: they never race
    }
    if let Some((buffer, offset, left)) = conn.queue.pop_front() {
        ring.send(conn.fd, token, buffer, offset, left).unwrap();
        conn.sending = Some((buffer, offset, left));
    }
}

fn set_sndbuf(fd: RawFd, size: i32) {
    // SAFETY: a valid socket descriptor and a live c_int whose size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&size as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

fn close(fd: RawFd) {
    // SAFETY: the test owns the accepted descriptor and closes it once.
    unsafe { libc::close(fd) };
}

/// Three clients one after another, 100 KiB each, against an echo server whose sockets have a
/// small send buffer (so sends come back short and must be continued): every byte comes back in
/// order, and every buffer is recycled.
#[test]
fn echoes_every_byte_in_order_with_short_sends_continued() {
    let Some(mut ring) = ring(
        RingConfig {
            entries: 64,
            buffers: 64,
            buffer_size: 4096,
        },
        "completion ring echo",
    ) else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    const CLIENTS: usize = 3;
    const LEN: usize = 100 * 1024;
    let client = std::thread::spawn(move || {
        for i in 0..CLIENTS {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let sent = payload(i, LEN);
            let writer = {
                let mut w = s.try_clone().unwrap();
                let sent = sent.clone();
                std::thread::spawn(move || w.write_all(&sent).unwrap())
            };
            let mut back = vec![0u8; LEN];
            // Read slowly at first, so the server's small send buffer fills.
            std::thread::sleep(Duration::from_millis(50));
            s.read_exact(&mut back).unwrap();
            writer.join().unwrap();
            assert!(back == sent, "client {i}: the echo differs");
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
    });
    let short = echo(&mut ring, &listener, CLIENTS, Some(4096));
    client.join().unwrap();
    let stats = ring.stats();
    eprintln!("{short} short sends; {stats:?}; {:?}", ring.features());
    assert_eq!(stats.buffers_in_use, 0, "every buffer recycled: {stats:?}");
    assert!(stats.completions > 3 * (LEN / 4096) as u64, "{stats:?}");
    // More work done than system calls made: multishot requests complete many times each (one
    // accept request for 3 connections, one receive per connection for about 25 buffers).
    assert!(stats.completions > stats.enters, "{stats:?}");
    assert!(stats.submissions < stats.completions, "{stats:?}");
}

/// A ring of 2 buffers of 16 bytes and a client sending 1,000 bytes while the test holds every
/// buffer: the receive ends with NoBuffers (counted); once the buffers are back and the receive
/// re-armed, every byte arrives, in order.
#[test]
fn an_empty_buffer_ring_ends_the_receive_and_loses_nothing() {
    let Some(mut ring) = ring(
        RingConfig {
            entries: 16,
            buffers: 2,
            buffer_size: 16,
        },
        "completion ring ENOBUFS",
    ) else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = payload(9, 1000);
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(&sent).unwrap();
    ring.accept_multishot(listener.as_raw_fd(), 0).unwrap();
    let mut fd = None;
    let mut got = Vec::new();
    let mut held = Vec::new();
    let mut nobufs = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < sent.len() {
        assert!(
            Instant::now() < deadline,
            "{} of {} bytes",
            got.len(),
            sent.len()
        );
        ring.wait(1, Some(Duration::from_millis(100))).unwrap();
        for c in ring.completions().to_vec() {
            match c {
                Completion::Accept { result, .. } => {
                    let f = result.unwrap();
                    fd = Some(f);
                    ring.recv_multishot(f, 1).unwrap();
                }
                Completion::Received { buffer, len, .. } => {
                    got.extend_from_slice(&ring.buffer(buffer)[..len as usize]);
                    held.push(buffer); // not recycled yet: the ring runs dry
                }
                Completion::NoBuffers { .. } => {
                    nobufs += 1;
                    for b in held.drain(..) {
                        ring.recycle(b);
                    }
                    ring.recv_multishot(fd.unwrap(), 1).unwrap();
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(got == sent, "the bytes arrived in order, none lost");
    assert!(nobufs >= 1, "the ring ran dry");
    assert_eq!(ring.stats().enobufs, nobufs as u64);
    close(fd.unwrap());
}

/// The features say what the kernel took, consistently: deferred task running comes only with a
/// single issuer, and never together with cooperative task running.
#[test]
fn features_are_consistent() {
    let Some(ring) = ring(RingConfig::default(), "completion ring features") else {
        return;
    };
    let f = ring.features();
    eprintln!("{f:?}");
    assert!(!f.defer_taskrun || f.single_issuer, "{f:?}");
    assert!(!(f.defer_taskrun && f.coop_taskrun), "{f:?}");
}

/// Bad buffer settings are refused at once, with the rule.
#[test]
fn bad_configs_are_refused() {
    for config in [
        RingConfig {
            buffers: 3,
            ..RingConfig::default()
        },
        RingConfig {
            buffer_size: 0,
            ..RingConfig::default()
        },
    ] {
        let err = CompletionRing::new(&config).err().expect("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    }
}

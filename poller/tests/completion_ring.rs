//! `poller::completion_ring` against real loopback TCP: multishot accept, multishot receive into
//! provided buffers, sends from those buffers (short ones continued), end-of-file, the buffer ring
//! running dry (ENOBUFS) without losing a byte. Every loop is bounded in count and time.
#![cfg(target_os = "linux")]

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use poller::completion_ring::{Completion, CompletionRing, RecvBuf, RingConfig, Socket, MAX_TOKEN};

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

/// One connection of the echo server under test: its socket, whether a send is in flight, and
/// what waits to be sent (a buffer and where in it to start).
struct Conn {
    socket: Socket,
    sending: bool,
    queue: VecDeque<(RecvBuf, u32)>,
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
        while let Some(c) = ring.next_completion() {
            match c {
                Completion::Accept { result, more, .. } => {
                    let socket = result.expect("accepted");
                    if let Some(size) = sndbuf {
                        set_sndbuf(socket.raw_fd().expect("a descriptor"), size);
                    }
                    let token = next_token;
                    next_token += 1;
                    ring.recv_multishot(&socket, token).unwrap();
                    conns.insert(
                        token,
                        Conn {
                            socket,
                            sending: false,
                            queue: VecDeque::new(),
                            done: false,
                        },
                    );
                    if !more {
                        ring.accept_multishot(listener.as_raw_fd(), 0).unwrap();
                    }
                }
                Completion::Received { token, buf, more } => {
                    let conn = conns.get_mut(&token).unwrap();
                    conn.queue.push_back((buf, 0));
                    if !more {
                        ring.recv_multishot(&conn.socket, token).unwrap();
                    }
                    start_send(ring, token, conn);
                }
                Completion::Sent {
                    token,
                    buf,
                    offset,
                    len,
                    result,
                } => {
                    let conn = conns.get_mut(&token).unwrap();
                    conn.sending = false;
                    let sent = result.expect("send");
                    if sent < len {
                        short += 1;
                        conn.queue.push_front((buf, offset + sent));
                    } else {
                        ring.recycle(buf);
                    }
                    start_send(ring, token, conn);
                    if conn.done && !conn.sending {
                        finished += 1;
                        let conn = conns.remove(&token).unwrap();
                        ring.close(conn.socket).unwrap();
                    }
                }
                Completion::Eof { token } => {
                    let conn = conns.get_mut(&token).unwrap();
                    conn.done = true;
                    if !conn.sending {
                        finished += 1;
                        let conn = conns.remove(&token).unwrap();
                        ring.close(conn.socket).unwrap();
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    short
}

fn start_send(ring: &mut CompletionRing, token: u64, conn: &mut Conn) {
    if conn.sending {
        return; // one send per connection at a time: they never race
    }
    if let Some((buf, offset)) = conn.queue.pop_front() {
        let left = buf.len() - offset;
        ring.send(&conn.socket, token, buf, offset, left).unwrap();
        conn.sending = true;
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

/// `count` clients one after another, each sending `len` bytes while it reads their echo (slowly
/// at first, so a small send buffer fills), checking it, then closing its side.
fn clients(addr: SocketAddr, count: usize, len: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for i in 0..count {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let sent = payload(i, len);
            let writer = {
                let mut w = s.try_clone().unwrap();
                let sent = sent.clone();
                std::thread::spawn(move || w.write_all(&sent).unwrap())
            };
            let mut back = vec![0u8; len];
            std::thread::sleep(Duration::from_millis(50));
            s.read_exact(&mut back).unwrap();
            writer.join().unwrap();
            assert!(back == sent, "client {i}: the echo differs");
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
    })
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
            fixed_files: 0,
        },
        "completion ring echo",
    ) else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    const CLIENTS: usize = 3;
    const LEN: usize = 100 * 1024;
    let client = clients(listener.local_addr().unwrap(), CLIENTS, LEN);
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
            fixed_files: 0,
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
        while let Some(c) = ring.next_completion() {
            match c {
                Completion::Accept { result, .. } => {
                    let f = result.unwrap();
                    ring.recv_multishot(&f, 1).unwrap();
                    fd = Some(f);
                }
                Completion::Received { buf, .. } => {
                    got.extend_from_slice(ring.buffer(&buf));
                    held.push(buf); // not recycled yet: the ring runs dry
                }
                Completion::NoBuffers { .. } => {
                    nobufs += 1;
                    for b in held.drain(..) {
                        ring.recycle(b);
                    }
                    ring.recv_multishot(fd.as_ref().unwrap(), 1).unwrap();
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(got == sent, "the bytes arrived in order, none lost");
    assert!(nobufs >= 1, "the ring ran dry");
    assert_eq!(ring.stats().enobufs, nobufs as u64);
    ring.close(fd.unwrap()).unwrap();
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
    // Every kernel with completion mode (6.0) can register the ring's descriptor (5.18).
    assert!(f.registered_ring, "{f:?}");
    assert!(!f.fixed_files, "not asked for: {f:?}");
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

/// The same echo with the connections as fixed files: every byte back in order, every buffer
/// recycled, and no accepted connection has a descriptor.
#[test]
fn echoes_through_fixed_files() {
    let Some(mut ring) = ring(
        RingConfig {
            entries: 64,
            buffers: 64,
            buffer_size: 4096,
            fixed_files: 8,
        },
        "completion ring fixed files",
    ) else {
        return;
    };
    assert!(ring.features().fixed_files);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = clients(listener.local_addr().unwrap(), 3, 100 * 1024);
    echo(&mut ring, &listener, 3, None);
    client.join().unwrap();
    assert_eq!(ring.stats().buffers_in_use, 0, "{:?}", ring.stats());
}

/// Wait for the first completion that `pick` accepts (those before it are dropped), at most 5 s.
fn next<T>(ring: &mut CompletionRing, mut pick: impl FnMut(Completion) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        ring.wait(1, Some(Duration::from_millis(100))).unwrap();
        while let Some(c) = ring.next_completion() {
            if let Some(t) = pick(c) {
                return t;
            }
        }
    }
    panic!("no such completion in 5 s");
}

/// A loopback listener and a client connected to it (reads time out after 5 s).
fn listener_and_client() -> (TcpListener, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    (listener, client)
}

/// The next completion, which must be a received buffer.
fn received(ring: &mut CompletionRing) -> RecvBuf {
    next(ring, |c| match c {
        Completion::Received { buf, .. } => Some(buf),
        other => panic!("unexpected {other:?}"),
    })
}

/// Wait with `timeout` for one completion while another thread wakes the ring after `after`; how
/// long the wait lasted.
fn wait_for_a_wake(ring: &mut CompletionRing, after: Duration, timeout: Duration) -> Duration {
    let waker = ring.waker();
    let wake_later = std::thread::spawn(move || {
        std::thread::sleep(after);
        waker.wake().unwrap();
    });
    let started = Instant::now();
    ring.wait(1, Some(timeout)).unwrap();
    let waited = started.elapsed();
    wake_later.join().unwrap();
    waited
}

/// Hand what is queued (a close) to the kernel and let it run: a close completes unseen.
fn run_queued(ring: &mut CompletionRing) {
    ring.wait(1, Some(Duration::from_millis(50))).unwrap();
    assert!(ring.next_completion().is_none());
}

/// Accept one connection from `listener` on `ring`.
fn accept_one(ring: &mut CompletionRing, listener: &TcpListener) -> Socket {
    ring.accept_multishot(listener.as_raw_fd(), 0).unwrap();
    next(ring, |c| match c {
        Completion::Accept { result, .. } => Some(result.expect("accepted")),
        _ => None,
    })
}

/// A table of 2 fixed files and 3 connections: the third accept fails with ENFILE and ends the
/// multishot accept (the caller re-arms it, after a pause). The kernel had already taken that
/// connection from the backlog, so it closes it: its client sees the end. Closing one frees a
/// slot, and the re-armed accept takes the next connection.
#[test]
fn a_full_fixed_file_table_ends_the_accept_and_a_close_makes_room() {
    let Some(mut ring) = ring(
        RingConfig {
            fixed_files: 2,
            ..RingConfig::default()
        },
        "completion ring fixed-file table full",
    ) else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    ring.accept_multishot(listener.as_raw_fd(), 0).unwrap();
    let mut accepted = Vec::new();
    let ended = next(&mut ring, |c| match c {
        Completion::Accept {
            result: Ok(s),
            more,
            ..
        } => {
            accepted.push(s);
            assert!(more, "an accept that worked goes on");
            None
        }
        Completion::Accept {
            result: Err(errno),
            more,
            ..
        } => Some((errno, more)),
        _ => None,
    });
    assert_eq!(ended, (libc::ENFILE, false), "accepted {accepted:?}");
    assert_eq!(accepted.len(), 2);
    let third = &mut clients[2];
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let end = third.read(&mut [0u8; 1]);
    assert!(
        matches!(&end, Ok(0))
            || end
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the connection the full table could not take is closed: {end:?}"
    );
    ring.close(accepted.remove(0)).unwrap();
    run_queued(&mut ring);
    let _fourth = TcpStream::connect(addr).unwrap();
    ring.accept_multishot(listener.as_raw_fd(), 0).unwrap();
    let third = next(&mut ring, |c| match c {
        Completion::Accept { result, .. } => Some(result),
        _ => None,
    });
    assert!(third.as_ref().is_ok_and(|s| s.is_fixed()), "{third:?}");
}

/// A waker from another thread ends a wait that would otherwise last 10 s; one woken before the
/// wait makes it return at once.
#[test]
fn a_waker_ends_a_wait() {
    let Some(mut ring) = ring(RingConfig::default(), "completion ring waker") else {
        return;
    };
    let waited = wait_for_a_wake(
        &mut ring,
        Duration::from_millis(100),
        Duration::from_secs(10),
    );
    assert!(waited < Duration::from_secs(5), "woken after {waited:?}");
    assert!(
        ring.next_completion().is_none(),
        "a wake is not a completion"
    );

    ring.waker().wake().unwrap();
    let started = Instant::now();
    ring.wait(1, Some(Duration::from_secs(10))).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a wake before the wait was lost"
    );
}

/// A batched wait for 64 completions when only one comes returns it after the batch wait, not
/// after the whole timeout. Skipped (said) on kernels before 6.12.
#[test]
fn a_batched_wait_returns_what_came_once_the_batch_wait_is_over() {
    let Some(mut ring) = ring(RingConfig::default(), "completion ring batched wait") else {
        return;
    };
    if !ring.features().min_wait {
        let err = ring
            .wait_batched(64, Duration::from_millis(20), None)
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
        return skip("completion ring batched wait", &err.to_string());
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let socket = accept_one(&mut ring, &listener);
    ring.recv_multishot(&socket, 1).unwrap();
    client.write_all(b"one").unwrap();
    let started = Instant::now();
    let mut got = 0;
    while got == 0 && started.elapsed() < Duration::from_secs(5) {
        got = ring
            .wait_batched(64, Duration::from_millis(20), Some(Duration::from_secs(10)))
            .unwrap();
    }
    let waited = started.elapsed();
    let first = ring.next_completion();
    assert!(
        matches!(&first, Some(Completion::Received { buf, .. }) if buf.len() == 3),
        "{first:?}"
    );
    assert!(waited < Duration::from_secs(5), "returned after {waited:?}");
}

/// A peer that half-closes: its bytes arrive, then end-of-file, and the echo sent after that
/// still reaches it.
#[test]
fn a_half_closed_peer_gets_its_echo_after_end_of_file() {
    let Some(mut ring) = ring(RingConfig::default(), "completion ring half-close") else {
        return;
    };
    let (listener, mut client) = listener_and_client();
    let socket = accept_one(&mut ring, &listener);
    ring.recv_multishot(&socket, 1).unwrap();
    client.write_all(b"hello").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut held = None;
    next(&mut ring, |c| match c {
        Completion::Received { buf, .. } => {
            held = Some(buf);
            None
        }
        Completion::Eof { .. } => Some(()),
        other => panic!("unexpected {other:?}"),
    });
    let buf = held.expect("the bytes came before end-of-file");
    assert_eq!(ring.buffer(&buf), b"hello");
    let len = buf.len();
    ring.send(&socket, 1, buf, 0, len).unwrap();
    let (sent, buf) = next(&mut ring, |c| match c {
        Completion::Sent { result, buf, .. } => Some((result, buf)),
        _ => None,
    });
    assert_eq!(sent, Ok(5));
    ring.recycle(buf);
    ring.close(socket).unwrap();
    run_queued(&mut ring);
    let mut back = Vec::new();
    client.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"hello");
}

/// A peer that resets its connection ends the receive with ECONNRESET (not end-of-file).
#[test]
fn a_reset_ends_the_receive_with_econnreset() {
    let Some(mut ring) = ring(RingConfig::default(), "completion ring reset") else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let socket = accept_one(&mut ring, &listener);
    ring.recv_multishot(&socket, 1).unwrap();
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a live linger struct whose size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            client.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(client); // with a zero linger: a reset
    let errno = next(&mut ring, |c| match c {
        Completion::RecvFailed { errno, .. } => Some(errno),
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(errno, libc::ECONNRESET);
    ring.close(socket).unwrap();
}

/// Closing a socket whose multishot receive is in flight cancels the receive (its last completion
/// is ECANCELED) and really closes the connection: the peer sees the end. (The request holds its
/// own reference to the socket: close(2) alone left it open and receiving.)
#[test]
fn closing_a_socket_cancels_its_receive_and_the_peer_sees_the_end() {
    for fixed_files in [0, 8] {
        let config = RingConfig {
            fixed_files,
            ..RingConfig::default()
        };
        let Some(mut ring) = ring(config, "completion ring close with a receive in flight") else {
            return;
        };
        let (listener, mut client) = listener_and_client();
        let socket = accept_one(&mut ring, &listener);
        ring.recv_multishot(&socket, 7).unwrap();
        ring.close(socket).unwrap();
        let errno = next(&mut ring, |c| match c {
            Completion::RecvFailed { token: 7, errno } => Some(errno),
            other => panic!("fixed files {fixed_files}: unexpected {other:?}"),
        });
        assert_eq!(errno, libc::ECANCELED, "fixed files {fixed_files}");
        let end = client.read(&mut [0u8; 1]);
        assert!(
            matches!(end, Ok(0)),
            "fixed files {fixed_files}: the peer sees the close: {end:?}"
        );
    }
}

/// A token of 56 bits (the most a request carries) comes back whole in every completion; a
/// longer one is refused, never cut short.
#[test]
fn a_token_of_56_bits_comes_back_whole_and_a_longer_one_is_refused() {
    let Some(mut ring) = ring(RingConfig::default(), "completion ring tokens") else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let socket = accept_one(&mut ring, &listener);
    for token in [MAX_TOKEN + 1, u64::MAX, 1 << 56] {
        let err = ring.recv_multishot(&socket, token).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{token:#x}");
        let err = ring.cancel_recv(token).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{token:#x}");
    }
    ring.recv_multishot(&socket, MAX_TOKEN).unwrap();
    client.write_all(b"x").unwrap();
    let (token, buf) = next(&mut ring, |c| match c {
        Completion::Received { token, buf, .. } => Some((token, buf)),
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(token, MAX_TOKEN);
    let err = ring.send(&socket, MAX_TOKEN + 1, buf, 0, 1).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(ring.stats().buffers_in_use, 0, "a refused send recycles");
    client.write_all(b"y").unwrap();
    let buf = received(&mut ring);
    ring.send(&socket, MAX_TOKEN, buf, 0, 1).unwrap();
    let (token, buf) = next(&mut ring, |c| match c {
        Completion::Sent { token, buf, .. } => Some((token, buf)),
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(token, MAX_TOKEN);
    ring.recycle(buf);
    ring.close(socket).unwrap();
}

/// A send of bytes past what the buffer received is refused, and the buffer goes back to the
/// ring (it is not lost).
#[test]
fn a_send_past_the_received_bytes_is_refused_and_the_buffer_goes_back() {
    let Some(mut ring) = ring(RingConfig::default(), "completion ring send bounds") else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let socket = accept_one(&mut ring, &listener);
    ring.recv_multishot(&socket, 1).unwrap();
    client.write_all(b"abc").unwrap();
    let buf = received(&mut ring);
    assert_eq!(ring.stats().buffers_in_use, 1);
    let err = ring.send(&socket, 1, buf, 2, 2).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    assert_eq!(ring.stats().buffers_in_use, 0);
    ring.close(socket).unwrap();
}

/// A buffer is its ring's: handing it to another ring panics instead of giving that ring a buffer
/// id its kernel side may already have handed out.
#[test]
#[should_panic(expected = "a buffer of another ring")]
fn a_buffer_of_another_ring_is_refused() {
    let (Some(mut one), Some(mut other)) = (
        ring(RingConfig::default(), "completion ring ownership"),
        ring(RingConfig::default(), "completion ring ownership"),
    ) else {
        panic!("a buffer of another ring: skipped: no completion ring here");
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let socket = accept_one(&mut one, &listener);
    one.recv_multishot(&socket, 1).unwrap();
    client.write_all(b"x").unwrap();
    let buf = received(&mut one);
    other.recycle(buf);
}

/// Connections the kernel accepts while a dropped ring drains its requests are closed, not
/// leaked: the peer sees the end while the listener is still open.
#[test]
fn dropping_the_ring_closes_what_it_accepted_meanwhile() {
    let Some(mut ring) = ring(RingConfig::default(), "completion ring drop") else {
        return;
    };
    let (listener, mut client) = listener_and_client();
    // Queued, not submitted: the drop's cancel goes with it, and the connection waiting in the
    // backlog is accepted in that same submit, before the accept is cancelled.
    ring.accept_multishot(listener.as_raw_fd(), 0).unwrap();
    drop(ring);
    let end = client.read(&mut [0u8; 1]);
    assert!(
        matches!(end, Ok(0)),
        "the accepted connection is closed: {end:?}"
    );
    drop(listener);
}

/// A timeout too long for a `timespec` waits (here until a waker ends it) instead of wrapping to a
/// negative one that returns at once.
#[test]
fn a_huge_timeout_waits() {
    let Some(mut ring) = ring(RingConfig::default(), "completion ring huge timeout") else {
        return;
    };
    let waited = wait_for_a_wake(&mut ring, Duration::from_millis(300), Duration::MAX);
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(5),
        "waited {waited:?} for a wake after 300 ms"
    );
}

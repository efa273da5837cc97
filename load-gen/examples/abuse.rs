//! The abuse mix for a soak (scripts/soak --abuse): clients that misbehave beside ones that
//! behave, against an echo server on loopback, for a bounded time. Each kind runs on threads of its
//! own, one connection at a time per thread, again and again:
//! - `half_close`: writes 64 KiB, shuts its side, reads the echo to the end; every byte checked.
//! - `big`: writes a 1 MiB message while it reads the echo back; every byte checked.
//! - `churn`: connects, sends 64 bytes, reads them back, closes, at once again; every byte checked
//!   when served (at the server's `--max-conns` a connection may wait: counted as unserved).
//! - `slow_reader`: writes up to 4 MiB without reading, then reads 4 KiB every 50 ms for 2 s; what
//!   it reads is checked, the rest is never read.
//! - `reset`: writes up to 256 KiB without reading, then resets the connection (zero linger).
//!
//! Prints one JSON object: per kind, runs, bytes checked, mismatches, and failures (a
//! well-behaved client that did not get its echo back whole in time). Exit status 1 when a
//! well-behaved client failed or any byte differed, 2 on bad arguments.
//!
//! `cargo run --release -p load-gen --example abuse -- ADDR SECONDS`

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts of one kind of client.
#[derive(Default)]
struct Tally {
    runs: AtomicU64,
    bytes_checked: AtomicU64,
    mismatches: AtomicU64,
    failures: AtomicU64,
    unserved: AtomicU64,
}

/// The byte at `pos` of what a client of `seed` sends.
fn byte(seed: u64, pos: u64) -> u8 {
    (pos.wrapping_mul(31) ^ seed.wrapping_mul(0x9e37_79b9)) as u8
}

fn message(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|p| byte(seed, p)).collect()
}

/// Compare `got` with what `seed` sent from `from` on; mismatches counted.
fn check(t: &Tally, seed: u64, from: u64, got: &[u8]) {
    let bad = got
        .iter()
        .enumerate()
        .any(|(i, b)| *b != byte(seed, from + i as u64));
    t.mismatches.fetch_add(u64::from(bad), Ordering::Relaxed);
    t.bytes_checked
        .fetch_add(got.len() as u64, Ordering::Relaxed);
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// Send `len` bytes while reading the echo back; Ok when all of it came back.
fn echo_whole(t: &Tally, addr: SocketAddr, seed: u64, len: usize, half_close: bool) -> bool {
    let Ok(mut s) = connect(addr) else {
        return false;
    };
    let Ok(mut w) = s.try_clone() else {
        return false;
    };
    let out = message(seed, len);
    let writer = std::thread::spawn(move || {
        let ok = w.write_all(&out).is_ok();
        ok && (!half_close || w.shutdown(Shutdown::Write).is_ok())
    });
    let mut got = vec![0u8; len];
    let read = s.read_exact(&mut got).is_ok();
    let written = writer.join().unwrap_or(false);
    if read {
        check(t, seed, 0, &got);
    }
    let end = !half_close || matches!(s.read(&mut [0u8; 1]), Ok(0));
    read && written && end
}

fn churn(t: &Tally, addr: SocketAddr, seed: u64) -> bool {
    let Ok(mut s) = connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let out = message(seed, 64);
    let mut got = [0u8; 64];
    match s.write_all(&out).and_then(|_| s.read_exact(&mut got)) {
        Ok(()) => {
            check(t, seed, 0, &got);
            true
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            t.unserved.fetch_add(1, Ordering::Relaxed);
            true // held at the server's limit: not a failure
        }
        Err(_) => false,
    }
}

/// Write up to `most` bytes without reading (until the socket would block); the bytes written.
fn stuff(s: &mut TcpStream, seed: u64, most: usize) -> usize {
    let _ = s.set_nonblocking(true);
    let out = message(seed, most);
    let mut done = 0;
    let deadline = Instant::now() + Duration::from_secs(2);
    while done < most && Instant::now() < deadline {
        match s.write(&out[done..]) {
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => break,
        }
    }
    let _ = s.set_nonblocking(false);
    done
}

fn slow_reader(t: &Tally, addr: SocketAddr, seed: u64) -> bool {
    let Ok(mut s) = connect(addr) else {
        return false;
    };
    stuff(&mut s, seed, 4 << 20);
    let mut at = 0u64;
    let mut buf = [0u8; 4096];
    for _ in 0..40 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => {
                check(t, seed, at, &buf[..n]);
                at += n as u64;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

fn reset(addr: SocketAddr, seed: u64) -> bool {
    let Ok(mut s) = connect(addr) else {
        return false;
    };
    stuff(&mut s, seed, 256 << 10);
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .is_ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let parsed = (args.len() == 3)
        .then(|| {
            Some((
                args[1].parse::<SocketAddr>().ok()?,
                args[2].parse::<u64>().ok()?,
            ))
        })
        .flatten();
    let Some((addr, seconds)) =
        parsed.filter(|(a, s)| a.ip().is_loopback() && (1..=86_400).contains(s))
    else {
        eprintln!("usage: abuse LOOPBACK_ADDR:PORT SECONDS (1 to 86400)");
        std::process::exit(2);
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    // Kind, threads, whether its clients behave (their failures count).
    let kinds: [(&str, usize, bool); 5] = [
        ("half_close", 2, true),
        ("big", 1, true),
        ("churn", 2, true),
        ("slow_reader", 2, false),
        ("reset", 2, false),
    ];
    let tallies: Vec<Arc<Tally>> = kinds.iter().map(|_| Arc::default()).collect();
    let mut threads = Vec::new();
    for (k, &(kind, n, _)) in kinds.iter().enumerate() {
        for i in 0..n {
            let t = tallies[k].clone();
            threads.push(std::thread::spawn(move || {
                let mut run = 0u64;
                while Instant::now() < deadline {
                    let seed = (k as u64) << 48 | (i as u64) << 32 | run;
                    let ok = match kind {
                        "half_close" => echo_whole(&t, addr, seed, 64 << 10, true),
                        "big" => echo_whole(&t, addr, seed, 1 << 20, false),
                        "churn" => churn(&t, addr, seed),
                        "slow_reader" => slow_reader(&t, addr, seed),
                        _ => reset(addr, seed),
                    };
                    t.runs.fetch_add(1, Ordering::Relaxed);
                    t.failures.fetch_add(u64::from(!ok), Ordering::Relaxed);
                    run += 1;
                    if kind == "reset" {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }));
        }
    }
    for t in threads {
        let _ = t.join();
    }
    let mut bad = false;
    let mut fields = Vec::new();
    for ((kind, _, behaves), t) in kinds.iter().zip(&tallies) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (failures, mismatches) = (get(&t.failures), get(&t.mismatches));
        bad |= mismatches > 0 || (*behaves && failures > 0);
        fields.push(format!(
            "\"{kind}\":{{\"runs\":{},\"bytes_checked\":{},\"mismatches\":{mismatches},\"failures\":{failures},\"unserved\":{},\"behaves\":{behaves}}}",
            get(&t.runs),
            get(&t.bytes_checked),
            get(&t.unserved),
        ));
    }
    println!("{{{}}}", fields.join(","));
    std::process::exit(i32::from(bad));
}

//! `--backend io_uring_completion` under abuse, end to end on 127.0.0.1: a backlog that stops a
//! connection's receive, clients that never read and then reset, and connection churn at a tiny
//! `--max-conns`. Each test runs the server plain and with `--fixed-files` (the two at once where
//! memory allows, so a test stays within its time), and skips, saying why, where completion mode
//! cannot run. Every loop is bounded in count and time.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

/// The two ways to run the completion server: plain descriptors, and fixed files.
const OPTIONS: [&[&str]; 2] = [&[], &["--fixed-files"]];

/// Run `variant` for each of [`OPTIONS`], with the label it is reported under: at once, each in
/// its own thread, or one after the other (a server that takes gigabytes); fail with every
/// variant's failure (a panic in one is one of them).
fn for_each_variant(at_once: bool, variant: impl Fn(&[&str], &str) -> Result<(), String> + Sync) {
    let label = |options: &[&str]| {
        format!("io_uring_completion {}", options.join(" "))
            .trim_end()
            .to_owned()
    };
    let failure = |label: String, run: std::thread::Result<Result<(), String>>| match run {
        Ok(Ok(())) => None,
        Ok(Err(why)) => Some(format!("{label}: {why}")),
        Err(panic) => Some(format!(
            "{label}: panicked: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("?")
        )),
    };
    let failures: Vec<String> = std::thread::scope(|s| {
        let mut runs = Vec::new();
        let mut failures = Vec::new();
        for options in OPTIONS {
            let (name, variant) = (label(options), &variant);
            let run = s.spawn(move || variant(options, &label(options)));
            if at_once {
                runs.push((name, run));
            } else {
                failures.extend(failure(name, run.join()));
            }
        }
        for (label, run) in runs {
            failures.extend(failure(label, run.join()));
        }
        failures
    });
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The server's arguments: completion mode, `args`, then the variant's `options`.
fn completion_args<'a>(args: &[&'a str], options: &[&'a str]) -> Vec<&'a str> {
    let mut out = vec!["--backend", "io_uring_completion"];
    out.extend_from_slice(args);
    out.extend_from_slice(options);
    out
}

/// Sockets in the server's descriptor table (`/proc/<pid>/fd` entries that link to `socket:`).
/// Fixed files are not in it: only the plain server's connections are counted.
fn socket_fds(server: &Server) -> usize {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{}/fd", server.child.id())) else {
        return 0;
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// Connect `n` fresh clients, send each a small message, and count those whose echo comes back
/// by `deadline` (a client held past `--max-conns` is connected, but not echoed).
fn served_by(server: &Server, n: usize, deadline: Instant) -> usize {
    let clients: Vec<TcpStream> = (0..n)
        .filter_map(|_| TcpStream::connect_timeout(&server.addr, Duration::from_secs(1)).ok())
        .collect();
    for (i, c) in clients.iter().enumerate() {
        let _ = (&*c).write_all(&(i as u64).to_le_bytes());
    }
    clients
        .iter()
        .enumerate()
        .filter(|(i, c)| {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = c.set_read_timeout(Some(left.max(Duration::from_millis(1))));
            let mut back = [0u8; 8];
            (&**c).read_exact(&mut back).is_ok() && u64::from_le_bytes(back) == *i as u64
        })
        .count()
}

/// A receive stopped because more than 64 KiB waited to be echoed is resumed once the echo
/// drains. With `--buf-size 1MiB` one receive can take more than 64 KiB at once; when the echo
/// drains before the receive's cancel has completed (the client still writing), the resume,
/// looked for only when a send completes, never comes and no request is left on the connection:
/// it hangs with most of its bytes unechoed (and stays open after its client goes). The race is
/// not hit on every connection: 256 KiB never showed it here (0 of 140 connections), 1 MiB did on
/// about one in ten, after 128-195 KB had come back. So up to 64 connections in turn (5 s at
/// most) each send 1 MiB of a known pattern while reading, and must get all of it back byte for
/// byte, with no 3 s pause.
#[test]
fn a_stopped_receive_resumes_with_a_large_buffer_size() {
    if !completion_available("a stopped receive resumes (--buf-size 1MiB)") {
        return;
    }
    const LEN: usize = 1 << 20;
    const CONNECTIONS: usize = 64;
    const BUDGET: Duration = Duration::from_secs(5);
    // Loopback echoes 1 MiB in milliseconds: the limits only end a hung connection.
    const STALL: Duration = Duration::from_secs(3);
    const WITHIN: Duration = Duration::from_secs(5);
    let data = payload(LEN, 0xab);
    // One after the other: a loop's buffers at 1 MiB are 4 GiB (4,096 of them), zeroed at start.
    for_each_variant(false, |options, label| {
        let args = completion_args(&["--threads", "1", "--buf-size", "1MiB"], options);
        let server = Server::start(&args, None);
        let start = Instant::now();
        let mut done = 0;
        for n in 1..=CONNECTIONS {
            if start.elapsed() > BUDGET {
                break;
            }
            let stream = server.connect();
            stream.set_read_timeout(Some(STALL)).unwrap();
            stream.set_write_timeout(Some(STALL)).unwrap();
            let writer = stream.try_clone().unwrap();
            let mut back = vec![0u8; LEN];
            let began = Instant::now();
            let (got, error, wrote) = std::thread::scope(|s| {
                let wrote = s.spawn(|| (&writer).write_all(&data));
                let mut got = 0;
                let mut error = None;
                while got < LEN && began.elapsed() < WITHIN {
                    match (&stream).read(&mut back[got..]) {
                        Ok(0) => {
                            error = Some("end of file".to_owned());
                            break;
                        }
                        Ok(n) => got += n,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            error = Some(format!("no byte for {STALL:?}"));
                            break;
                        }
                        Err(e) => {
                            error = Some(e.to_string());
                            break;
                        }
                    }
                }
                // Unblock a writer the server stopped reading from.
                let _ = stream.shutdown(Shutdown::Both);
                (got, error, wrote.join().unwrap())
            });
            if got < LEN {
                return Err(format!(
                    "connection {n} of {CONNECTIONS}: {got} of {LEN} bytes echoed in {:?} ({}); \
                     the client's write: {}",
                    began.elapsed(),
                    error.unwrap_or_else(|| "time limit".into()),
                    match wrote {
                        Ok(()) => "complete".to_owned(),
                        Err(e) => e.to_string(),
                    }
                ));
            }
            if let Some(at) = back.iter().zip(&data).position(|(b, d)| b != d) {
                return Err(format!(
                    "connection {n}: every byte came back, but not as sent: first difference at \
                     byte {at}"
                ));
            }
            done = n;
        }
        let took = start.elapsed();
        let (status, _, json) = server.stop();
        if !status.success() {
            return Err(format!("exit status {status}"));
        }
        eprintln!(
            "{label}: {done} x {LEN} B echoed in {took:?}; totals {}",
            json["totals"]
        );
        Ok(())
    });
}

/// Clients that write and never read fill their echo until the server stops receiving from them;
/// then half reset (SO_LINGER 0) and half close. Each of those connections must be closed by the
/// server: its descriptor (plain server: `/proc/<pid>/fd` back to the count before the clients)
/// and its `--max-conns` slot (40 fresh clients are all echoed; with one slot leaked, one of them
/// would wait unserved). A connection left with no request armed (a stopped receive and nothing
/// to send) would never learn that its client went, and keep both.
#[test]
fn resets_of_clients_that_never_read_leave_no_descriptor_or_slot() {
    if !completion_available("resets of clients that never read") {
        return;
    }
    const CLIENTS: usize = 40;
    const WRITE: usize = 256 * 1024;
    if !have_descriptors(2 * 2 * CLIENTS as u64, "resets of clients that never read") {
        return;
    }
    for_each_variant(true, |options, label| {
        let fixed = options.contains(&"--fixed-files");
        let max = CLIENTS.to_string();
        let args = completion_args(&["--threads", "1", "--max-conns", &max], options);
        let server = Server::start(&args, None);
        let before = socket_fds(&server);
        let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| server.connect()).collect();
        for c in &clients {
            c.set_nonblocking(true).unwrap();
        }
        // Write until WRITE bytes are gone or every socket would block (the server stopped
        // receiving): at most 200 rounds and 2 s.
        let data = payload(WRITE, 0xcd);
        let mut written = [0usize; CLIENTS];
        let start = Instant::now();
        for _round in 0..200 {
            let mut progressed = false;
            for (c, w) in clients.iter().zip(&mut written) {
                while *w < WRITE {
                    match (&*c).write(&data[*w..]) {
                        Ok(n) if n > 0 => {
                            *w += n;
                            progressed = true;
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        _ => break, // would block (or an error: the reset below ends it anyway)
                    }
                }
            }
            if !progressed
                || written.iter().all(|&w| w == WRITE)
                || start.elapsed() > Duration::from_secs(2)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let total: usize = written.iter().sum();
        let mut failures = Vec::new();
        let mut clients = clients;
        // Half reset: SO_LINGER 0 makes close send RST. The other half closes a while later (with
        // their echo unread, the kernel resets those too; what matters is that they go while the
        // server is not reading from them).
        let closers = clients.split_off(CLIENTS / 2);
        for c in clients {
            socket2::SockRef::from(&c)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        drop(closers);
        let gone = Instant::now();
        // (a) Every connection's descriptor is closed (plain server: fixed files are not
        // descriptors): back to the count before the clients, polled every 100 ms for 8 s.
        if !fixed {
            let mut now = socket_fds(&server);
            for _ in 0..80 {
                if now <= before {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
                now = socket_fds(&server);
            }
            if now > before {
                failures.push(format!(
                    "{now} socket descriptors {:?} after the clients went, {before} before they \
                     came",
                    gone.elapsed()
                ));
            }
        }
        // (b) Every slot is free again: 40 fresh clients are all served (the plain server has
        // had its 8 s above; the fixed-files one gets them here).
        let within = if fixed { 10 } else { 4 };
        let served = served_by(
            &server,
            CLIENTS,
            Instant::now() + Duration::from_secs(within),
        );
        if served < CLIENTS {
            failures.push(format!(
                "{served} of {CLIENTS} fresh clients echoed within {within} s, {:?} after the \
                 earlier ones went (--max-conns {CLIENTS})",
                gone.elapsed()
            ));
        }
        eprintln!(
            "{label}: {CLIENTS} clients wrote {total} B ({} to {} each) without reading",
            written.iter().min().unwrap(),
            written.iter().max().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200)); // the fresh clients' closes land
        let (status, _, json) = server.stop();
        let totals = &json["totals"];
        eprintln!("{label}: totals {totals}");
        if !status.success() {
            failures.push(format!("exit status {status}"));
        }
        // The books balance: every accepted connection was closed once. (Shutdown closes what is
        // still open, so this holds with a leak too: (a) and (b) are what catch one.)
        if totals["accepted"] != totals["closed"] {
            failures.push(format!(
                "accepted {} but closed {}",
                totals["accepted"], totals["closed"]
            ));
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    });
}

/// Four threads connect, echo 8 bytes (100 ms read timeout) and close, as fast as they can for
/// 3 s, at `--max-conns 2`: the connections past the limit wait in the backlog or are held by the
/// server, and may time out and go before they are served. The server's sockets stay bounded
/// meanwhile (plain server), it sleeps once the churn stops (under 10% of a core over 2 s idle: a
/// loop spinning on a stale accept or receive is near 100%), and a new client is still echoed
/// within 5 s.
#[test]
fn max_conns_two_under_fast_churn_stays_bounded_and_idles() {
    if !completion_available("max-conns 2 under fast churn") {
        return;
    }
    const THREADS: usize = 4;
    const CHURN: Duration = Duration::from_secs(3);
    // The listener, the 2 connections the limit allows, and the connections accepted past it
    // and held for a slot: a burst of what waited in the backlog when accepting resumed, a few
    // with 4 clients (each has one connection open at a time, plus the timed-out ones the server
    // has not yet seen go). 64 is ample slack for those; the churn makes thousands of
    // connections, so a server that kept even one in fifty would pass it.
    const HELD: usize = 64;
    for_each_variant(true, |options, label| {
        let fixed = options.contains(&"--fixed-files");
        let args = completion_args(&["--threads", "1", "--max-conns", "2"], options);
        let server = Server::start(&args, None);
        // The listener and the signal handler's socket pair.
        let before = socket_fds(&server);
        let bound = before + 2 + HELD;
        let stop = AtomicBool::new(false);
        let mut most = before;
        let start = Instant::now();
        let outcomes: Vec<(usize, usize, usize)> = std::thread::scope(|s| {
            let clients: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (server, stop) = (&server, &stop);
                    s.spawn(move || {
                        // (echoed, not echoed, not connected)
                        let mut out = (0, 0, 0);
                        for i in 0..20_000u64 {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                            let Ok(c) = TcpStream::connect_timeout(
                                &server.addr,
                                Duration::from_millis(200),
                            ) else {
                                out.2 += 1;
                                continue;
                            };
                            let _ = c.set_read_timeout(Some(Duration::from_millis(100)));
                            let _ = c.set_write_timeout(Some(Duration::from_millis(100)));
                            let message = ((t as u64) << 32 | i).to_le_bytes();
                            let mut back = [0u8; 8];
                            let echoed = (&c).write_all(&message).is_ok()
                                && (&c).read_exact(&mut back).is_ok()
                                && back == message;
                            if echoed {
                                out.0 += 1;
                            } else {
                                out.1 += 1;
                            }
                        }
                        out
                    })
                })
                .collect();
            // Sample the server's sockets every 20 ms while the clients churn.
            while start.elapsed() < CHURN {
                if !fixed {
                    most = most.max(socket_fds(&server));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, Ordering::Relaxed);
            clients.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let (echoed, unechoed, unconnected) = outcomes
            .iter()
            .fold((0, 0, 0), |a, o| (a.0 + o.0, a.1 + o.1, a.2 + o.2));
        let mut failures = Vec::new();
        std::thread::sleep(Duration::from_millis(500));
        let cpu = server.cpu_time();
        let idle_from = Instant::now();
        std::thread::sleep(Duration::from_secs(2));
        let spent = server.cpu_time() - cpu;
        let idle = idle_from.elapsed();
        let after = socket_fds(&server);
        if !fixed {
            most = most.max(after);
        }
        eprintln!(
            "{label}: {echoed} echoed, {unechoed} not echoed, {unconnected} not connected in \
             {CHURN:?}; sockets: {before} before, at most {most} during, {after} after 2.5 s idle; \
             CPU {spent:?} in {idle:?} idle"
        );
        if !fixed && most > bound {
            failures.push(format!(
                "up to {most} sockets open during the churn, bound {bound} ({before} before, \
                 {after} after 2.5 s idle)"
            ));
        }
        // 10% of one core: a sleeping loop spends next to nothing, a spinning one all it gets.
        if spent.as_secs_f64() > 0.10 * idle.as_secs_f64() {
            failures.push(format!(
                "idle after the churn, the server used {spent:?} of CPU in {idle:?}"
            ));
        }
        if served_by(&server, 1, Instant::now() + Duration::from_secs(5)) != 1 {
            failures.push("a new client was not echoed within 5 s after the churn".into());
        }
        let (status, _, json) = server.stop();
        eprintln!("{label}: totals {}", json["totals"]);
        if !status.success() {
            failures.push(format!("exit status {status}"));
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    });
}

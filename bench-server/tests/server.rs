//! bench-server end to end: the real binary on 127.0.0.1, port 0, for every backend, trigger and
//! accept strategy it supports, plus the faults a benchmark server must survive.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use poller::BackendKind;

const SIZES: [usize; 6] = [1, 64, 1000, 16 * 1024, 65_543, 1 << 20];

/// Several connections echo random payloads from 1 B to 1 MiB at once, one half-closes, and the
/// server stops within a second of SIGTERM with a complete stats file.
fn echo_session(args: &[&str], label: &str) {
    let server = Server::start(args, None);
    const CONNS: usize = 8;
    std::thread::scope(|s| {
        for c in 0..CONNS {
            let server = &server;
            s.spawn(move || {
                let stream = server.connect();
                for (i, &len) in SIZES.iter().enumerate() {
                    let data = payload(len, (c * 100 + i) as u64);
                    assert!(
                        echo(&stream, &data),
                        "{label}: conn {c}: {len} B echoed byte for byte"
                    );
                }
            });
        }
    });
    let hc = server.connect();
    match half_close(&hc, b"last words") {
        Ok(back) => assert_eq!(back, b"last words", "{label}: half-close echoes, then EOF"),
        Err(e) => panic!("{label}: half-close: {e}"),
    }
    let (status, took, json) = server.stop();
    assert!(status.success(), "{label}: exit status {status}");
    assert!(
        took < Duration::from_secs(1),
        "{label}: stopped in {took:?}"
    );
    let sent = (CONNS * SIZES.iter().sum::<usize>() + b"last words".len()) as u64;
    let totals = &json["totals"];
    assert_eq!(json["schema"], "pollbench.bench-server.stats/1");
    assert_eq!(totals["bytes_in"], sent, "{label}: {json}");
    assert_eq!(totals["bytes_out"], sent, "{label}: {json}");
    assert_eq!(totals["accepted"], (CONNS + 1) as u64, "{label}");
    assert_eq!(totals["rejected"], 0, "{label}");
    // `backend` is the plain name; `mechanism` says when kqueue is libkqueue (Linux) rather than
    // the kernel's.
    let backend = json["config"]["backend"].as_str().unwrap().to_owned();
    let mechanism = if backend == "kqueue" && cfg!(target_os = "linux") {
        "kqueue (libkqueue)".to_owned()
    } else {
        backend
    };
    assert_eq!(
        json["config"]["mechanism"],
        mechanism.as_str(),
        "{label}: {json}"
    );
    check_cpu_and_calls(&json, label);
}

/// What every document must say of the process's CPU time and of the server's calls: CPU time was
/// spent; the event loops and the threads baseline count their calls (every read, write and wait
/// is one, and so is every registration and every call that would block), tokio does not (`null`);
/// an event loop registered each connection it served. Returns the totals' call counts, if any.
fn check_cpu_and_calls(json: &serde_json::Value, label: &str) -> Option<Calls> {
    let cpu = &json["cpu"];
    let seconds = |f: &str| {
        cpu[f]
            .as_f64()
            .unwrap_or_else(|| panic!("{label}: cpu.{f} in {json}"))
    };
    assert!(
        seconds("user_s") >= 0.0 && seconds("system_s") >= 0.0,
        "{label}: {json}"
    );
    assert!(
        seconds("user_s") + seconds("system_s") > 0.0,
        "{label}: the server used CPU time: {json}"
    );
    assert!(
        cpu["voluntary_switches"].as_u64().unwrap() > 0,
        "{label}: its threads blocked: {json}"
    );
    assert!(
        cpu["involuntary_switches"].as_u64().is_some(),
        "{label}: {json}"
    );
    let totals = &json["totals"];
    let field = |name: &str| {
        totals[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{label}: totals.{name} in {json}"))
    };
    let backend = json["config"]["backend"].as_str().unwrap();
    if backend == "tokio" {
        for name in ["syscalls", "registrations", "would_block"] {
            assert!(
                totals[name].is_null(),
                "{label}: {name} null for tokio: {json}"
            );
            for t in json["threads"].as_array().unwrap() {
                assert!(t[name].is_null(), "{label}: {name} null for tokio: {json}");
            }
        }
        return None;
    }
    let calls = Calls {
        syscalls: field("syscalls"),
        registrations: field("registrations"),
        would_block: field("would_block"),
    };
    for name in ["ring_submissions", "ring_enobufs", "ring_buffers_in_use"] {
        assert_eq!(
            totals[name].is_u64(),
            backend == "io_uring_completion",
            "{label}: {name} is a completion loop's alone: {json}"
        );
    }
    let ring = &json["config"]["ring"];
    assert_eq!(
        ring.is_object(),
        backend == "io_uring_completion",
        "{label}: a ring setup is completion mode's alone: {json}"
    );
    if backend == "io_uring_completion" {
        // What the kernel took is said: here (Linux 6.0+) the ring's descriptor is always
        // registered, and fixed files are there when asked for.
        let features: Vec<&str> = ring["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert!(features.contains(&"registered_ring"), "{label}: {json}");
        assert_eq!(
            features.contains(&"fixed_files"),
            ring["fixed_files"] == true,
            "{label}: {json}"
        );
        // Every accepted connection took at least a receive request.
        assert!(
            field("ring_submissions") > field("accepted"),
            "{label}: {json}"
        );
        // The kernel receives and sends: the loop's calls are its io_uring_enter (one per wait)
        // and the close of each connection it closed or turned away, nothing else.
        assert_eq!(calls.registrations, 0, "{label}: {json}");
        assert_eq!(calls.would_block, 0, "{label}: {json}");
        assert!(
            calls.syscalls >= field("waits") + field("rejected")
                && calls.syscalls <= field("waits") + field("closed") + field("rejected"),
            "{label}: syscalls are the waits and closes: {json}"
        );
        return Some(calls);
    }
    // The `acceptor` strategy's thread accepts and wakes a loop for each connection, and the loop
    // that takes it counts those two calls too.
    let accepts = if json["config"]["accept"] == "acceptor" {
        2 * field("accepted")
    } else {
        field("accepted")
    };
    let counted = field("reads") + field("writes") + field("waits");
    assert!(
        calls.syscalls >= counted + calls.registrations + calls.would_block + accepts,
        "{label}: syscalls include every read, write, wait, registration, accept and call that \
         would block: {json}"
    );
    if backend == "threads" {
        assert_eq!(calls.registrations, 0, "{label}: no poller: {json}");
        assert_eq!(calls.would_block, 0, "{label}: blocking sockets: {json}");
    } else {
        assert!(
            calls.registrations >= field("accepted"),
            "{label}: every connection served was registered: {json}"
        );
    }
    Some(calls)
}

/// The loops' calls other than accepts, from a document's totals: reads, writes and waits, and
/// registrations and calls that would block.
fn loop_calls(json: &serde_json::Value, calls: &Calls) -> u64 {
    let field = |name: &str| json["totals"][name].as_u64().unwrap();
    field("reads") + field("writes") + field("waits") + calls.registrations + calls.would_block
}

/// A document's call counts (its totals).
#[derive(Debug)]
struct Calls {
    syscalls: u64,
    registrations: u64,
    would_block: u64,
}

#[test]
fn every_backend_trigger_and_accept_strategy_echoes() {
    let mut sessions: Vec<Vec<String>> = Vec::new();
    for (kind, caps) in backends() {
        for (trigger, accept) in combinations(&caps) {
            sessions.push(
                [
                    "--backend",
                    kind.name(),
                    "--trigger",
                    trigger,
                    "--accept",
                    accept,
                    "--threads",
                    "2",
                ]
                .map(String::from)
                .to_vec(),
            );
        }
    }
    for baseline in ["threads", "tokio"] {
        sessions.push(
            ["--backend", baseline, "--threads", "2"]
                .map(String::from)
                .to_vec(),
        );
    }
    if completion_available("io_uring_completion echo") {
        for options in [&[][..], &["--fixed-files"]] {
            let mut args = ["--backend", "io_uring_completion", "--threads", "2"].to_vec();
            args.extend_from_slice(options);
            sessions.push(args.into_iter().map(String::from).collect());
        }
    }
    if completion_batch_available("io_uring_completion --batch echo") {
        sessions.push(
            [
                "--backend",
                "io_uring_completion",
                "--threads",
                "2",
                "--batch",
                "16",
                "--batch-wait",
                "200us",
            ]
            .map(String::from)
            .to_vec(),
        );
    }
    assert!(
        sessions.len() >= 20,
        "select, poll, epoll and io_uring combinations at least"
    );
    // A few servers at a time keep the run short on two cores.
    for chunk in sessions.chunks(4) {
        std::thread::scope(|s| {
            for args in chunk {
                s.spawn(move || {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    echo_session(&args, &args.join(" "));
                });
            }
        });
    }
}

/// The tokio baseline counts every byte echoed on connections that are still open at SIGTERM. Its
/// tasks batch their counters (every 256 reads, and at close), and the runtime's shutdown drops
/// them at their next await: before the fix, 10,000 echoed bytes over 20 open connections were
/// reported as `bytes_in: 0`.
#[test]
fn tokio_counts_what_open_connections_echoed_before_shutdown() {
    const CONNS: usize = 20;
    const ROUNDS: usize = 10; // messages per connection, each echoed before the next is sent
    const SIZE: usize = 50; // 20 x 10 x 50 = 10,000 bytes
    let server = Server::start(&["--backend", "tokio", "--threads", "2"], None);
    let conns: Vec<TcpStream> = (0..CONNS).map(|_| server.connect()).collect();
    for round in 0..ROUNDS {
        for (i, c) in conns.iter().enumerate() {
            let data = payload(SIZE, (round * CONNS + i) as u64);
            assert!(
                echo(c, &data),
                "conn {i} round {round}: echoed byte for byte"
            );
        }
    }
    // Every connection stays open through SIGTERM.
    let (status, took, json) = server.stop();
    drop(conns);
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(2), "stopped in {took:?}");
    let sent = (CONNS * ROUNDS * SIZE) as u64;
    let totals = &json["totals"];
    let field = |name: &str| {
        totals[name]
            .as_u64()
            .unwrap_or_else(|| panic!("totals.{name} in {json}"))
    };
    assert_eq!(field("bytes_in"), sent, "{json}");
    assert_eq!(field("bytes_out"), sent, "{json}");
    assert_eq!(field("accepted"), CONNS as u64, "{json}");
    assert_eq!(field("rejected"), 0, "{json}");
    assert_eq!(
        field("active"),
        CONNS as u64,
        "open when shutdown began: {json}"
    );
    // No end-of-file was read (the clients never closed), and each message was sent only after
    // the previous echo arrived, so every message took at least one read of its own; every read's
    // bytes took at least one write to echo.
    let (reads, writes) = (field("reads"), field("writes"));
    assert!(
        reads >= (CONNS * ROUNDS) as u64 && reads <= sent,
        "reads {reads}: {json}"
    );
    assert!(writes >= reads && writes <= sent, "writes {writes}: {json}");
}

/// The calls the pipeline divides by messages echoed, counted exactly. Two connections one after
/// the other each echo 20 messages of exactly the buffer's size (1 KiB), one at a time, and
/// close. Every call is one of: a read, a write, a wait, a registration, an accept that returned
/// a connection, or a call that would block (nothing fails here), so `syscalls` is their sum. An
/// edge-triggered loop reads again after a read that filled its buffer, and that read finds the
/// socket drained (EAGAIN, counted in `syscalls` and `would_block`); a oneshot loop re-arms (a
/// registration) after every event.
#[test]
fn calls_are_counted_exactly_would_block_reads_included() {
    const CONNS: u64 = 2;
    const MESSAGES: u64 = 20;
    let mut sessions: Vec<(BackendKind, &str)> = Vec::new();
    for (kind, caps) in backends() {
        sessions.push((
            kind,
            if caps.edge.is_supported() {
                "edge"
            } else {
                "level"
            },
        ));
        sessions.push((kind, "oneshot"));
    }
    for (kind, trigger) in sessions {
        let label = format!("{kind} --trigger {trigger}");
        let server = Server::start(
            &[
                "--backend",
                kind.name(),
                "--trigger",
                trigger,
                "--threads",
                "1",
                "--buf-size",
                "1KiB",
            ],
            None,
        );
        for c in 0..CONNS {
            let stream = server.connect();
            for m in 0..MESSAGES {
                assert!(
                    echo(&stream, &payload(1024, c * 100 + m)),
                    "{label}: echoed byte for byte"
                );
            }
            // The last echo's follow-up read happens right after its write, before the loop waits.
            std::thread::sleep(Duration::from_millis(50));
            drop(stream);
        }
        std::thread::sleep(Duration::from_millis(50)); // the server reads the end-of-file, closes
        let (status, _, json) = server.stop();
        assert!(status.success(), "{label}");
        let calls = check_cpu_and_calls(&json, &label).expect("an event loop counts its calls");
        let field = |name: &str| json["totals"][name].as_u64().unwrap();
        let accepted = field("accepted");
        assert_eq!(accepted, CONNS, "{label}: {json}");
        assert_eq!(field("closed"), CONNS, "{label}: {json}");
        assert_eq!(
            field("bytes_out"),
            CONNS * MESSAGES * 1024,
            "{label}: {json}"
        );
        assert_eq!(
            calls.syscalls,
            loop_calls(&json, &calls) + accepted,
            "{label}: every call counted once: {json}"
        );
        // The listener once, each connection registered and deregistered.
        assert!(
            calls.registrations > 2 * accepted,
            "{label}: registrations: {json}"
        );
        if trigger == "oneshot" {
            assert!(
                calls.registrations >= 2 * accepted + CONNS * MESSAGES,
                "{label}: a re-arm per message: {json}"
            );
        }
        // Each burst of connections ends with an accept that would block: one per connection
        // here, one after the other. Edge: a read that filled the buffer is followed by one more,
        // which finds the socket drained unless the next message is already there (the last
        // message's always does: the client sends nothing more).
        let accept_bursts = accepted;
        if trigger == "edge" {
            assert!(
                calls.would_block >= accept_bursts + CONNS,
                "{label}: the reads that found the socket drained: {json}"
            );
        } else {
            assert!(calls.would_block >= 1, "{label}: {json}");
        }
    }
}

/// The `acceptor` strategy's calls are the server's too: each connection costs the acceptor
/// thread an accept() and a wake-up of the loop it goes to, and that loop counts both, so the cost
/// per message compares with the strategies whose loops accept. Two connections one after the
/// other, 10 echoes each: every call is a loop's read, write, wait, registration or call that would
/// block, or one of the acceptor's two per connection.
#[test]
fn the_acceptor_threads_accept_and_wake_up_are_counted_by_the_loop_it_hands_to() {
    for (kind, _) in backends() {
        let label = format!("{kind} --accept acceptor");
        let server = Server::start(
            &[
                "--backend",
                kind.name(),
                "--accept",
                "acceptor",
                "--threads",
                "1",
            ],
            None,
        );
        for c in 0..2 {
            let stream = server.connect();
            for m in 0..10 {
                assert!(echo(&stream, &payload(100, c * 100 + m)), "{label}");
            }
            drop(stream);
            std::thread::sleep(Duration::from_millis(50)); // the end-of-file is read, the socket closed
        }
        let (status, _, json) = server.stop();
        assert!(status.success(), "{label}");
        let calls = check_cpu_and_calls(&json, &label).expect("an event loop counts its calls");
        let field = |name: &str| json["totals"][name].as_u64().unwrap();
        assert_eq!(field("accepted"), 2, "{label}: {json}");
        assert_eq!(
            calls.syscalls,
            loop_calls(&json, &calls) + 2 * field("accepted"),
            "{label}: every call counted once, the acceptor's two per connection included: {json}"
        );
    }
}

/// The threads baseline counts its calls as the event loops do: every accept, read and write
/// (each write call, not each echo); no registrations, nothing would block.
#[test]
fn the_threads_baseline_counts_every_accept_read_and_write() {
    let server = Server::start(&["--backend", "threads"], None);
    let stream = server.connect();
    for m in 0..10 {
        assert!(echo(&stream, &payload(1000, m)));
    }
    drop(stream);
    std::thread::sleep(Duration::from_millis(50)); // the thread reads the end-of-file and counts
    let (status, _, json) = server.stop();
    assert!(status.success());
    let calls = check_cpu_and_calls(&json, "threads").unwrap();
    let field = |name: &str| json["totals"][name].as_u64().unwrap();
    assert_eq!(
        field("reads"),
        field("writes") + 1,
        "the end-of-file read: {json}"
    );
    assert_eq!(
        calls.syscalls,
        field("reads") + field("writes") + field("accepted"),
        "{json}"
    );
}

fn default_servers() -> Vec<Vec<&'static str>> {
    let mut out: Vec<Vec<&'static str>> = backends()
        .into_iter()
        .map(|(k, _)| vec!["--backend", k.name()])
        .collect();
    out.push(vec!["--backend", "threads"]);
    out.push(vec!["--backend", "tokio"]);
    if completion_available("io_uring_completion") {
        out.push(vec!["--backend", "io_uring_completion"]);
        out.push(vec!["--backend", "io_uring_completion", "--fixed-files"]);
    }
    out
}

/// The servers that bound what a connection may hold: every event loop, completion mode included.
fn bounded_servers() -> Vec<String> {
    let mut out: Vec<String> = backends()
        .iter()
        .map(|(k, _)| k.name().to_string())
        .collect();
    if completion_available("io_uring_completion bounds") {
        out.push("io_uring_completion".into());
    }
    out
}

#[test]
fn a_thousand_concurrent_connections() {
    if !have_descriptors(1000, "a thousand concurrent connections") {
        return;
    }
    for args in default_servers() {
        let server = Server::start(&args, None);
        let conns: Vec<TcpStream> = (0..1000).map(|_| server.connect()).collect();
        for (i, c) in conns.iter().enumerate() {
            (&*c).write_all(&(i as u64).to_le_bytes()).unwrap();
        }
        let mut echoed = 0;
        let mut refused = 0;
        for (i, c) in conns.iter().enumerate() {
            let mut back = [0u8; 8];
            match (&*c).read_exact(&mut back) {
                Ok(()) => {
                    assert_eq!(u64::from_le_bytes(back), i as u64, "{args:?}");
                    echoed += 1;
                }
                Err(_) => refused += 1, // closed at once: select above FD_SETSIZE
            }
        }
        drop(conns);
        let (status, _, json) = server.stop();
        assert!(status.success());
        if args[1] == "select" {
            // Connections whose descriptor is above FD_SETSIZE are closed at once and counted.
            assert_eq!(json["totals"]["rejected"], refused as u64, "{json}");
            assert!(echoed >= 900, "select serves what fits: {echoed}");
        } else {
            assert_eq!(echoed, 1000, "{args:?}: all 1,000 connections echoed");
        }
    }
}

#[test]
fn resets_close_only_that_connection() {
    for args in default_servers() {
        let server = Server::start(&args, None);
        let survivor = server.connect();
        assert!(echo(&survivor, b"before"));
        for _ in 0..20 {
            let victim = server.connect();
            (&victim).write_all(&payload(100_000, 1)).unwrap();
            // SO_LINGER 0: close sends RST instead of FIN, with data still in flight.
            socket2::SockRef::from(&victim)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(victim);
        }
        assert!(
            echo(&survivor, &payload(300_000, 2)),
            "{args:?}: other connections unaffected"
        );
        let late = server.connect();
        assert!(echo(&late, b"after"), "{args:?}: still accepting");
        let (status, _, _) = server.stop();
        assert!(status.success(), "{args:?}");
    }
}

#[test]
fn a_slow_reader_does_not_grow_server_memory() {
    for kind in bounded_servers() {
        let server = Server::start(&["--backend", &kind, "--buf-size", "16KiB"], None);
        let stream = server.connect();
        let before = server.rss();
        let data = payload(32 << 20, 3);
        let mut back = vec![0u8; data.len()];
        std::thread::scope(|s| {
            let writer = s.spawn(|| (&stream).write_all(&data).unwrap());
            // The client does not read for a while: the server must stop reading, not buffer.
            std::thread::sleep(Duration::from_millis(500));
            assert!(
                !writer.is_finished(),
                "{kind}: 32 MiB cannot all be in flight"
            );
            let growth = server.rss().saturating_sub(before);
            assert!(
                growth < 8 << 20,
                "{kind}: server grew {growth} bytes while the client was not reading"
            );
            (&stream).read_exact(&mut back).unwrap();
        });
        assert!(back == data, "{kind}: every byte echoed after the stall");
        let (status, _, _) = server.stop();
        assert!(status.success());
    }
}

/// Accepting pauses (EMFILE, or the connection limit) without spinning; served connections keep
/// working; closing some lets the waiting ones in.
fn saturate(args: &[&str], ulimit_n: Option<u32>, label: &str) {
    const CLIENTS: usize = 80;
    let server = Server::start(args, ulimit_n);
    let mut conns: Vec<TcpStream> = (0..CLIENTS).map(|_| server.connect()).collect();
    let served = |conns: &[TcpStream], tag: u8| -> Vec<bool> {
        for c in conns {
            c.set_nonblocking(false).unwrap();
            let _ = (&*c).write_all(&[tag]);
        }
        std::thread::sleep(Duration::from_millis(400));
        conns
            .iter()
            .map(|c| {
                // A connection accepted late echoes the earlier tags first: served = the last byte
                // read is this round's tag.
                c.set_nonblocking(true).unwrap();
                let mut b = [0u8; 256];
                matches!((&*c).read(&mut b), Ok(n) if n > 0 && b[n - 1] == tag)
            })
            .collect()
    };
    let first = served(&conns, 1);
    let n_served = first.iter().filter(|&&s| s).count();
    assert!(
        (5..CLIENTS).contains(&n_served),
        "{label}: some served, some waiting: {n_served}"
    );
    let cpu = server.cpu_time();
    std::thread::sleep(Duration::from_secs(1));
    let spent = server.cpu_time() - cpu;
    assert!(
        spent < Duration::from_millis(300),
        "{label}: saturated server used {spent:?} of CPU in 1 s"
    );
    // Close 30 served connections: descriptors and slots free up, the waiting ones get in.
    let mut closed = 0;
    let mut keep = Vec::new();
    for (c, s) in conns.drain(..).zip(&first) {
        if *s && closed < 30.min(n_served) {
            closed += 1;
        } else {
            keep.push(c);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut tag = 2;
    loop {
        let now_served = served(&keep, tag).iter().filter(|&&s| s).count();
        if now_served >= n_served.min(keep.len()) && now_served > n_served - closed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: waiting connections were not accepted ({now_served})"
        );
        tag += 1;
    }
    drop(keep);
    let (status, _, json) = server.stop();
    assert!(status.success(), "{label}");
    assert!(
        json["totals"]["accept_pauses"].as_u64().unwrap() >= 1,
        "{label}: {json}"
    );
}

/// Busy polling echoes like blocking waits, spins (polls without blocking) while traffic flows, and
/// sleeps once the window after the last event has passed: an idle server with --busy-poll uses no
/// CPU.
#[test]
fn busy_polling_spins_only_within_its_window() {
    for (kind, _) in backends() {
        let label = format!("{} --busy-poll", kind.name());
        let server = Server::start(
            &[
                "--backend",
                kind.name(),
                "--threads",
                "1",
                "--busy-poll",
                "300ms",
            ],
            None,
        );
        let stream = server.connect();
        assert!(echo(&stream, &payload(1000, 7)), "{label}: echoes");
        // Past the window the loop blocks again; give it the window plus slack to get there.
        std::thread::sleep(Duration::from_millis(600));
        let cpu = server.cpu_time();
        std::thread::sleep(Duration::from_secs(1));
        let idle = server.cpu_time() - cpu;
        assert!(
            idle < Duration::from_millis(100),
            "{label}: idle after the window: {idle:?} of CPU in 1 s"
        );
        assert!(
            echo(&stream, &payload(70_000, 8)),
            "{label}: echoes after sleeping"
        );
        drop(stream);
        let (status, _, json) = server.stop();
        assert!(status.success(), "{label}");
        assert_eq!(json["config"]["busy_poll_us"], 300_000, "{label}: {json}");
        assert_eq!(json["totals"]["bytes_out"], 71_000, "{label}: {json}");
        // Spinning is counted in polls, not CPU time (which a loaded machine does not give a
        // spinning thread: 60-90 ms of 200 ms were seen at load average 5-18 on 2 cores). Two
        // windows of 300 ms make tens of thousands of zero-timeout polls even at a small share of
        // a core; blocking waits for these two echoes are a few dozen at most.
        let waits = json["totals"]["waits"].as_u64().unwrap();
        assert!(
            waits >= 1000,
            "{label}: spun within the windows: {waits} waits: {json}"
        );
    }
}

#[test]
fn emfile_pauses_accepting_without_spinning_and_recovers() {
    for kind in bounded_servers() {
        saturate(&["--backend", &kind], Some(48), &format!("{kind} EMFILE"));
    }
}

#[test]
fn max_conns_pauses_accepting_without_spinning_and_recovers() {
    for kind in bounded_servers() {
        saturate(
            &["--backend", &kind, "--max-conns", "20"],
            None,
            &format!("{kind} --max-conns"),
        );
    }
    // Fixed files: the connections held past the limit live in the ring's table, not the
    // process's; they are served, and closed through the ring, the same way. (EMFILE does not
    // apply: a fixed file takes no descriptor.)
    if completion_available("io_uring_completion --fixed-files --max-conns") {
        saturate(
            &[
                "--backend",
                "io_uring_completion",
                "--fixed-files",
                "--max-conns",
                "20",
            ],
            None,
            "io_uring_completion --fixed-files --max-conns",
        );
    }
}

/// kqueue has no exclusive wake-up, so `--accept exclusive` is refused before anything runs (it used
/// to run the shared listener and be reported as exclusive). Where kqueue is not built, the decision
/// itself is unit-tested with kqueue's capabilities (cli.rs); this checks the binary where it is.
#[test]
fn kqueue_refuses_exclusive_accept() {
    let args = ["--backend", "kqueue", "--accept", "exclusive"];
    if let Err(why) = BackendKind::Kqueue.probe() {
        skip(
            "bench-server --backend kqueue --accept exclusive",
            &format!("kqueue not available: {why}"),
        );
        return;
    }
    let mut child = Command::new(BIN)
        .args(["--addr", "127.0.0.1:0", "--stats-interval", "0s"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: a server that starts instead of refusing would run until signalled.
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{args:?} started instead of refusing: stdout {:?}, stderr {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(
        stderr.starts_with("bench-server: ")
            && stderr.contains("kqueue")
            && stderr.contains("exclusive"),
        "names kqueue and exclusive: {stderr}"
    );
    assert!(out.stdout.is_empty(), "never started listening");
}

#[test]
fn unsupported_combinations_exit_2_with_one_line() {
    let mut cases: Vec<Vec<&str>> = vec![
        vec!["--backend", "select", "--trigger", "edge"],
        vec!["--backend", "poll", "--trigger", "edge"],
        vec!["--backend", "poll", "--accept", "exclusive"],
        vec!["--backend", "threads", "--trigger", "level"],
        vec!["--backend", "tokio", "--accept", "reuseport"],
        vec!["--backend", "threads", "--pin"],
        vec!["--backend", "tokio", "--busy-poll", "50us"],
        vec!["--busy-poll", "briefly"],
        vec!["--backend", "nonesuch"],
        vec!["--buf-size", "12XB"],
        vec!["--threads", "0"],
        vec!["--stats-interval", "soon"],
        vec!["--addr", "localhost"],
    ];
    if BackendKind::IoUring.probe().is_ok() {
        cases.push(vec!["--backend", "io_uring", "--accept", "exclusive"]);
    }
    if BackendKind::Kqueue.probe().is_err() {
        cases.push(vec!["--backend", "kqueue"]);
    }
    // Completion mode has no readiness trigger, accepts on a listener per loop only, and does not
    // busy-poll (refused with the reason even where it cannot run, or with that reason).
    cases.push(vec![
        "--backend",
        "io_uring_completion",
        "--trigger",
        "edge",
    ]);
    cases.push(vec![
        "--backend",
        "io_uring_completion",
        "--accept",
        "shared",
    ]);
    cases.push(vec![
        "--backend",
        "io_uring_completion",
        "--busy-poll",
        "1us",
    ]);
    // Its options are its own, and a batch needs a bound on how long it is waited for.
    cases.push(vec!["--backend", "epoll", "--fixed-files"]);
    cases.push(vec!["--batch", "8", "--batch-wait", "50us"]);
    cases.push(vec!["--backend", "io_uring_completion", "--batch", "8"]);
    cases.push(vec![
        "--backend",
        "io_uring_completion",
        "--batch-wait",
        "50us",
    ]);
    cases.push(vec![
        "--backend",
        "io_uring_completion",
        "--batch",
        "8",
        "--batch-wait",
        "5s",
    ]);
    for args in cases {
        let out = Command::new(BIN).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: one line, got {stderr:?}"
        );
        assert!(stderr.starts_with("bench-server: "), "{stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--addr",
        "--backend",
        "--threads",
        "--pin",
        "--accept",
        "--trigger",
        "--max-conns",
        "--buf-size",
        "--events",
        "--busy-poll",
        "--stats-interval",
        "--stats-json",
    ] {
        assert!(help.contains(flag), "--help documents {flag}");
    }
    assert!(
        help.contains("kqueue is libkqueue"),
        "--help says kqueue on Linux is libkqueue: {help}"
    );
}

/// Connections one after another: connect, echo one byte, close; `n` of them.
fn churn(server: &Server, n: usize) {
    for i in 0..n {
        let stream = server.connect();
        let mut byte = [i as u8];
        (&stream).write_all(&byte).unwrap();
        (&stream).read_exact(&mut byte).unwrap();
        assert_eq!(byte[0], i as u8);
    }
}

/// One epoll server with 2 loops and `args`, `CHURN` connections one after another. Checks what
/// every such document must say of the listener wake-ups, thread by thread and in the totals, and
/// returns the totals' (accepted, listener_wakeups, listener_wakeups_empty).
const CHURN: usize = 200;
fn churn_wakeups(args: &[&str]) -> (u64, u64, u64) {
    let label = args.join(" ");
    let server = Server::start(args, None);
    churn(&server, CHURN);
    std::thread::sleep(Duration::from_millis(50)); // the last end-of-file is read
    let (status, _, json) = server.stop();
    assert!(status.success(), "{label}");
    let threads = json["threads"].as_array().unwrap();
    let mut sums = (0, 0, 0);
    for entry in threads.iter().chain([&json["totals"]]) {
        let field = |name: &str| {
            entry[name]
                .as_u64()
                .unwrap_or_else(|| panic!("{label}: {name} in {json}"))
        };
        let (accepted, wakeups, empty) = (
            field("accepted"),
            field("listener_wakeups"),
            field("listener_wakeups_empty"),
        );
        assert!(empty <= wakeups, "{label}: {json}");
        // Each connection arrives after the last one's echo: every wake-up that accepted
        // something accepted exactly one.
        assert_eq!(wakeups - empty, accepted, "{label}: {json}");
        sums = (accepted, wakeups, empty);
    }
    assert_eq!(sums.0, CHURN as u64, "{label}: {json}");
    let t = |name: &str| {
        threads
            .iter()
            .map(|e| e[name].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(t("listener_wakeups"), sums.1, "{label}: totals are the sum");
    assert_eq!(
        t("listener_wakeups_empty"),
        sums.2,
        "{label}: totals are the sum"
    );
    eprintln!(
        "{label}: {} connections, {} listener wake-ups, {} empty ({:.2} per connection)",
        sums.0,
        sums.1,
        sums.2,
        sums.2 as f64 / sums.0 as f64
    );
    sums
}

/// The thundering herd, counted: with one listener shared by 2 epoll loops (no exclusivity), a
/// connection wakes both loops waiting on it and one of them accepts nothing; with a listener per
/// loop (`reuseport`), only the loop the kernel chose wakes. 200 connections one after another.
#[test]
fn listener_wakeups_count_the_shared_listeners_herd() {
    if !backends().iter().any(|(k, _)| *k == BackendKind::Epoll) {
        return skip("listener wake-ups", "epoll is not available");
    }
    let base = ["--backend", "epoll", "--threads", "2", "--accept"];
    let args = |accept| {
        let mut a = base.to_vec();
        a.push(accept);
        a
    };
    let per_conn = |(accepted, _, empty): (u64, u64, u64)| empty as f64 / accepted as f64;
    // A listener per loop never wakes a loop for nothing.
    let reuseport = churn_wakeups(&args("reuseport"));
    assert_eq!(reuseport.2, 0, "reuseport: no empty wake-up: {reuseport:?}");
    // Measured (2 cores, 200 connections): shared 0.20 to 0.53 empty wake-ups per connection on
    // an idle machine; under the other tests' load down to 0.03, and once 0. Not every herd
    // wake-up reaches user space: a loop woken after the other one accepted finds the listener
    // not ready when epoll re-checks it, and sleeps again uncounted, which is what a loop kept off
    // its core does. So the herd is looked for in up to 5 tries of 200 connections, each shown.
    let mut tries = Vec::new();
    for _ in 0..5 {
        let shared = churn_wakeups(&args("shared"));
        tries.push(shared);
        if per_conn(shared) > per_conn(reuseport) {
            return;
        }
    }
    panic!(
        "shared: no wake-up that accepted nothing in 5 tries: {tries:?}, reuseport {reuseport:?}"
    );
}

/// Where no loop waits on a listener, the listener wake-ups are `null` (not 0): the `acceptor`
/// strategy (its thread blocks in accept) and the baselines.
#[test]
fn listener_wakeups_are_null_where_no_loop_waits_on_a_listener() {
    let mut servers = vec![vec!["--backend", "threads"], vec!["--backend", "tokio"]];
    if let Some((kind, _)) = backends().first() {
        servers.push(vec!["--backend", kind.name(), "--accept", "acceptor"]);
    }
    for args in servers {
        let server = Server::start(&args, None);
        churn(&server, 3);
        let (status, _, json) = server.stop();
        assert!(status.success(), "{args:?}");
        for entry in json["threads"]
            .as_array()
            .unwrap()
            .iter()
            .chain([&json["totals"]])
        {
            for name in ["listener_wakeups", "listener_wakeups_empty"] {
                let value = entry
                    .get(name)
                    .unwrap_or_else(|| panic!("{args:?}: {name} written"));
                assert!(value.is_null(), "{args:?}: {name}: {json}");
            }
        }
    }
}

/// `accept_intervals`: one row per summary interval (and the last part interval), one column per
/// loop, each column adding up to that loop's `accepted`; a burst shows in the row it landed in.
/// `null` with `--stats-interval 0s`.
#[test]
fn accept_intervals_show_each_loops_accepts_per_interval() {
    let (kind, _) = backends().into_iter().next().expect("a poller backend");
    let args = [
        "--backend",
        kind.name(),
        "--threads",
        "2",
        "--stats-interval",
        "200ms",
    ];
    let server = Server::start(&args, None);
    std::thread::sleep(Duration::from_millis(450)); // two quiet intervals
    churn(&server, 20);
    std::thread::sleep(Duration::from_millis(250));
    let (status, _, json) = server.stop();
    assert!(status.success());
    let rows: Vec<Vec<u64>> = serde_json::from_value(json["accept_intervals"].clone())
        .unwrap_or_else(|e| panic!("accept_intervals: {e}: {json}"));
    assert!(rows.len() >= 3, "{json}");
    assert!(
        rows.iter().all(|r| r.len() == 2),
        "a column per loop: {json}"
    );
    assert_eq!(rows[0], [0, 0], "the first interval was quiet: {json}");
    for (i, thread) in json["threads"].as_array().unwrap().iter().enumerate() {
        let column: u64 = rows.iter().map(|r| r[i]).sum();
        assert_eq!(column, thread["accepted"].as_u64().unwrap(), "{json}");
    }
    assert_eq!(rows.iter().flatten().sum::<u64>(), 20, "{json}");

    let server = Server::start(&["--backend", kind.name()], None);
    churn(&server, 1);
    let (_, _, json) = server.stop();
    assert!(json["accept_intervals"].is_null(), "summaries off: {json}");
}

/// An idle completion server sleeps in its wait until shutdown wakes it: over 1 s with no
/// client each loop waits about once (before the waker it woke every 50 ms to look for the
/// shutdown flag: some 20 waits per loop), and SIGTERM still ends it at once.
#[test]
fn an_idle_completion_server_does_not_wake_up_until_shutdown() {
    if !completion_available("io_uring_completion idle") {
        return;
    }
    for options in [&[][..], &["--fixed-files"]] {
        let mut args = vec!["--backend", "io_uring_completion", "--threads", "2"];
        args.extend_from_slice(options);
        let server = Server::start(&args, None);
        std::thread::sleep(Duration::from_secs(1));
        let asked = Instant::now();
        let (status, _, json) = server.stop();
        let stopping = asked.elapsed();
        assert!(status.success(), "{args:?}");
        let waits = json["totals"]["waits"].as_u64().unwrap();
        assert!(waits <= 2 * 2, "{args:?}: {waits} waits while idle: {json}");
        assert!(stopping < Duration::from_secs(2), "{args:?}: {stopping:?}");
    }
}

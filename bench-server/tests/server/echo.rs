//! Echo byte for byte on every backend, trigger and accept strategy, and what tokio counts.

use super::*;
use crate::calls::check_cpu_and_calls;

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

#[test]
fn every_backend_trigger_and_accept_strategy_echoes() {
    let mut sessions: Vec<Argv> = Vec::new();
    for (kind, caps) in backends() {
        for (trigger, accept) in combinations(&caps) {
            sessions.push(
                Argv::new()
                    .backend(kind.name())
                    .trigger(trigger)
                    .accept(accept)
                    .loops(2),
            );
        }
    }
    for baseline in ["threads", "tokio"] {
        sessions.push(Argv::new().backend(baseline).loops(2));
    }
    let completion = Argv::new().backend("io_uring_completion").loops(2);
    if completion_available("io_uring_completion echo") {
        sessions.push(completion.clone());
        sessions.push(completion.clone().arg("--fixed-files"));
    }
    if completion_batch_available("io_uring_completion --batch echo") {
        sessions.push(completion.flag("--batch", 16).flag("--batch-wait", "200us"));
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
                    let args = args.strs();
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

/// The stats document reads the counters at every whole second: cumulative, one second apart, and
/// what was echoed between two readings is in their difference (and nothing after the last
/// reading is in it).
#[test]
fn the_counters_are_read_every_whole_second() {
    for args in [
        &["--backend", "epoll"][..],
        &["--backend", "threads"][..],
        &["--backend", "io_uring_completion"][..],
    ] {
        let label = args[1];
        if label == "io_uring_completion" && !completion_available("seconds of io_uring_completion")
        {
            continue;
        }
        let server = Server::start(args, None);
        let stream = server.connect();
        let data = payload(1000, 7);
        // Bounded: about 2.5 s of echoes, so at least two whole seconds pass while serving.
        let began = Instant::now();
        let mut echoed = 0u64;
        while began.elapsed() < Duration::from_millis(2500) {
            assert!(echo(&stream, &data), "{label}: echoed");
            echoed += data.len() as u64;
            std::thread::sleep(Duration::from_millis(20));
        }
        let (status, _, json) = server.stop();
        assert!(status.success(), "{label}: {status}");
        let seconds = json["seconds"].as_array().expect("seconds");
        assert!(seconds.len() >= 2, "{label}: {seconds:?}");
        let at = |k: usize| seconds[k]["at_unix_s"].as_f64().unwrap();
        let out = |k: usize| seconds[k]["counters"]["bytes_out"].as_u64().unwrap();
        for k in 1..seconds.len() {
            assert_eq!(
                at(k).floor() - at(k - 1).floor(),
                1.0,
                "{label}: {seconds:?}"
            );
            let between = out(k) - out(k - 1);
            // 1,000 B every ~20 ms: about 50 kB a second.
            assert!((10_000..=60_000).contains(&between), "{label}: {between} B");
            let cpu = |k: usize| {
                seconds[k]["cpu_user_s"].as_f64().unwrap()
                    + seconds[k]["cpu_system_s"].as_f64().unwrap()
            };
            assert!(cpu(k) >= cpu(k - 1), "{label}");
        }
        assert!(out(seconds.len() - 1) <= echoed, "{label}");
        assert_eq!(json["totals"]["bytes_out"], echoed, "{label}");
    }
}

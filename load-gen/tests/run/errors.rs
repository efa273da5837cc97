//! Runs that fail, and how: corrupted bytes, closed connections, a server that dies or is not
//! there, timeouts, bad flags, threads that cannot start, Ctrl-C.

use super::*;

#[test]
fn a_corrupted_byte_is_a_mismatch_and_exit_1() {
    let addr = server(|s, _| {
        echo_with(s, |pos, buf| {
            if (pos..pos + buf.len() as u64).contains(&1000) {
                buf[(1000 - pos) as usize] ^= 0x40;
            }
        })
    });
    let (out, json, _t) = run(
        &Argv::run(addr)
            .connections(4)
            .threads(1)
            .duration("1s")
            .warmup("0s"),
        Duration::from_secs(20),
    );
    let json = json.expect("results written despite errors");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        json["errors"]["mismatch"], 4,
        "each connection's corruption detected: {json}"
    );
}

#[test]
fn connections_the_server_closes_are_counted_and_exit_1() {
    let addr = server(|mut s, _| {
        let mut buf = [0u8; 64];
        for _ in 0..10 {
            // Ten 64-byte messages echoed, then the server closes.
            if s.read_exact(&mut buf).is_err() || s.write_all(&buf).is_err() {
                return;
            }
        }
        // Close cleanly: FIN first, then drain what the client already sent. Closing with unread
        // data would send RST instead, which load-gen rightly counts as a reset, not a close.
        let _ = s.shutdown(std::net::Shutdown::Write);
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    let (out, json, _t) = run(
        &Argv::run(addr)
            .connections(6)
            .threads(2)
            .duration("2s")
            .warmup("0s"),
        Duration::from_secs(20),
    );
    let json = json.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json["errors"]["closed"], 6, "{json}");
    assert_eq!(json["connections_alive_at_end"], 0);
}

#[test]
fn a_dying_server_stops_the_run_early_with_partial_results() {
    let born = Instant::now();
    let addr = server(move |s, _| {
        let killer = s.try_clone().unwrap();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500).saturating_sub(born.elapsed()));
            let _ = killer.shutdown(std::net::Shutdown::Both);
        });
        echo_with(s, |_, _| {});
    });
    let started = Instant::now();
    let (out, json, _t) = run(
        &Argv::run(addr)
            .connections(8)
            .threads(2)
            .duration("30s")
            .warmup("0s"),
        Duration::from_secs(20),
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "stopped at once, not after 30 s"
    );
    assert_eq!(out.status.code(), Some(1));
    let json = json.expect("partial results written");
    assert!(
        json["stopped_early"]
            .as_str()
            .unwrap()
            .contains("every connection is gone"),
        "{json}"
    );
    assert!(
        json["messages"].as_u64().unwrap() > 0,
        "what was measured before is kept"
    );
}

#[test]
fn an_unreachable_target_fails_within_the_connect_timeout() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let (out, _, _t) = run(
        &Argv::run(&target)
            .connections(3)
            .flag("--connect-timeout", "2s")
            .duration("5s"),
        Duration::from_secs(20),
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot connect to {target}")),
        "{stderr}"
    );
}

#[test]
fn bad_flags_exit_2_with_one_line() {
    // A live target, so a run that got past its checks would connect and reach its run phase
    // (where an overflowing deadline used to panic and a huge pipeline to exhaust memory).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let live = listener.local_addr().unwrap().to_string();
    let live = live.as_str();
    let run_at = |target: &str| Argv::new().arg("run").flag("--target", target);
    let unused = "127.0.0.1:9";
    for args in [
        run_at(live).flag("--cpus", "0-4000000000"),
        run_at(live).connections(2).duration("100000000y"),
        run_at(live).connections(2).warmup("100000000y"),
        run_at(live).connections(2).flag("--timeout", "100000000y"),
        run_at(live).connections(1000).flag("--pipeline", "100M"),
        run_at(live)
            .connections(2)
            .rate("100M")
            .flag("--timeout", "30s"),
        Argv::new().arg("run"),
        run_at("nowhere"),
        run_at(unused).flag("--size", "12XB"),
        run_at(unused).flag("--duration", "soon"),
        run_at(unused).backend("nonesuch"),
        run_at(unused).connections(0),
        run_at(unused).flag("--cpus", "100000"),
        run_at(unused).flag("--cpus", "3-1"),
        run_at(unused).flag("--spin", "soon"),
        run_at(unused).flag("--spin", "-5us"),
        run_at(unused).flag("--spin", "2s"),
        Argv::new().arg("fly"),
    ] {
        let args = args.strs();
        let out = Command::new(BIN).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.starts_with("load-gen: "), "{stderr}");
    }
}

#[test]
fn threads_that_cannot_be_started_exit_2_with_one_line() {
    // A process limit of 64 (RLIMIT_NPROC, which counts threads): most of the 3,000 threads asked
    // for cannot start. (A thread spawn used to `expect`, and the panic aborted the process.) Root
    // is exempt from the limit, so as root the run drops to the nobody user. A memory limit
    // (ulimit -v) is no way to test this: std itself aborts when a started thread cannot map its
    // signal stack.
    let have = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("prlimit") || !have("setpriv") {
        return skip(
            "threads that cannot be started",
            "needs util-linux's prlimit and setpriv",
        );
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nproc=64");
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if root {
        let nobody = [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ];
        // nobody must be able to run the binary (every directory above it searchable).
        let runs = Command::new(nobody[0])
            .args(&nobody[1..])
            .args([BIN, "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !runs {
            return skip(
                "threads that cannot be started",
                "the nobody user cannot run the load-gen binary here",
            );
        }
        cmd.args(nobody);
    }
    cmd.args([BIN, "run"]).args(
        &Argv::run(&target)
            .connections(3000)
            .threads(3000)
            .duration("1s")
            .flag("--connect-timeout", "1s"),
    );
    let out = output_within(cmd, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.starts_with("load-gen: cannot start 3000 threads"),
        "{stderr}"
    );
    drop(listener);
}

#[test]
fn a_message_queued_past_its_timeout_is_a_timeout_so_the_backlog_is_bounded() {
    // A server that answers every message 20 ms after reading it: each message is echoed well
    // within --timeout of its actual send, but at 1,000 msgs/s the backlog behind the pipeline
    // grows by 950 messages a second. It must time out (from the due time) instead of growing for
    // the whole run (the old rule timed from the actual send and let the queue grow unbounded).
    let addr = server(|mut s, _| {
        let mut buf = [0u8; 64];
        while s.read_exact(&mut buf).is_ok() {
            std::thread::sleep(Duration::from_millis(20));
            if s.write_all(&buf).is_err() {
                return;
            }
        }
    });
    let (out, json, _t) = run(
        &Argv::run(addr)
            .connections(1)
            .threads(1)
            .rate(1000)
            .duration("3s")
            .warmup("0s")
            .flag("--timeout", "1s"),
        Duration::from_secs(30),
    );
    let json = json.expect("JSON written");
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(json["errors"]["timeout"], 1, "{json}");
    assert_eq!(json["connections_alive_at_end"], 0, "{json}");
    assert!(
        json["stopped_early"].as_str().is_some(),
        "the run ends when its only connection is gone: {json}"
    );
}

#[test]
fn ctrl_c_writes_partial_results() {
    let addr = server(|s, _| echo_with(s, |_, _| {}));
    let dir = Temp::new("sigint");
    let json = dir.0.join("out.json");
    let mut command = Command::new(BIN);
    command
        .arg("run")
        .args(
            &Argv::run(addr)
                .connections(4)
                .threads(1)
                .duration("30s")
                .warmup("0s"),
        )
        .arg("--json")
        .arg(&json);
    let child = Spawned::new(command);
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Instant::now();
    child.signal(Signal::SIGINT);
    let out = child.output_within(Duration::from_secs(10));
    assert!(sent.elapsed() < Duration::from_secs(2), "stops promptly");
    assert_eq!(
        out.status.code(),
        Some(1),
        "an interrupted run is not a clean pass"
    );
    let json: serde_json::Value = read_json(&json);
    assert_eq!(json["stopped_early"], "interrupted");
    assert!(json["messages"].as_u64().unwrap() > 0);
}

//! Churn (`--messages-per-connection`): connections closed and replaced, counted, verified, and
//! the limits it runs into (descriptors, ports, a connect that hangs).

use super::*;
use crate::hlog::hlog_series;

/// A churn run: each connection sends `n` messages, closes and is replaced.
fn churn_args(target: impl ToString, n: impl ToString) -> Argv {
    Argv::run(target)
        .connections(4)
        .threads(1)
        .duration("1s")
        .warmup("200ms")
        .flag("--messages-per-connection", n)
}

#[test]
fn churn_against_bench_server_replaces_connections_and_counts_them() {
    let Some((_server, addr)) = bench_server() else {
        return;
    };
    let target = addr.to_string();
    for n in [1u64, 10] {
        let args = churn_args(&target, n);
        let (out, json, _t) = run(&args, Duration::from_secs(10));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "N={n}: {stderr}");
        let json = json.expect("results written");
        assert_eq!(json["errors"]["connect"], 0, "{json}");
        assert_eq!(json["errors"]["mismatch"], 0, "{json}");
        assert_eq!(json["config"]["messages_per_connection"], n, "{json}");
        let connects = json["connects"].as_u64().unwrap();
        let messages = json["messages"].as_u64().unwrap();
        assert!(connects > 0, "N={n}: {json}");
        // Each connection established in the window sends N messages: connects ~ messages / N,
        // give or take the connections in flight at either edge of the window.
        let expected = messages / n;
        assert!(
            connects.abs_diff(expected) <= 4 + 2,
            "N={n}: {connects} connects for {messages} messages"
        );
        assert!(json["connections_per_s"].as_f64().unwrap() > 0.0, "{json}");
        assert!(
            json["connect_latency_us"]["p50"].as_u64().unwrap() >= 1,
            "{json}"
        );
        // The summary on stdout says it too.
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("churn: {connects} connections made")),
            "{stdout}"
        );
    }
}

#[test]
fn churn_without_it_leaves_the_churn_fields_null() {
    let addr = server(|s, _| echo_with(s, |_, _| {}));
    let (out, json, _t) = run(
        &Argv::run(addr)
            .connections(2)
            .threads(1)
            .duration("300ms")
            .warmup("0s"),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(0));
    let json = json.unwrap();
    for field in ["connects", "connections_per_s", "connect_latency_us"] {
        assert!(json[field].is_null(), "{field}: {json}");
    }
    assert!(json["config"]["messages_per_connection"].is_null());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("churn:"));
}

#[test]
fn churn_verifies_every_byte_a_corruption_on_the_third_connection_is_a_mismatch() {
    let addr = server(|s, i| {
        echo_with(s, move |pos, buf| {
            if i == 2 && pos == 0 && !buf.is_empty() {
                buf[0] ^= 0x40;
            }
        })
    });
    let args = churn_args(addr, 10);
    let (out, json, _t) = run(&args, Duration::from_secs(10));
    let json = json.expect("results written despite errors");
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(json["errors"]["mismatch"], 1, "{json}");
}

#[test]
fn bad_messages_per_connection_exits_2_with_one_line() {
    for bad in [
        vec!["--messages-per-connection", "0"],
        vec!["--messages-per-connection", "x"],
    ] {
        let args = Argv::run("127.0.0.1:9").connections(1).flag(bad[0], bad[1]);
        let (out, json, _t) = run(&args, Duration::from_secs(10));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{bad:?}: {stderr}");
        assert!(stderr.contains("messages-per-connection"), "{stderr}");
        assert!(json.is_none());
    }
}

#[test]
fn churn_connect_latency_round_trips_through_the_hlog_apart_from_latency() {
    let addr = server(|s, _| echo_with(s, |_, _| {}));
    let dir = Temp::new("churn-hlog");
    let hlog = dir.0.join("run.hlog");
    let args = churn_args(addr, 5).hlog(&hlog);
    let (out, json, _t) = run(&args, Duration::from_secs(10));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = json.unwrap();
    // Latency (untagged) totals are the messages, untouched by the connect series.
    let latency: u64 = hlog_series(&hlog, None).iter().map(|h| h.len()).sum();
    assert_eq!(latency, json["messages"].as_u64().unwrap());
    let connect: u64 = hlog_series(&hlog, Some("connect"))
        .iter()
        .map(|h| h.len())
        .sum();
    assert_eq!(connect, json["connects"].as_u64().unwrap());
    assert!(connect > 0);
    let text = std::fs::read_to_string(&hlog).unwrap();
    assert!(text.lines().any(|l| l.starts_with("Tag=connect,")));
    // merge keeps it apart from latency too.
    let merged_json = dir.0.join("merged.json");
    let out = Command::new(BIN)
        .args([
            "merge",
            hlog.to_str().unwrap(),
            "--json",
            merged_json.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let merged: serde_json::Value = read_json(&merged_json);
    assert_eq!(merged["messages"], json["messages"]);
    assert!(merged["connect_latency_us"]["p50"].as_u64().unwrap() >= 1);
}

/// All errors of a run document, of every kind.
fn error_count(json: &serde_json::Value) -> u64 {
    let errors = json["errors"].as_object().expect("errors");
    errors.values().map(|v| v.as_u64().unwrap()).sum()
}

/// Every server bench-server has here, with every accept strategy it offers (event loops) or its
/// own (baselines), as its arguments with 2 loops.
fn every_server_and_accept_strategy() -> Vec<Argv> {
    let Some(bin) = bench_server_bin() else {
        return Vec::new();
    };
    let out = Command::new(bin).arg("--capabilities").output().unwrap();
    assert!(out.status.success());
    let caps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut servers = Vec::new();
    for server in caps["servers"].as_array().unwrap() {
        let name = server["name"].as_str().unwrap();
        if server["available"] != true {
            let why = server["unavailable_reason"]
                .as_str()
                .unwrap_or("unavailable");
            skip(&format!("churn against bench-server --backend {name}"), why);
            continue;
        }
        let base = Argv::new().backend(name).loops(2);
        let accepts = server["accepts"].as_array().unwrap();
        if accepts.is_empty() {
            servers.push(base.clone());
        }
        for accept in accepts {
            servers.push(base.clone().accept(accept.as_str().unwrap()));
        }
    }
    servers
}

/// Churn at one message per connection, closed and open loop, against every server and accept
/// strategy: every connection is made, every byte comes back verified, nothing is lost.
#[test]
fn churn_of_one_message_per_connection_against_every_server_and_accept_strategy() {
    let servers = every_server_and_accept_strategy();
    for server_args in &servers {
        let label = server_args.strs().join(" ");
        let (_server, addr) = bench_server_with(server_args).unwrap();
        for rate in [None, Some("2000")] {
            let mut args = churn_args(addr, 1).set("-d", "500ms");
            if let Some(rate) = rate {
                args = args.rate(rate);
            }
            let (out, json, _t) = run(&args, Duration::from_secs(10));
            let stderr = String::from_utf8_lossy(&out.stderr);
            let json = json.unwrap_or_else(|| panic!("{label} rate {rate:?}: {stderr}"));
            assert_eq!(out.status.code(), Some(0), "{label} rate {rate:?}: {json}");
            assert_eq!(error_count(&json), 0, "{label} rate {rate:?}: {json}");
            let connects = json["connects"].as_u64().unwrap();
            let messages = json["messages"].as_u64().unwrap();
            // One message per connection: as many connections as messages, give or take the 4
            // in flight at either edge of the window.
            assert!(
                connects > 0 && connects.abs_diff(messages) <= 8,
                "{label} rate {rate:?}: {connects} connects, {messages} messages"
            );
            if rate.is_some() {
                // The schedule is kept: 2,000 msgs/s for 0.5 s, whatever the churn.
                assert_schedule_kept(&json, 2000.0, 0.5, &label);
            }
        }
    }
    assert!(
        servers.len() >= 3 || servers.is_empty(),
        "at least select, poll and the baselines: {servers:?}"
    );
}

/// An open-loop run kept its schedule: the window holds the messages due in it, at least 80% of
/// them, and at most those plus the backlog a stall carried in from the warm-up. A message answered
/// in the window is measured there wherever it was due (see `windows::backlog_from_the_warm_up_is_
/// measured_when_it_is_answered`), and one due before the window was sent at least that much late;
/// so the window can hold no more than the messages due from (start - the largest send lateness)
/// to its end, plus a tenth for the edges. A client that sent ahead of its schedule fails this:
/// its lateness is small and its count large.
fn assert_schedule_kept(json: &serde_json::Value, rate: f64, duration_s: f64, label: &str) {
    let messages = json["messages"].as_u64().unwrap() as f64;
    let lateness_s = json["send_lateness_us"]["max"].as_f64().unwrap() / 1e6;
    let due = rate * duration_s;
    let most = rate * (duration_s + lateness_s) + 0.1 * due;
    assert!(
        messages >= 0.8 * due && messages <= most,
        "{label}: {messages} messages at {rate}/s for {duration_s} s, at most {most:.0} with a \
         largest send lateness of {lateness_s:.3} s: {json}"
    );
}

/// Open loop under churn keeps its schedule: at N = 10, messages due while a connection is
/// replaced wait for the new one and are sent on it, so the run carries its rate, and about one
/// connection per 10 messages.
#[test]
fn open_loop_churn_keeps_the_schedule_and_replaces_connections() {
    let addr = server(|s, _| echo_with(s, |_, _| {}));
    let args = churn_args(addr, 10).rate(2000);
    let (out, json, _t) = run(&args, Duration::from_secs(10));
    let json = json.expect("results written");
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert_eq!(error_count(&json), 0, "{json}");
    let messages = json["messages"].as_u64().unwrap();
    let connects = json["connects"].as_u64().unwrap();
    assert_schedule_kept(&json, 2000.0, 1.0, "open loop, 10 messages per connection");
    assert!(connects.abs_diff(messages / 10) <= 6, "{json}");
    assert!(json["send_lateness_us"]["p50"].is_u64(), "{json}");
}

/// A replacement connect() that never completes (the server's accept queue is full, so the
/// kernel drops its SYN) is a connect error after --connect-timeout, not a connection slot
/// waiting for the rest of the run.
#[test]
fn a_replacement_connect_that_hangs_times_out_as_a_connect_error() {
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let listener: TcpListener = listener.into();
    std::thread::spawn(move || {
        // Serve the first connection only; before echoing its message, fill the accept queue
        // (backlog 0 holds one connection) with a connection nobody accepts.
        let (stream, _) = listener.accept().unwrap();
        let _filler = TcpStream::connect(addr).unwrap();
        echo_with(stream, |_, _| {});
        std::thread::sleep(Duration::from_secs(10));
    });
    let args = Argv::run(addr)
        .connections(1)
        .duration("5s")
        .warmup("0s")
        .flag("--messages-per-connection", 1)
        .flag("--connect-timeout", "300ms");
    let started = Instant::now();
    let (out, json, _t) = run(&args, Duration::from_secs(10));
    let json = json.expect("results written");
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(json["errors"]["connect"], 1, "{json}");
    // The run ends when its one connection is lost, well before its 5 s.
    assert!(started.elapsed() < Duration::from_secs(3), "{json}");
}

/// `load-gen run ARGS --json FILE` started by `sh -c SCRIPT` (the script ends by running it as
/// `"$LOADGEN" run "$@"`); its output and the JSON it wrote, if any.
fn run_in_shell(
    script: &str,
    envs: &[(&str, &Path)],
    args: &Argv,
    limit: Duration,
) -> (Output, Option<serde_json::Value>, Temp) {
    let dir = Temp::new("shell");
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .env("LOADGEN", BIN)
        .env("DIR", &dir.0)
        .envs(envs.iter().map(|(k, v)| (k, v.as_os_str())));
    run_to_json(command, dir, limit)
}

/// Churn out of descriptors: under an open-files limit just large enough to start the run, the
/// first replacement socket fails with EMFILE, and the run stops with the one line that names the
/// limit, partial results written, instead of losing connections one by one.
#[test]
fn churn_out_of_descriptors_stops_the_run_with_the_remedy() {
    let addr = server(|s, _| echo_with(s, |_, _| {}));
    let target = addr.to_string();
    let args = churn_args(&target, 1);
    // The smallest limit that starts the run is found by trying: below it the run fails at start
    // (a connect or a poller cannot be made), which is a different, earlier error.
    let mut seen = Vec::new();
    for limit in 6..=24 {
        let script = format!("ulimit -n {limit} || exit 99; \"$LOADGEN\" run \"$@\"");
        let (out, json, _t) = run_in_shell(&script, &[], &args, Duration::from_secs(10));
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if stderr.contains("out of file descriptors") {
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
            assert!(stderr.contains("ulimit -n"), "{stderr}");
            let json = json.expect("partial results written");
            let why = json["stopped_early"].as_str().unwrap_or_default();
            assert!(why.contains("out of file descriptors"), "{json}");
            assert!(json["errors"]["connect"].as_u64().unwrap() >= 1, "{json}");
            return;
        }
        seen.push((limit, out.status.code(), stderr));
        if out.status.code() == Some(0) {
            break; // the run started and churned to its end: the limit is past the boundary
        }
    }
    panic!("no open-files limit ran out of descriptors under churn: {seen:#?}");
}

/// Churn out of local ports: in a network namespace of the test's own (loopback only) with 10
/// ephemeral ports and no TIME_WAIT reuse, the client's closed connections hold every port, and
/// connect() fails with EADDRNOTAVAIL: the run stops with the one line naming --source,
/// tcp_tw_reuse and the port range, rather than a silent drop in rate.
#[test]
fn churn_out_of_ports_stops_the_run_with_the_remedies() {
    let Some(bench) = bench_server_bin() else {
        return;
    };
    let namespace = Command::new("unshare").args(["-n", "true"]).output();
    if !namespace.is_ok_and(|o| o.status.success()) {
        return skip(
            "churn out of ports",
            "cannot create a network namespace here (unshare -n needs root or CAP_SYS_ADMIN)",
        );
    }
    let script = r#"
        ip link set lo up || exit 98
        echo "40000 40009" > /proc/sys/net/ipv4/ip_local_port_range || exit 98
        echo 0 > /proc/sys/net/ipv4/tcp_tw_reuse || exit 98
        "$BENCH" --addr 127.0.0.1:7000 --stats-interval 0s --threads 1 > "$DIR/server.out" &
        server=$!
        trap 'kill $server' EXIT
        for _ in $(seq 50); do grep -q listening "$DIR/server.out" && break; sleep 0.1; done
        "$LOADGEN" run "$@"
    "#;
    let outer = format!(
        "exec unshare -n sh -c '{}' \"$0\" \"$@\"",
        script.replace('\'', "'\\''")
    );
    let args = churn_args("127.0.0.1:7000", 1);
    let (out, json, _t) =
        run_in_shell(&outer, &[("BENCH", &bench)], &args, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(98) {
        return skip(
            "churn out of ports",
            &format!(
                "cannot set up the namespace's loopback and sysctls: {}",
                stderr.trim()
            ),
        );
    }
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    for remedy in ["--source", "tcp_tw_reuse", "ip_local_port_range"] {
        assert!(stderr.contains(remedy), "{remedy}: {stderr}");
    }
    let json = json.expect("partial results written");
    assert!(
        json["stopped_early"]
            .as_str()
            .is_some_and(|why| why.contains("ephemeral ports are exhausted")),
        "{json}"
    );
    // 10 ports: the 4 first connections and the replacements until every port is in TIME_WAIT.
    assert!(json["connects"].as_u64().unwrap() <= 10, "{json}");
}

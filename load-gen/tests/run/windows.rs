//! What the measured window holds: latency corrected for stalls, the warm-up kept out of the
//! window but its backlog in, progress during the warm-up, and a start at a given wall-clock time.

use super::*;

#[test]
fn client_cpu_per_message_is_the_measured_windows_not_the_warm_ups() {
    // A client that spins all the time (a spin window longer than the gap between its sends) uses
    // about one core for its whole life. Over a 1.5 s warm-up and a 300 ms window, its CPU per
    // measured message must be the window's: at most what one worker and the main thread can use
    // in the window (2 x 300 ms). Counted from the start of the warm-up it was over 1.8 s.
    let addr = server(|s, _| echo_with(s, |_, _| {}));
    let (out, json, _t) = run(
        &Argv::run(addr)
            .connections(1)
            .threads(1)
            .rate(1000)
            .flag("--spin", "2ms")
            .duration("300ms")
            .warmup("1500ms"),
        Duration::from_secs(30),
    );
    assert_success(&out);
    let json = json.unwrap();
    let messages = json["messages"].as_u64().unwrap() as f64;
    let cpu_s = json["client_cpu_us_per_msg"].as_f64().unwrap() * messages / 1e6;
    let window_s = json["duration_s"].as_f64().unwrap();
    assert!(messages > 0.0);
    assert!(
        cpu_s <= 2.0 * window_s,
        "{cpu_s:.3} s of CPU in a {window_s:.3} s window: the warm-up's is counted"
    );
}

#[test]
fn a_one_second_stall_shows_in_corrected_not_uncorrected_latency() {
    let start = Instant::now();
    let stall = (Duration::from_millis(1200), Duration::from_millis(2200));
    let addr = server(move |s, _| {
        let mut writer = s.try_clone().unwrap();
        echo_with(s, |_, _| {
            let t = start.elapsed();
            if t >= stall.0 && t < stall.1 {
                std::thread::sleep(stall.1 - t); // the whole server stops for a second
            }
        });
        let _ = writer.flush();
    });
    let (out, json, _t) = run(
        &Argv::run(addr)
            .connections(10)
            .threads(1)
            .duration("3500ms")
            .warmup("0s")
            .rate(1000),
        Duration::from_secs(30),
    );
    assert_success(&out);
    let json = json.unwrap();
    let corrected = json["latency_us"]["p99"].as_u64().unwrap();
    let uncorrected = json["latency_uncorrected_us"]["p99"].as_u64().unwrap();
    assert!(
        corrected >= 500_000,
        "corrected p99 shows the 1 s stall: {corrected} us"
    );
    assert!(
        uncorrected < 100_000,
        "uncorrected p99 hides it (coordinated omission): {uncorrected} us"
    );
}

/// The progress lines (plain on a pipe) show the warm-up's rate, not 0 msgs/s.
#[test]
fn progress_lines_show_the_warm_up_rate() {
    let Some((_server, addr)) = bench_server() else {
        return; // said why
    };
    let (out, _, _t) = run(
        &Argv::run(addr)
            .connections(4)
            .threads(1)
            .duration("1s")
            .warmup("2500ms"),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warm_up_rates: Vec<f64> = stderr
        .lines()
        .filter_map(|l| l.split("warm-up: ").nth(1))
        .filter_map(|rest| rest.split(" msgs/s").next()?.parse().ok())
        .collect();
    assert!(!warm_up_rates.is_empty(), "warm-up lines: {stderr}");
    assert!(
        warm_up_rates.iter().all(|&r| r > 0.0),
        "every warm-up line shows the echoes: {stderr}"
    );
}

/// A server that stalls through the warm-up answers its backlog inside the measured window: those
/// echoes count, with their latency from the time they were due (over a second), instead of the
/// window seeing only messages that were also due inside it.
#[test]
fn backlog_from_the_warm_up_is_measured_when_it_is_answered() {
    let start = Instant::now();
    let stall_until = Duration::from_millis(1500);
    let addr = server(move |s, _| {
        echo_with(s, |_, _| {
            if let Some(left) = stall_until.checked_sub(start.elapsed()) {
                std::thread::sleep(left); // nothing is echoed until 1.5 s
            }
        });
    });
    let (out, json, _t) = run(
        &Argv::run(addr)
            .connections(10)
            .threads(1)
            .duration("2s")
            .warmup("1s")
            .rate(1000),
        Duration::from_secs(30),
    );
    assert_success(&out);
    let json = json.unwrap();
    let max = json["latency_us"]["max"].as_u64().unwrap();
    assert!(
        max >= 1_000_000,
        "messages due early in the warm-up, echoed after 1.5 s, are measured: max {max} us"
    );
    assert!(json["messages"].as_u64().unwrap() >= 1000, "{json}");
}

/// `--start-at`: connected at once, the load starts at the given wall-clock time (the hlog's
/// StartTime, which is that plus the warm-up, is not earlier), and the JSON records it; a time
/// more than 120 s ahead, or no time at all, is refused with one line (exit 2).
#[test]
fn start_at_starts_the_load_at_the_given_wall_clock_time() {
    let Some((_server, addr)) = bench_server() else {
        return skip("--start-at", "bench-server is not built");
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let at = now() + 1.5;
    let dir = Temp::new("start-at");
    let hlog = dir.0.join("run.hlog");
    let target = addr.to_string();
    let at_text = format!("{at:.3}");
    let (out, json, _t) = run(
        &Argv::run(&target)
            .connections(2)
            .threads(1)
            .duration("1s")
            .warmup("200ms")
            .flag("--start-at", &at_text)
            .hlog(&hlog),
        Duration::from_secs(30),
    );
    assert_success(&out);
    let json = json.unwrap();
    assert!(
        (json["config"]["start_at"].as_f64().unwrap() - at).abs() < 0.001,
        "{json}"
    );
    let text = std::fs::read_to_string(&hlog).unwrap();
    let start: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#[StartTime: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .expect("a StartTime line");
    // The window opens after the warm-up that starts at `at` (the log keeps milliseconds).
    assert!(
        start >= at + 0.2 - 0.002,
        "window opened at {start}, load was to start at {at}"
    );
    assert!(
        start < at + 0.2 + 1.0,
        "window opened at {start}, {at} asked"
    );
    for bad in [format!("{:.0}", now() + 1000.0), "soon".to_string()] {
        let out = Command::new(BIN)
            .args(["run", "--target", &target, "--start-at", &bad])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{bad}: {stderr}");
    }
}

//! `load-gen run` end to end, against bench-server and against small misbehaving servers written
//! here. Loopback only; every run is bounded by its --duration and a watchdog.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

const BIN: &str = env!("CARGO_BIN_EXE_load-gen");

fn skip(what: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "skipped: {what}: {why}");
}

struct Temp(PathBuf);
impl Temp {
    /// A fresh directory, named by a counter rather than the clock (two in one tick collided).
    fn new(tag: &str) -> Temp {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("load-gen-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p); // left by an earlier process with this pid
        std::fs::create_dir(&p).unwrap();
        Temp(p)
    }
}
impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run load-gen to completion (killed after `limit`); output and the JSON it wrote, if any.
fn run(args: &[&str], limit: Duration) -> (Output, Option<serde_json::Value>, Temp) {
    let dir = Temp::new("run");
    let mut command = Command::new(BIN);
    command.arg("run").args(args);
    run_to_json(command, dir, limit)
}

/// Run `command` (a load-gen run, or a shell that starts one), with `--json DIR/out.json` added,
/// to completion (killed after `limit`); its output and the JSON, if it wrote one.
fn run_to_json(
    mut command: Command,
    dir: Temp,
    limit: Duration,
) -> (Output, Option<serde_json::Value>, Temp) {
    let json = dir.0.join("out.json");
    let mut child = command
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_with_limit(&mut child, limit);
    let value = std::fs::read_to_string(&json)
        .ok()
        .map(|t| serde_json::from_str(&t).expect("valid JSON"));
    (out, value, dir)
}

fn wait_with_limit(child: &mut Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("load-gen did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    Output {
        status: child.wait().unwrap(),
        stdout,
        stderr,
    }
}

/// A test server: each connection is served by `serve` on its own thread.
fn server(serve: impl Fn(TcpStream, usize) + Send + Sync + Clone + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let serve = serve.clone();
            std::thread::spawn(move || serve(stream, i));
        }
    });
    addr
}

/// Echo until EOF, passing each chunk through `alter` (position in the stream, bytes).
fn echo_with(mut s: TcpStream, mut alter: impl FnMut(u64, &mut [u8])) {
    let mut buf = [0u8; 16 * 1024];
    let mut pos = 0u64;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        alter(pos, &mut buf[..n]);
        pos += n as u64;
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// A child process killed when dropped, so a failing test leaves no server behind.
struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// bench-server, built beside this test by `cargo test --workspace`; `None` (skipped, said) if not.
fn bench_server_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent()?.parent()?.join("bench-server");
    if !bin.exists() {
        skip(
            "load-gen against bench-server",
            "bench-server is not built (run `cargo test --workspace`)",
        );
        return None;
    }
    Some(bin)
}

/// bench-server with its default backend and one loop.
fn bench_server() -> Option<(KillOnDrop, SocketAddr)> {
    bench_server_with(&["--threads", "1"])
}

/// bench-server on a loopback port with `args`, and the address it listens on.
fn bench_server_with(args: &[&str]) -> Option<(KillOnDrop, SocketAddr)> {
    let mut child = Command::new(bench_server_bin()?)
        .args(["--addr", "127.0.0.1:0", "--stats-interval", "0s"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    Some((KillOnDrop(child), addr))
}

#[test]
fn closed_and_open_loop_against_bench_server_and_the_hlog_round_trips() {
    let Some((_server, addr)) = bench_server() else {
        return;
    };
    let target = addr.to_string();
    let dir = Temp::new("hlog");
    let hlog = dir.0.join("run.hlog");
    let (out, json, _t) = run(
        &[
            "--target",
            &target,
            "-c",
            "50",
            "-t",
            "2",
            "-d",
            "2s",
            "--warmup",
            "500ms",
            "--hlog",
            hlog.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    let json = json.expect("JSON written");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json["schema"], "pollbench.load-gen.run/1");
    let messages = json["messages"].as_u64().unwrap();
    assert!(messages > 1000, "{json}");
    assert_eq!(json["bytes"].as_u64().unwrap(), messages * 64);
    assert_eq!(json["errors"]["mismatch"], 0);
    assert_eq!(
        json["intervals"].as_array().unwrap().len(),
        2,
        "one interval per measured second"
    );
    for key in ["p50", "p90", "p99", "p999", "p9999", "max", "mean"] {
        assert!(json["latency_us"][key].as_f64().unwrap() > 0.0, "{key}");
        assert!(json["latency_uncorrected_us"][key].is_number(), "{key}");
    }
    // The interval log reads back with the hdrhistogram crate and holds every measured message.
    let text = std::fs::read(&hlog).unwrap();
    let header = String::from_utf8_lossy(&text);
    assert!(
        header.contains("#[Histogram log format version 1.3]")
            && header.contains("\"StartTimestamp\"")
    );
    let mut deserializer = hdrhistogram::serialization::Deserializer::new();
    let mut total = 0;
    let mut intervals = 0;
    for entry in hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&text) {
        if let hdrhistogram::serialization::interval_log::LogEntry::Interval(h) =
            entry.expect("valid log line")
        {
            if h.tag().is_some() {
                continue; // a tagged series, read below
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(h.encoded_histogram())
                .unwrap();
            let hist: hdrhistogram::Histogram<u64> =
                deserializer.deserialize(&mut &bytes[..]).unwrap();
            total += hist.len();
            intervals += 1;
        }
    }
    assert_eq!(intervals, 2);
    assert_eq!(total, messages, "the hlog holds every measured message");
    // Their uncorrected latency too, tagged, second by second, so several clients merge it.
    let uncorrected = hlog_series(&hlog, Some("uncorrected"));
    assert_eq!(uncorrected.len(), 2);
    assert_eq!(uncorrected.iter().map(|h| h.len()).sum::<u64>(), messages);
    let max = uncorrected.iter().map(|h| h.max()).max().unwrap();
    let json_max = json["latency_uncorrected_us"]["max"].as_u64().unwrap();
    assert!(
        max.abs_diff(json_max) <= json_max / 500 + 1,
        "hlog max {max} vs JSON {json_max}"
    );
    // Two client machines' logs merge exactly: here the same log twice doubles every count.
    let merged_json = dir.0.join("merged.json");
    let out = Command::new(BIN)
        .args([
            "merge",
            hlog.to_str().unwrap(),
            hlog.to_str().unwrap(),
            "--json",
            merged_json.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged_json).unwrap()).unwrap();
    assert_eq!(merged["messages"].as_u64().unwrap(), 2 * messages);
    assert_eq!(merged["intervals"].as_array().unwrap().len(), 2);
    // The uncorrected series merges too: the same log twice keeps its maximum.
    let merged_max = merged["latency_uncorrected_us"]["max"].as_u64().unwrap();
    assert_eq!(merged_max, max, "{merged}");
    let bad = Command::new(BIN)
        .args(["merge", "/nonexistent.hlog"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));

    // Open loop: the rate is honoured even below the thread count (wrk2 turned that into full load).
    let (out, json, _t) = run(
        &[
            "--target", &target, "-c", "4", "-t", "4", "-d", "3s", "--warmup", "0s", "-R", "3",
        ],
        Duration::from_secs(30),
    );
    assert!(out.status.success());
    let sent = json.unwrap()["messages"].as_u64().unwrap();
    assert!((6..=12).contains(&sent), "3 msgs/s for 3 s: {sent}");
}

/// The interval histograms of an hlog with the given tag (None: untagged), decoded with the
/// hdrhistogram crate alone.
fn hlog_series(hlog: &Path, tag: Option<&str>) -> Vec<hdrhistogram::Histogram<u64>> {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let text = std::fs::read(hlog).unwrap();
    let mut deserializer = hdrhistogram::serialization::Deserializer::new();
    IntervalLogIterator::new(&text)
        .filter_map(|entry| match entry.expect("valid log line") {
            LogEntry::Interval(h) if h.tag().map(|t| t.as_str()) == tag => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(h.encoded_histogram())
                    .unwrap();
                Some(deserializer.deserialize(&mut &bytes[..]).unwrap())
            }
            _ => None,
        })
        .collect()
}

/// A run's `send_lateness_us`, checked for the percentiles' order; None when null.
fn lateness(json: &serde_json::Value) -> Option<[u64; 6]> {
    let l = &json["send_lateness_us"];
    assert!(
        json.as_object().unwrap().contains_key("send_lateness_us"),
        "written even when null: {json}"
    );
    if l.is_null() {
        return None;
    }
    let p = ["p50", "p90", "p99", "p999", "p9999", "max"].map(|k| l[k].as_u64().unwrap());
    assert!(p.windows(2).all(|w| w[0] <= w[1]), "ordered: {p:?}");
    let mean = l["mean"].as_f64().unwrap();
    assert!(mean >= 0.0 && mean <= p[5] as f64, "{l}");
    Some(p)
}

#[test]
fn open_loop_records_send_lateness_in_the_json_and_the_hlog_and_merge_keeps_it() {
    let addr = server(|s, _| echo_with(s, |_, _| {}));
    let target = addr.to_string();
    let dir = Temp::new("lateness");
    let open_run = |name: &str, spin: &str| {
        let hlog = dir.0.join(name);
        let (out, json, _t) = run(
            &[
                "--target",
                &target,
                "-c",
                "2",
                "-t",
                "1",
                "-R",
                "200",
                "-d",
                "2s",
                "--warmup",
                "200ms",
                "--spin",
                spin,
                "--hlog",
                hlog.to_str().unwrap(),
            ],
            Duration::from_secs(30),
        );
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("send lateness"), "{stdout}");
        (json.expect("JSON written"), hlog)
    };
    let (a, a_hlog) = open_run("a.hlog", "0");
    let (b, b_hlog) = open_run("b.hlog", "35us");
    assert_eq!(a["config"]["spin"].as_f64(), Some(0.0));
    assert_eq!(b["config"]["spin"].as_f64(), Some(35e-6));
    for (json, hlog) in [(&a, &a_hlog), (&b, &b_hlog)] {
        let messages = json["messages"].as_u64().unwrap();
        assert!(messages > 100, "{json}");
        let p = lateness(json).expect("open loop has send lateness");
        // The hlog holds one lateness histogram per latency one, over the same messages.
        let latency = hlog_series(hlog, None);
        let late = hlog_series(hlog, Some("send_lateness"));
        assert_eq!(latency.len(), 2, "one latency interval per measured second");
        assert_eq!(late.len(), latency.len());
        for (l, t) in latency.iter().zip(&late) {
            assert_eq!(
                l.len(),
                t.len(),
                "each second's messages, once in each series"
            );
        }
        let late_max = late.iter().map(|h| h.max()).max().unwrap();
        assert_eq!(late_max, p[5], "the JSON's max is the hlog's");
        // The schema's total of the log is latency alone, every measured message once.
        let total = pollbench_schema::hlog::total(hlog).unwrap();
        assert_eq!(total.len(), messages);
        assert_eq!(total.max(), json["latency_us"]["max"].as_u64().unwrap());
        let log = pollbench_schema::hlog::read_log(hlog).unwrap();
        let late_total = log.total_of("send_lateness").unwrap();
        assert_eq!(late_total.len(), messages);
    }

    // merge adds lateness as it adds latency, and keeps it apart.
    let merged_json = dir.0.join("merged.json");
    let out = Command::new(BIN)
        .args(["merge", a_hlog.to_str().unwrap(), b_hlog.to_str().unwrap()])
        .arg("--json")
        .arg(&merged_json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("send lateness"), "{stdout}");
    let merged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged_json).unwrap()).unwrap();
    let both = a["messages"].as_u64().unwrap() + b["messages"].as_u64().unwrap();
    assert_eq!(merged["messages"].as_u64().unwrap(), both);
    let m = lateness(&merged).expect("merged send lateness");
    let (pa, pb) = (lateness(&a).unwrap(), lateness(&b).unwrap());
    assert_eq!(m[5], pa[5].max(pb[5]), "the merged max is the larger run's");
    let lat_max = |j: &serde_json::Value| j["latency_us"]["max"].as_u64().unwrap();
    assert_eq!(lat_max(&merged), lat_max(&a).max(lat_max(&b)));

    // Closed loop: no intended send time, so no lateness: null in the JSON, no tagged series.
    let closed_hlog = dir.0.join("closed.hlog");
    let (out, json, _t) = run(
        &[
            "--target",
            &target,
            "-c",
            "2",
            "-t",
            "1",
            "-d",
            "1s",
            "--warmup",
            "0s",
            "--hlog",
            closed_hlog.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = json.unwrap();
    assert_eq!(lateness(&json), None, "{json}");
    assert!(hlog_series(&closed_hlog, Some("send_lateness")).is_empty());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("send lateness"));
    // Merged with an open-loop log, lateness over only some logs is left out, and said so.
    let out = Command::new(BIN)
        .args([
            "merge",
            a_hlog.to_str().unwrap(),
            closed_hlog.to_str().unwrap(),
        ])
        .arg("--json")
        .arg(&merged_json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged_json).unwrap()).unwrap();
    assert_eq!(lateness(&merged), None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("send lateness left out") && stderr.contains("closed.hlog"),
        "{stderr}"
    );
}

/// The `#[StartTime: ...]` of an hlog, in seconds since the epoch.
fn hlog_start_time(hlog: &Path) -> f64 {
    let text = std::fs::read_to_string(hlog).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("#[StartTime: "))
        .expect("a StartTime line");
    line.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn the_hlog_start_time_is_the_measured_windows_start_after_the_warm_up() {
    let addr = server(|s, _| echo_with(s, |_, _| {}));
    let dir = Temp::new("starttime");
    let hlog = dir.0.join("run.hlog");
    let epoch = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let before = epoch(std::time::SystemTime::now());
    let (out, json, _t) = run(
        &[
            "--target",
            &addr.to_string(),
            "-c",
            "2",
            "-t",
            "1",
            "-d",
            "1s",
            "--warmup",
            "1500ms",
            "--hlog",
            hlog.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    let after = epoch(std::time::SystemTime::now());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(json.unwrap()["messages"].as_u64().unwrap() > 0);
    // The intervals count from the end of the warm-up, so StartTime must too: at least the warm-up
    // after the process started, and at least the measured second before it ended. (Taken before
    // the warm-up, it was early by 1.5 s, and merge misaligned logs whose warm-ups differ.)
    let start = hlog_start_time(&hlog);
    assert!(
        start >= before + 1.5,
        "StartTime {start:.3} is before the warm-up ended (process started {before:.3})"
    );
    assert!(
        start <= after - 1.0,
        "StartTime {start:.3}, run ended {after:.3}"
    );
}

#[test]
fn client_cpu_per_message_is_the_measured_windows_not_the_warm_ups() {
    // A client that spins all the time (a spin window longer than the gap between its sends) uses
    // about one core for its whole life. Over a 1.5 s warm-up and a 300 ms window, its CPU per
    // measured message must be the window's: at most what one worker and the main thread can use
    // in the window (2 x 300 ms). Counted from the start of the warm-up it was over 1.8 s.
    let addr = server(|s, _| echo_with(s, |_, _| {}));
    let (out, json, _t) = run(
        &[
            "--target",
            &addr.to_string(),
            "-c",
            "1",
            "-t",
            "1",
            "-R",
            "1000",
            "--spin",
            "2ms",
            "-d",
            "300ms",
            "--warmup",
            "1500ms",
        ],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
fn a_corrupted_byte_is_a_mismatch_and_exit_1() {
    let addr = server(|s, _| {
        echo_with(s, |pos, buf| {
            if (pos..pos + buf.len() as u64).contains(&1000) {
                buf[(1000 - pos) as usize] ^= 0x40;
            }
        })
    });
    let (out, json, _t) = run(
        &[
            "--target",
            &addr.to_string(),
            "-c",
            "4",
            "-t",
            "1",
            "-d",
            "1s",
            "--warmup",
            "0s",
        ],
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
        &[
            "--target",
            &addr.to_string(),
            "-c",
            "10",
            "-t",
            "1",
            "-d",
            "3500ms",
            "--warmup",
            "0s",
            "-R",
            "1000",
        ],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
        &[
            "--target",
            &addr.to_string(),
            "-c",
            "4",
            "-t",
            "1",
            "-d",
            "1s",
            "--warmup",
            "2500ms",
        ],
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
        &[
            "--target",
            &addr.to_string(),
            "-c",
            "10",
            "-t",
            "1",
            "-d",
            "2s",
            "--warmup",
            "1s",
            "-R",
            "1000",
        ],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = json.unwrap();
    let max = json["latency_us"]["max"].as_u64().unwrap();
    assert!(
        max >= 1_000_000,
        "messages due early in the warm-up, echoed after 1.5 s, are measured: max {max} us"
    );
    assert!(json["messages"].as_u64().unwrap() >= 1000, "{json}");
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
        &[
            "--target",
            &addr.to_string(),
            "-c",
            "6",
            "-t",
            "2",
            "-d",
            "2s",
            "--warmup",
            "0s",
        ],
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
        &[
            "--target",
            &addr.to_string(),
            "-c",
            "8",
            "-t",
            "2",
            "-d",
            "30s",
            "--warmup",
            "0s",
        ],
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
        &[
            "--target",
            &target,
            "-c",
            "3",
            "--connect-timeout",
            "2s",
            "-d",
            "5s",
        ],
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
    for args in [
        vec!["run", "--target", live, "--cpus", "0-4000000000"],
        vec!["run", "--target", live, "-c", "2", "-d", "100000000y"],
        vec!["run", "--target", live, "-c", "2", "--warmup", "100000000y"],
        vec![
            "run",
            "--target",
            live,
            "-c",
            "2",
            "--timeout",
            "100000000y",
        ],
        vec!["run", "--target", live, "-c", "1000", "--pipeline", "100M"],
        vec![
            "run",
            "--target",
            live,
            "-c",
            "2",
            "-R",
            "100M",
            "--timeout",
            "30s",
        ],
        vec!["run"],
        vec!["run", "--target", "nowhere"],
        vec!["run", "--target", "127.0.0.1:9", "--size", "12XB"],
        vec!["run", "--target", "127.0.0.1:9", "--duration", "soon"],
        vec!["run", "--target", "127.0.0.1:9", "--backend", "nonesuch"],
        vec!["run", "--target", "127.0.0.1:9", "-c", "0"],
        vec!["run", "--target", "127.0.0.1:9", "--cpus", "100000"],
        vec!["run", "--target", "127.0.0.1:9", "--cpus", "3-1"],
        vec!["run", "--target", "127.0.0.1:9", "--spin", "soon"],
        vec!["run", "--target", "127.0.0.1:9", "--spin", "-5us"],
        vec!["run", "--target", "127.0.0.1:9", "--spin", "2s"],
        vec!["fly"],
    ] {
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
    let mut child = cmd
        .args([BIN, "run", "--target", &target, "-c", "3000", "-t", "3000"])
        .args(["-d", "1s", "--connect-timeout", "1s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_with_limit(&mut child, Duration::from_secs(60));
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
        &[
            "--target",
            &addr.to_string(),
            "-c",
            "1",
            "-t",
            "1",
            "-R",
            "1000",
            "-d",
            "3s",
            "--warmup",
            "0s",
            "--timeout",
            "1s",
        ],
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
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--target",
            &addr.to_string(),
            "-c",
            "4",
            "-t",
            "1",
            "-d",
            "30s",
            "--warmup",
            "0s",
            "--json",
        ])
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Instant::now();
    nix_kill(child.id(), libc::SIGINT);
    let out = wait_with_limit(&mut child, Duration::from_secs(10));
    assert!(sent.elapsed() < Duration::from_secs(2), "stops promptly");
    assert_eq!(
        out.status.code(),
        Some(1),
        "an interrupted run is not a clean pass"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(json["stopped_early"], "interrupted");
    assert!(json["messages"].as_u64().unwrap() > 0);
}

fn nix_kill(pid: u32, signal: i32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// A churn run: each connection sends `n` messages, closes and is replaced.
fn churn_args(target: &str, n: &str) -> Vec<String> {
    [
        "--target",
        target,
        "-c",
        "4",
        "-t",
        "1",
        "-d",
        "1s",
        "--warmup",
        "200ms",
        "--messages-per-connection",
        n,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn churn_against_bench_server_replaces_connections_and_counts_them() {
    let Some((_server, addr)) = bench_server() else {
        return;
    };
    let target = addr.to_string();
    for n in [1u64, 10] {
        let args = churn_args(&target, &n.to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
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
        &[
            "--target",
            &addr.to_string(),
            "-c",
            "2",
            "-t",
            "1",
            "-d",
            "300ms",
            "--warmup",
            "0s",
        ],
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
    let args = churn_args(&addr.to_string(), "10");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
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
        let mut args = vec!["--target", "127.0.0.1:9", "-c", "1"];
        args.extend(bad.iter().copied());
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
    let mut args = churn_args(&addr.to_string(), "5");
    args.extend(["--hlog".to_string(), hlog.to_str().unwrap().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
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
    let merged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged_json).unwrap()).unwrap();
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
fn every_server_and_accept_strategy() -> Vec<Vec<String>> {
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
        let base = ["--backend", name, "--threads", "2"]
            .map(String::from)
            .to_vec();
        let accepts = server["accepts"].as_array().unwrap();
        if accepts.is_empty() {
            servers.push(base.clone());
        }
        for accept in accepts {
            let mut args = base.clone();
            args.extend(["--accept".into(), accept.as_str().unwrap().into()]);
            servers.push(args);
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
        let server_args: Vec<&str> = server_args.iter().map(String::as_str).collect();
        let label = server_args.join(" ");
        let (_server, addr) = bench_server_with(&server_args).unwrap();
        let target = addr.to_string();
        for rate in [None, Some("2000")] {
            let mut args = churn_args(&target, "1");
            let position = args.iter().position(|a| a == "-d").unwrap();
            args[position + 1] = "500ms".into();
            if let Some(rate) = rate {
                args.extend(["-R".into(), rate.into()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
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
                assert!(
                    (800..=1100).contains(&messages),
                    "{label}: {messages} messages at 2,000/s for 0.5 s: {json}"
                );
            }
        }
    }
    assert!(
        servers.len() >= 3 || servers.is_empty(),
        "at least select, poll and the baselines: {servers:?}"
    );
}

/// Open loop under churn keeps its schedule: at N = 10, messages due while a connection is
/// replaced wait for the new one and are sent on it, so the run carries its rate, and about one
/// connection per 10 messages.
#[test]
fn open_loop_churn_keeps_the_schedule_and_replaces_connections() {
    let addr = server(|s, _| echo_with(s, |_, _| {}));
    let mut args = churn_args(&addr.to_string(), "10");
    args.extend(["-R".into(), "2000".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, json, _t) = run(&args, Duration::from_secs(10));
    let json = json.expect("results written");
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert_eq!(error_count(&json), 0, "{json}");
    let messages = json["messages"].as_u64().unwrap();
    let connects = json["connects"].as_u64().unwrap();
    assert!((1800..=2200).contains(&messages), "{json}");
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
    let args = [
        "--target",
        &addr.to_string(),
        "-c",
        "1",
        "-d",
        "5s",
        "--warmup",
        "0s",
        "--messages-per-connection",
        "1",
        "--connect-timeout",
        "300ms",
    ];
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
    args: &[&str],
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
    let args = churn_args(&target, "1");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
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
    let args = churn_args("127.0.0.1:7000", "1");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
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
        &[
            "--target",
            &target,
            "-c",
            "2",
            "-t",
            "1",
            "-d",
            "1s",
            "--warmup",
            "200ms",
            "--start-at",
            &at_text,
            "--hlog",
            hlog.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

//! What a run writes: the JSON document and the interval log (hlog), read back independently,
//! merged, with send lateness in open loop and the measured window's start time.

use super::*;

use base64::Engine as _;

#[test]
fn closed_and_open_loop_against_bench_server_and_the_hlog_round_trips() {
    let Some((_server, addr)) = bench_server() else {
        return;
    };
    let target = addr.to_string();
    let dir = Temp::new("hlog");
    let hlog = dir.0.join("run.hlog");
    let (out, json, _t) = run(
        &Argv::run(&target)
            .connections(50)
            .threads(2)
            .duration("2s")
            .warmup("500ms")
            .hlog(&hlog),
        Duration::from_secs(30),
    );
    let json = json.expect("JSON written");
    assert_success(&out);
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
    assert_success(&out);
    let merged: serde_json::Value = read_json(&merged_json);
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
        &Argv::run(&target)
            .connections(4)
            .threads(4)
            .duration("3s")
            .warmup("0s")
            .rate(3),
        Duration::from_secs(30),
    );
    assert!(out.status.success());
    let sent = json.unwrap()["messages"].as_u64().unwrap();
    assert!((6..=12).contains(&sent), "3 msgs/s for 3 s: {sent}");
}

/// The interval histograms of an hlog with the given tag (None: untagged), decoded with the
/// hdrhistogram crate alone.
pub(crate) fn hlog_series(hlog: &Path, tag: Option<&str>) -> Vec<hdrhistogram::Histogram<u64>> {
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
            &Argv::run(&target)
                .connections(2)
                .threads(1)
                .rate(200)
                .duration("2s")
                .warmup("200ms")
                .flag("--spin", spin)
                .hlog(&hlog),
            Duration::from_secs(30),
        );
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert_success(&out);
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
    assert_success(&out);
    assert!(stdout.contains("send lateness"), "{stdout}");
    let merged: serde_json::Value = read_json(&merged_json);
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
        &Argv::run(&target)
            .connections(2)
            .threads(1)
            .duration("1s")
            .warmup("0s")
            .hlog(&closed_hlog),
        Duration::from_secs(30),
    );
    assert_success(&out);
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
    assert_success(&out);
    let merged: serde_json::Value = read_json(&merged_json);
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
        &Argv::run(addr)
            .connections(2)
            .threads(1)
            .duration("1s")
            .warmup("1500ms")
            .hlog(&hlog),
        Duration::from_secs(30),
    );
    let after = epoch(std::time::SystemTime::now());
    assert_success(&out);
    let json = json.unwrap();
    assert!(json["messages"].as_u64().unwrap() > 0);
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
    // The run document says when its window opened: the same moment, so a server's readings can
    // be cut to it.
    let opened = json["window_start_unix_s"]
        .as_f64()
        .expect("window_start_unix_s");
    assert!(
        (opened - start).abs() < 0.002,
        "{opened} vs StartTime {start}"
    );
}

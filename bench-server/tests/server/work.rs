//! `--work`: a known cost per echoed message, in every server kind; and what it refuses.

use super::*;

/// Messages each run echoes, one at a time: N × 200 µs = 100 ms of work.
const N: usize = 500;
const SIZE: usize = 64;
const WORK: Duration = Duration::from_micros(200);

/// Echo N messages of 64 B to a server run with `args` (plus `--work 200us --message-size 64B`
/// if `work`), every other one written in two parts so that a message spans the server's reads;
/// the server's CPU time (user + system) from its stats JSON.
fn cpu_of_echoes(args: &[&str], work: bool) -> Duration {
    let mut argv = args.to_vec();
    if work {
        argv.extend(["--work", "200us", "--message-size", "64B"]);
    }
    let server = Server::start(&argv, None);
    let mut stream = server.connect();
    stream.set_nodelay(true).unwrap();
    let message = payload(SIZE, 5);
    let mut back = [0u8; SIZE];
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..N {
        if i % 2 == 1 {
            stream.write_all(&message[..30]).unwrap();
            stream.write_all(&message[30..]).unwrap();
        } else {
            stream.write_all(&message).unwrap();
        }
        stream.read_exact(&mut back).expect("the echo");
        assert_eq!(back[..], message[..], "{argv:?}: message {i}");
        assert!(Instant::now() < deadline, "{argv:?}: {i} echoes in 60 s");
    }
    drop(stream);
    let (status, _, json) = server.stop();
    assert!(status.success(), "{argv:?}: {status}");
    let config = &json["config"];
    if work {
        assert_eq!(
            (config["work_ns"].as_u64(), config["message_size"].as_u64()),
            (Some(200_000), Some(64)),
            "{argv:?}"
        );
    } else {
        assert!(
            config["work_ns"].is_null() && config["message_size"].is_null(),
            "{argv:?}: {config}"
        );
    }
    let cpu = &json["cpu"];
    Duration::from_secs_f64(cpu["user_s"].as_f64().unwrap() + cpu["system_s"].as_f64().unwrap())
}

/// With `--work 200us --message-size 64B`, N messages cost at least N × 200 µs of the server's
/// CPU, and noticeably more than the same run without: the work is spun, not slept, once per
/// whole message. (A spin preempted by a loaded machine costs less CPU than its time: rerun alone
/// before believing a failure.)
fn assert_work_costs_cpu(args: &[&str]) {
    let without = cpu_of_echoes(args, false);
    let with = cpu_of_echoes(args, true);
    let planted = WORK * N as u32;
    eprintln!("{args:?}: {without:?} of CPU without --work, {with:?} with {planted:?} planted");
    assert!(
        with >= planted,
        "{args:?}: {with:?} of CPU for {N} messages of {WORK:?} work"
    );
    assert!(
        with >= without + planted / 2,
        "{args:?}: {with:?} with --work, {without:?} without"
    );
}

#[test]
fn work_costs_cpu_in_every_event_loop() {
    for (kind, _) in backends() {
        assert_work_costs_cpu(&["--backend", kind.name()]);
    }
}

#[test]
fn work_costs_cpu_in_the_baselines() {
    assert_work_costs_cpu(&["--backend", "threads"]);
    assert_work_costs_cpu(&["--backend", "tokio", "--threads", "1"]);
}

#[test]
fn work_costs_cpu_in_completion_mode() {
    if completion_available("bench-server --backend io_uring_completion --work") {
        assert_work_costs_cpu(&["--backend", "io_uring_completion", "--threads", "1"]);
    }
}

/// More than 1 s a message, --work without --message-size (or the
/// other way round), and values that do not parse: exit 2 with one line, before listening.
#[test]
fn work_refuses_what_makes_no_sense() {
    let cases: [&[&str]; 6] = [
        &["--work", "2s", "--message-size", "64B"],
        &["--work", "200us"],
        &["--message-size", "64B"],
        &["--work", "soon", "--message-size", "64B"],
        &["--work", "200us", "--message-size", "0B"],
        &[
            "--backend",
            "threads",
            "--work",
            "200us",
            "--message-size",
            "12XB",
        ],
    ];
    for args in cases {
        let out = refusal(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
        assert!(
            stderr.starts_with("bench-server: ")
                && (stderr.contains("--work") || stderr.contains("--message-size")),
            "names the flag: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: never started listening");
    }
}

/// `--work 0s` is off, with or without --message-size: it runs, and records no work.
#[test]
fn zero_work_is_off() {
    for args in [
        &["--work", "0s"][..],
        &["--work", "0s", "--message-size", "1KiB"],
    ] {
        let server = Server::start(args, None);
        assert!(echo(&server.connect(), &payload(4096, 1)), "{args:?}");
        let (status, _, json) = server.stop();
        assert!(status.success(), "{args:?}");
        assert!(
            json["config"]["work_ns"].is_null(),
            "{args:?}: {}",
            json["config"]
        );
    }
}

/// `--help` documents both flags: what the work is, and why the message size is needed.
#[test]
fn help_documents_work_and_message_size() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let says = |text: &str| help.contains(text);
    assert!(says("--work <DURATION>") && says("busy wait"), "{help}");
    assert!(
        says("--message-size <BYTES>") && says("frames nothing"),
        "{help}"
    );
}

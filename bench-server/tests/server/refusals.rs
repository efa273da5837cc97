//! Combinations bench-server refuses before anything runs.

use super::*;

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
    let out = refusal(&args);
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

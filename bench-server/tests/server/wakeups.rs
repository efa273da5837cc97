//! Wake-ups under churn: the shared listener's herd, loops that wait on no listener, accepts per
//! interval, and an idle completion server.

use super::*;

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

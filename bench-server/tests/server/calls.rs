//! The calls and CPU time a stats document reports, counted exactly.

use super::*;

/// What every document must say of the process's CPU time and of the server's calls: CPU time was
/// spent; the event loops and the threads baseline count their calls (every read, write and wait
/// is one, and so is every registration and every call that would block), tokio does not (`null`);
/// an event loop registered each connection it served. Returns the totals' call counts, if any.
pub(crate) fn check_cpu_and_calls(json: &serde_json::Value, label: &str) -> Option<Calls> {
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
pub(crate) struct Calls {
    syscalls: u64,
    registrations: u64,
    would_block: u64,
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

//! Where the cells run: network namespaces, shaped links, and two clients merged into one cell.

use super::*;

/// `topology = "netns"`: bench-server runs in a network namespace of its own at 198.18.0.1 and
/// load-gen in another, the cell completes, meta.json and the report say so, and no namespace of
/// the runner's is left once it exits. Where namespaces cannot be made, the cells are skipped with
/// the reason (and this test says so).
#[test]
fn a_netns_topology_runs_server_and_client_in_namespaces_and_removes_them() {
    let toml = "description = \"netns\"\nduration = \"300ms\"\nwarmup = \"100ms\"\n\
                topology = \"netns\"\nclients = 2\n\
                [[sweep]]\nname = \"n\"\nbackends = [\"epoll\", \"poll\"]\nconnections = [10]\n";
    let s = run_suite("netns", toml);
    let outcome = s.outcome("n-poll-c10");
    if outcome["status"] == "skipped" {
        let why = outcome["reason"].as_str().unwrap_or_default().to_string();
        assert!(why.starts_with("topology netns: "), "{outcome}");
        return skip("netns topology", &why);
    }
    assert_eq!(outcome["status"], "ok", "{outcome}");
    let topology = s.meta["topology"].as_str().expect("meta.json says where");
    assert!(
        topology.contains("198.18.0.1")
            && topology.contains("198.18.0.2")
            && topology.contains("198.18.0.3"),
        "{topology}"
    );
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(s.run.join("cells").join(name)).unwrap())
            .unwrap()
    };
    let run = read("n-poll-c10.json");
    assert!(
        run["config"]["target"]
            .as_str()
            .unwrap()
            .starts_with("198.18.0.1:"),
        "{run}"
    );
    assert!(run["messages"].as_u64().unwrap() > 0, "{run}");
    // Two clients, one per client host, each from its own address.
    let hosts: Vec<&str> = run["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["198.18.0.2", "198.18.0.3"], "{run}");
    let parts: u64 = ["n-poll-c10.client1.json", "n-poll-c10.client2.json"]
        .iter()
        .map(|p| read(p)["messages"].as_u64().unwrap())
        .sum();
    assert_eq!(
        run["messages"].as_u64().unwrap(),
        parts,
        "merged = the sum of the parts"
    );
    let server = read("n-poll-c10.server.json");
    // It echoed at least what the clients counted (they leave out the warm-up).
    let totals = &server["totals"];
    assert!(
        totals["bytes_out"].as_u64().unwrap() >= run["bytes"].as_u64().unwrap(),
        "{server}"
    );
    assert!(
        server["config"]["addr"]
            .as_str()
            .unwrap()
            .starts_with("198.18.0.1:"),
        "{server}"
    );
    let report = std::fs::read_to_string(s.run.join("report.md")).unwrap();
    assert!(report.contains("Network: netns: "), "{report}");
    // The runner has exited: every namespace it made (named pollbench-PID-...) is gone.
    let listed = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    let topology_ns = topology
        .split_whitespace()
        .find(|w| w.starts_with("pollbench-"))
        .unwrap();
    let prefix = topology_ns.rsplit_once('-').unwrap().0;
    assert!(!listed.contains(prefix), "{prefix} left behind: {listed}");
}

/// `clients = 2`: two load-gen processes share a cell's connections (5 and 5 of 10), and the
/// cell's run document is their exact merge: counts are the sums of the parts', the merged hlog
/// holds every message, and the server echoed at least that many.
#[test]
fn two_clients_share_a_cell_and_their_runs_are_merged_exactly() {
    let toml = "description = \"two clients\"\nduration = \"500ms\"\nwarmup = \"100ms\"\n\
                clients = 2\n\
                [[sweep]]\nname = \"m\"\nbackends = [\"epoll\"]\nconnections = [10]\n";
    let s = run_suite("clients", toml);
    assert_eq!(s.outcome("m-epoll-c10")["status"], "ok");
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(s.run.join("cells").join(name)).unwrap())
            .unwrap()
    };
    let merged = read("m-epoll-c10.json");
    let parts = [
        read("m-epoll-c10.client1.json"),
        read("m-epoll-c10.client2.json"),
    ];
    let field = |v: &serde_json::Value, name: &str| v[name].as_u64().unwrap();
    for name in ["messages", "connections", "bytes"] {
        assert_eq!(
            field(&merged, name),
            parts.iter().map(|p| field(p, name)).sum::<u64>(),
            "{name}: {merged}"
        );
    }
    assert_eq!(merged["config"]["connections"], 10);
    for p in &parts {
        assert_eq!(p["config"]["connections"], 5, "{p}");
    }
    // They were told to start their load together.
    let start = parts[0]["config"]["start_at"]
        .as_f64()
        .expect("a common start");
    assert_eq!(parts[1]["config"]["start_at"].as_f64(), Some(start));
    let listed = merged["clients"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["host"], "local 1");
    assert_eq!(listed[1]["messages"], parts[1]["messages"]);
    // The merged log: its untagged total is every message; its uncorrected series too.
    let log =
        pollbench_schema::hlog::read_log(&s.run.join("cells").join("m-epoll-c10.hlog")).unwrap();
    let latency: u64 = log.latency.iter().map(|(_, h)| h.len()).sum();
    assert_eq!(latency, field(&merged, "messages"));
    let uncorrected = log
        .total_of(pollbench_schema::hlog::UNCORRECTED_TAG)
        .unwrap();
    assert_eq!(uncorrected.len(), latency);
    assert_eq!(
        merged["latency_us"]["max"].as_u64().unwrap(),
        parts
            .iter()
            .map(|p| p["latency_us"]["max"].as_u64().unwrap())
            .max()
            .unwrap(),
        "the merged max is the larger part's"
    );
    let server = read("m-epoll-c10.server.json");
    assert!(
        server["totals"]["bytes_out"].as_u64().unwrap() >= field(&merged, "bytes"),
        "{server}"
    );
    // The report says how the clients compared: agreed, or their rows.
    let report = std::fs::read_to_string(s.run.join("report.md")).unwrap();
    assert!(
        report.contains("## Clients\n")
            && (report.contains("2 load-gen clients per cell; in every cell")
                || report.contains("| m-epoll-c10 | local 2 | 5 |")),
        "{report}"
    );
}

/// Whether this test process can make network namespaces (root, `ip`); said when not.
fn can_make_namespaces(what: &str) -> bool {
    let probe = format!("pollbench-probe-{}-{what}", std::process::id());
    let made = Command::new("ip").args(["netns", "add", &probe]).output();
    if !made.is_ok_and(|o| o.status.success()) {
        skip(what, "cannot make network namespaces here");
        return false;
    }
    let _ = Command::new("ip")
        .args(["netns", "delete", &probe])
        .output();
    true
}

/// Run a one-cell netns suite of 1 KiB messages with the shaping line `shaping` (`link_rate =
/// ...`): the cell's run document, or None when it was skipped, which must be for want of tc's
/// `qdisc` (said).
fn shaped_cell(tag: &str, shaping: &str, qdisc: &str) -> Option<serde_json::Value> {
    let s = run_suite(
        tag,
        &format!(
            "description = \"{tag}\"\nduration = \"1s\"\nwarmup = \"200ms\"\n\
             topology = \"netns\"\nsize = \"1KiB\"\n{shaping}\n\
             [[sweep]]\nname = \"s\"\nbackends = [\"epoll\"]\nconnections = [4]\n"
        ),
    );
    let outcome = s.outcome("s-epoll-c4");
    if outcome["status"] == "skipped" {
        let why = outcome["reason"].as_str().unwrap().to_string();
        assert!(why.contains(qdisc), "{why}");
        skip(tag, &why);
        return None;
    }
    assert_eq!(outcome["status"], "ok", "{}", s.meta);
    assert!(
        s.meta["topology"]
            .as_str()
            .unwrap()
            .contains("links shaped with tc"),
        "{}",
        s.meta["topology"]
    );
    let cell = std::fs::read_to_string(s.run.join("cells/s-epoll-c4.json")).unwrap();
    Some(serde_json::from_str(&cell).unwrap())
}

/// `link_rate` shapes every host's link (tc tbf): 1 KiB messages over 1 Mbit/s links cannot
/// pass 125 kB/s, about 120 msgs/s, where unshaped veths carry thousands. `link_delay` needs tc
/// netem: where the kernel has it, a round trip takes at least twice the delay; where it does
/// not, every cell is skipped with a reason that names netem (never run unshaped).
#[test]
fn link_shaping_on_netns_hosts_limits_the_rate_and_delays_or_is_skipped_with_the_reason() {
    if !can_make_namespaces("link-shaping") {
        return;
    }
    if let Some(run) = shaped_cell("link_rate", "link_rate = \"1mbit\"", "tbf") {
        let msgs = run["throughput_msgs_per_s"].as_f64().unwrap();
        assert!(
            msgs > 0.0 && msgs < 300.0,
            "1 Mbit/s links carried {msgs} msgs/s of 1 KiB"
        );
    }
    if let Some(run) = shaped_cell("link_delay", "link_delay = \"5ms\"", "netem") {
        let p50 = run["latency_us"]["p50"].as_u64().unwrap();
        assert!(
            p50 >= 10_000,
            "a 5 ms delay each way, and the round trip took {p50} us"
        );
    }
}

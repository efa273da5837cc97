//! `pollbench suite`, `report` and `compare` end to end: real suites against bench-server and
//! load-gen (built beside this binary by `cargo test --workspace`, or by the runner itself).
//! Loopback only; every run is bounded by its suite's durations and a watchdog.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pollbench");

fn skip(what: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "skipped: {what}: {why}");
}

struct Temp(PathBuf);
impl Temp {
    /// A fresh directory, named by a counter rather than the clock (two in one tick collided).
    fn new(tag: &str) -> Temp {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("pollbench-{tag}-{}-{n}", std::process::id()));
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

fn wait_with_limit(child: &mut Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("pollbench did not finish within {limit:?}");
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

fn nix_kill(pid: u32, signal: i32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn bad_flags_and_unknown_suites_exit_2_with_one_line() {
    for args in [
        vec!["compare", "only-one-dir"],
        vec!["compare", "a", "b", "--threshold", "0%"],
        vec!["compare", "a", "b", "--latency-threshold", "lots"],
        vec!["suite", "nonesuch"],
        vec!["suite", "smoke", "--sweep", "nonesuch"],
        vec!["fly"],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.starts_with("pollbench: "), "{stderr}");
    }
}

/// `pollbench compare` on real smoke-suite data: a run against itself has no regression; against a
/// copy in which one cell lost half its throughput in every repeat, exactly that cell regresses.
fn compare_flags_regressions(run: &Path, dir: &Temp) {
    let compare = |old: &Path, new: &Path| {
        let out = Command::new(BIN)
            .arg("compare")
            .args([old, new])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, table) = compare(run, run);
    assert_eq!(code, Some(0), "{table}");
    assert!(table.contains("cells in both: 0 regressed"), "{table}");
    let worse = dir.0.join("worse");
    std::fs::create_dir_all(worse.join("cells")).unwrap();
    for entry in std::fs::read_dir(run.join("cells")).unwrap().flatten() {
        std::fs::copy(entry.path(), worse.join("cells").join(entry.file_name())).unwrap();
    }
    let victim = "connections-epoll-c100";
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap();
    for o in meta["outcomes"].as_array_mut().unwrap() {
        if o["id"] == victim {
            for r in o["repeats"].as_array_mut().unwrap() {
                r["msgs_per_s"] = (r["msgs_per_s"].as_f64().unwrap() / 2.0).into();
            }
        }
    }
    std::fs::write(worse.join("meta.json"), meta.to_string()).unwrap();
    // Its load-gen file of every round (ID.rK.json) and the median's copy (ID.json): compare reads
    // the figures through the summary, computed from them (the copy has no summary.json).
    let mut halved = 0;
    for entry in std::fs::read_dir(worse.join("cells")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let round = name
            .strip_prefix(&format!("{victim}."))
            .is_some_and(|rest| {
                rest == "json"
                    || (rest.starts_with('r')
                        && rest.ends_with(".json")
                        && !rest.ends_with(".server.json"))
            });
        if !round {
            continue;
        }
        let mut cell: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(entry.path()).unwrap()).unwrap();
        cell["throughput_msgs_per_s"] =
            (cell["throughput_msgs_per_s"].as_f64().unwrap() / 2.0).into();
        std::fs::write(entry.path(), cell.to_string()).unwrap();
        halved += 1;
    }
    assert!(halved >= 1, "{victim}'s files");
    let (code, table) = compare(run, &worse);
    assert_eq!(code, Some(1), "{table}");
    let flagged: Vec<&str> = table.lines().filter(|l| l.contains("REGRESSION")).collect();
    assert_eq!(flagged.len(), 1, "{table}");
    assert!(flagged[0].starts_with(&format!("| {victim} |")), "{table}");
    assert!(flagged[0].contains("-50.0%"), "{table}");
    assert!(table.contains("cells in both: 1 regressed"), "{table}");
}

#[test]
fn the_smoke_suite_runs_end_to_end_and_its_report_rebuilds() {
    let dir = Temp::new("suite");
    let out = Command::new(BIN)
        .args(["suite", "smoke", "--results"])
        .arg(&dir.0)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(runs.len(), 1, "one run directory");
    let run = &runs[0];
    assert!(run
        .file_name()
        .unwrap()
        .to_string_lossy()
        .ends_with("-smoke"));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap();
    let outcomes = meta["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), meta["cells"].as_array().unwrap().len());
    assert!(outcomes.iter().all(|o| o["status"] == "ok"), "{outcomes:?}");
    for key in [
        "git_commit",
        "rustc",
        "kernel",
        "cores",
        "fd_limit",
        "suite_file",
    ] {
        assert!(!meta[key].is_null(), "meta.json has {key}");
    }
    // The client is pinned to the cores this process may use after the server's one loop: [1] on
    // a two-core machine, more on a bigger one, none (not pinned) on one core.
    let client_cores: Vec<usize> = allowed_cores().into_iter().skip(1).collect();
    for o in outcomes {
        let id = o["id"].as_str().unwrap();
        for stem in [id.to_string(), format!("{id}.r1"), format!("{id}.r2")] {
            for ext in ["json", "server.json", "hlog"] {
                assert!(
                    run.join("cells").join(format!("{stem}.{ext}")).exists(),
                    "{stem}.{ext}"
                );
            }
        }
        // repeat = 2: both runs recorded, and the cell's file is the lower-median (slower) run.
        let repeats = o["repeats"].as_array().expect("repeats recorded");
        assert_eq!(repeats.len(), 2, "{o}");
        let slower = repeats
            .iter()
            .map(|r| r["msgs_per_s"].as_f64().unwrap())
            .fold(f64::INFINITY, f64::min);
        // pin = true: the server's loop on the first core, load-gen's thread on the next.
        let server: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(run.join("cells").join(format!("{id}.server.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(server["config"]["pinned"], true, "{id}");
        let cell: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(run.join("cells").join(format!("{id}.json"))).unwrap(),
        )
        .unwrap();
        assert!(
            cell["messages"].as_u64().unwrap() > 0,
            "{id} measured something"
        );
        assert_eq!(
            cell["throughput_msgs_per_s"].as_f64().unwrap(),
            slower,
            "{id}"
        );
        if client_cores.is_empty() {
            assert!(cell["config"]["cpus"].is_null(), "{id}");
        } else {
            assert_eq!(
                cell["config"]["cpus"],
                serde_json::json!(client_cores),
                "{id}"
            );
        }
    }
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        report.contains("| connections | poll | epoll |"),
        "{report}"
    );
    assert!(report.contains("| idle connections | epoll |"), "{report}");
    assert!(report.contains("in each of 2 rounds"), "{report}");
    // Each entry's interval (with 2 rounds, the extremes), and the verdicts of each pair.
    assert!(report.contains(" [") && report.contains("–"), "{report}");
    assert!(
        report.contains("- 10 connections: poll vs epoll: "),
        "{report}"
    );
    // Two rounds cannot give a 95% interval: the pair is not judged, and the report says why.
    assert!(
        report.contains("not judged (the interval has 50% confidence; 6 rounds give 95%)"),
        "{report}"
    );
    // The cost table (bench-server's CPU time and system calls), and in the open-loop idle sweep
    // the client's send lateness beside the latency it is part of; summary.json has both, and
    // no lateness in closed loop.
    assert!(report.contains("Cost per message: "), "{report}");
    assert!(
        report.contains("Client send lateness (open loop)"),
        "{report}"
    );
    let summary: pollbench_schema::summary::Summary =
        pollbench_schema::file::read_json(&run.join("summary.json")).unwrap();
    for c in &summary.cells {
        let open_loop = c.sweep == "idle";
        assert_eq!(
            (
                c.send_lateness_p50_us.is_some(),
                c.send_lateness_p99_us.is_some()
            ),
            (open_loop, open_loop),
            "{c:?}"
        );
        assert!(c.server_cpu_us_per_msg.is_some(), "{c:?}");
    }
    for chart in [
        "connections-throughput.svg",
        "connections-p99.svg",
        "connections-spectrum.svg",
        "idle-throughput.svg",
        "idle-p99.svg",
        "idle-spectrum.svg",
    ] {
        let svg =
            std::fs::read_to_string(run.join(chart)).unwrap_or_else(|e| panic!("{chart}: {e}"));
        assert!(
            svg.starts_with("<svg") && svg.contains("epoll"),
            "{chart} is an SVG with its series"
        );
        assert!(
            report.contains(&format!("]({chart})")),
            "report.md shows {chart}"
        );
    }
    // `pollbench report DIR` rebuilds the same report from the data.
    std::fs::remove_file(run.join("report.md")).unwrap();
    let out = Command::new(BIN).arg("report").arg(run).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(run.join("report.md")).unwrap(),
        report
    );
    // A second run never overwrites the first.
    let again = Command::new(BIN)
        .args(["suite", "smoke", "--results"])
        .arg(&dir.0)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 2);
    compare_flags_regressions(run, &dir);
}

/// A select cell that needs descriptors at or above FD_SETSIZE is skipped with the reason before
/// anything starts, and the suite still succeeds (a skip is not a failure).
/// The cores this process may run on, ascending (Cpus_allowed_list in /proc/self/status).
fn allowed_cores() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim();
    let mut cores = Vec::new();
    for part in list.split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        cores.extend(lo.parse::<usize>().unwrap()..=hi.parse::<usize>().unwrap());
    }
    cores
}

/// The processes whose parent is `pid`, with their command names (from /proc).
fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let ppid: Option<u32> = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok());
        if ppid == Some(pid) {
            let child: u32 = stat[..open].trim().parse().unwrap();
            out.push((child, stat[open + 1..close].to_string()));
        }
    }
    out
}

#[test]
fn sigterm_to_the_suite_runner_kills_its_children_and_writes_the_report() {
    interrupt_a_long_suite("");
}

/// The same with `topology = "netns"`: the namespaces the runner made go with it too.
#[test]
fn sigterm_to_a_netns_suite_also_deletes_its_namespaces() {
    let probe = format!("pollbench-probe-{}", std::process::id());
    let made = Command::new("ip").args(["netns", "add", &probe]).output();
    if !made.is_ok_and(|o| o.status.success()) {
        return skip(
            "SIGTERM to a netns suite",
            "cannot make network namespaces here",
        );
    }
    let _ = Command::new("ip")
        .args(["netns", "delete", &probe])
        .output();
    let runner = interrupt_a_long_suite("topology = \"netns\"\n");
    let listed = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        !listed.contains(&format!("pollbench-{runner}-")),
        "the runner's namespaces were left behind: {listed}"
    );
}

/// SIGTERM to a runner whose cell has been running for 300 ms: it exits 130 within `limit`.
/// Its stderr.
fn sigterm_in_a_cell(runner: &mut Child, limit: Duration) -> String {
    std::thread::sleep(Duration::from_millis(300));
    nix_kill(runner.id(), 15);
    let out = wait_with_limit(runner, limit);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    stderr
}

/// SIGTERM to a runner in its first cell of 30 s (the suite's other keys: `extra`): exit 130,
/// its children gone, the report written. Returns the runner's pid.
fn interrupt_a_long_suite(extra: &str) -> u32 {
    let dir = Temp::new("suite-term");
    let suite = dir.0.join("long.toml");
    std::fs::write(
        &suite,
        format!(
            "description = \"one long cell\"\nduration = \"30s\"\nwarmup = \"0s\"\n{extra}\
             [[sweep]]\nname = \"long\"\nbackends = [\"epoll\"]\nconnections = [10, 20]\n"
        ),
    )
    .unwrap();
    let results = dir.0.join("results");
    let mut runner = Command::new(BIN)
        .args(["suite", suite.to_str().unwrap(), "--results"])
        .arg(&results)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first cell runs: bench-server and `load-gen run` are both children.
    let started = Instant::now();
    let children = loop {
        let children = children_of(runner.id());
        if children.iter().any(|(_, c)| c == "bench-server")
            && children.iter().any(|(_, c)| c == "load-gen")
        {
            break children;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first cell never started: {children:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = sigterm_in_a_cell(&mut runner, Duration::from_secs(20));
    assert!(
        stderr.contains("interrupted after 0 of 2 cells"),
        "{stderr}"
    );
    for (pid, name) in children {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{name} ({pid}) outlived the runner"
        );
    }
    let run_dir = std::fs::read_dir(&results)
        .unwrap()
        .flatten()
        .next()
        .expect("a run directory")
        .path();
    assert!(run_dir.join("report.md").exists(), "{stderr}");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["outcomes"].as_array().unwrap().len(), 0);
    runner.id()
}

/// A run of a suite written for the test: its run directory and meta.json. The suite must exit 0.
struct SuiteRun {
    run: PathBuf,
    meta: serde_json::Value,
    _dir: Temp,
}

/// Write `toml` as a suite, run `pollbench suite` on it, and read what it left.
fn run_suite(tag: &str, toml: &str) -> SuiteRun {
    run_suite_with(tag, toml, &[])
}

/// [`run_suite`] with more arguments to `pollbench suite`.
fn run_suite_with(tag: &str, toml: &str, args: &[&str]) -> SuiteRun {
    let dir = Temp::new(tag);
    let suite = dir.0.join(format!("{tag}.toml"));
    std::fs::write(&suite, toml).unwrap();
    let out = Command::new(BIN)
        .arg("suite")
        .arg(&suite)
        .args(args)
        .arg("--results")
        .arg(dir.0.join("results"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = std::fs::read_dir(dir.0.join("results"))
        .unwrap()
        .flatten()
        .next()
        .expect("a run directory")
        .path();
    let meta =
        serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap();
    SuiteRun {
        run,
        meta,
        _dir: dir,
    }
}

impl SuiteRun {
    /// The outcome of cell `id`.
    fn outcome(&self, id: &str) -> serde_json::Value {
        self.meta["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["id"] == id)
            .unwrap_or_else(|| panic!("{id}: {}", self.meta))
            .clone()
    }
}

#[test]
fn kqueue_cells_are_labelled_libkqueue_in_meta_and_report_on_linux() {
    if !cfg!(target_os = "linux") {
        return skip("libkqueue labels", "native kqueue here");
    }
    // Skipped without libkqueue (exit 0), run with it: labelled the same either way.
    let s = run_suite(
        "kq",
        "description = \"kqueue\"\nduration = \"200ms\"\nwarmup = \"0s\"\n\
         [[sweep]]\nname = \"kq\"\nbackends = [\"kqueue\"]\nconnections = [10]\n",
    );
    assert_eq!(s.meta["cells"][0]["label"], "kqueue (libkqueue)");
    assert_eq!(s.meta["cells"][0]["id"], "kq-kqueue-libkqueue-c10");
    let report = std::fs::read_to_string(s.run.join("report.md")).unwrap();
    assert!(report.contains("| kqueue (libkqueue) |"), "{report}");
    assert!(report.contains("runs on epoll"), "{report}");
}

#[test]
fn select_cells_beyond_fd_setsize_are_skipped_with_the_reason() {
    let s = run_suite(
        "wide",
        "description = \"select past FD_SETSIZE\"\nduration = \"200ms\"\nwarmup = \"0s\"\n\
         [[sweep]]\nname = \"wide\"\nbackends = [\"select\"]\nconnections = [2000]\n",
    );
    // Nothing was started: no server statistics, no load-gen data.
    assert_eq!(
        std::fs::read_dir(s.run.join("cells")).unwrap().count(),
        0,
        "nothing was run"
    );
    let outcome = s.outcome("wide-select-c2000");
    assert_eq!(outcome["status"], "skipped", "{outcome}");
    assert!(
        outcome["reason"].as_str().unwrap().contains("FD_SETSIZE"),
        "{outcome}"
    );
}

#[test]
fn what_bench_server_says_it_cannot_run_is_skipped_and_what_it_cannot_pin_runs_unpinned() {
    let s = run_suite(
        "caps",
        "description = \"capabilities\"\nduration = \"300ms\"\nwarmup = \"0s\"\npin = true\n\
         [[sweep]]\nname = \"edge\"\nbackends = [\"select\"]\ntriggers = [\"edge\"]\nconnections = [4]\n\
         [[sweep]]\nname = \"base\"\nbackends = [\"threads\"]\nconnections = [4]\n",
    );
    // bench-server --capabilities lists no edge trigger for select: skipped with that reason.
    let edge = s.outcome("edge-select-edge-c4");
    assert_eq!(edge["status"], "skipped", "{edge}");
    assert!(
        edge["reason"]
            .as_str()
            .unwrap()
            .contains("does not take --trigger edge"),
        "{edge}"
    );
    // The threads baseline says it cannot be pinned: it runs unpinned, its client pinned.
    assert_eq!(s.outcome("base-threads-c4")["status"], "ok");
    let server: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(s.run.join("cells/base-threads-c4.server.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(server["config"]["pinned"], false, "{server}");
}

#[test]
fn rounds_run_every_cell_once_per_round_in_a_seeded_shuffled_order_that_meta_json_records() {
    let toml =
        "description = \"rounds\"\nduration = \"200ms\"\nwarmup = \"0s\"\nrepeat = 3\nseed = 7\n\
                [[sweep]]\nname = \"r\"\nbackends = [\"poll\", \"epoll\"]\nconnections = [2, 4]\n";
    let first = run_suite("rounds", toml);
    let rounds = &first.meta["rounds"];
    assert_eq!(rounds["seed"], 7, "{rounds}");
    let ids: Vec<String> = first.meta["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    let orders: Vec<Vec<String>> = serde_json::from_value(rounds["order"].clone()).unwrap();
    assert_eq!(orders.len(), 3);
    for order in &orders {
        let mut sorted = order.clone();
        sorted.sort();
        let mut all = ids.clone();
        all.sort();
        assert_eq!(sorted, all, "each round runs every cell once: {order:?}");
    }
    assert!(
        orders.iter().any(|o| *o != ids),
        "shuffled, not the suite's order every round: {orders:?}"
    );
    // Every round of every cell left its files; the outcome holds the rounds in round order.
    for id in &ids {
        for k in 1..=3 {
            assert!(
                first.run.join(format!("cells/{id}.r{k}.json")).exists(),
                "{id} r{k}"
            );
        }
        let outcome = first.outcome(id);
        assert_eq!(outcome["status"], "ok", "{outcome}");
        assert_eq!(outcome["repeats"].as_array().unwrap().len(), 3, "{outcome}");
    }
    // The recorded order is the order they ran in: each round's files were written in it.
    for (k, order) in orders.iter().enumerate() {
        let written = |id: &String| {
            std::fs::metadata(first.run.join(format!("cells/{id}.r{}.json", k + 1)))
                .and_then(|m| m.modified())
                .unwrap()
        };
        let mut by_time = order.clone();
        by_time.sort_by_key(written);
        assert_eq!(&by_time, order, "round {}", k + 1);
    }
    // What disturbed each round, and the whole suite, is recorded (from /proc: Linux).
    if cfg!(target_os = "linux") {
        let per_round = rounds["disturbance"].as_array().unwrap();
        assert_eq!(per_round.len(), 3, "{rounds}");
        let whole = &first.meta["disturbance"];
        let wall = |d: &serde_json::Value| d["wall_s"].as_f64().unwrap();
        let round_walls: f64 = per_round.iter().map(wall).sum();
        assert!(
            round_walls > 0.0 && wall(whole) >= round_walls,
            "the suite lasts at least its rounds: {whole} {per_round:?}"
        );
        assert!(whole["context_switches"].as_u64().unwrap() > 0, "{whole}");
    } else {
        eprintln!("skipped: disturbance: /proc counters are Linux only");
    }
    // The same seed gives the same orders.
    let second = run_suite("rounds", toml);
    assert_eq!(second.meta["rounds"]["order"], rounds["order"]);
    let report = std::fs::read_to_string(first.run.join("report.md")).unwrap();
    assert!(report.contains("in each of 3 rounds"), "{report}");
    if cfg!(target_os = "linux") {
        assert!(
            report.contains("stolen by the hypervisor (by round: "),
            "{report}"
        );
    }
    assert!(report.contains("seed 7"), "{report}");
}

#[test]
fn an_a_a_pair_reads_no_clear_difference_and_a_planted_difference_is_found() {
    // epoll listed twice is an A/A pair; 64-byte against 32-KiB messages is a difference in
    // msgs/s far beyond the noise (every byte is generated and checked), found even in the debug
    // build cargo test runs. 8 rounds: the extremes cover the median with 99.2%, so an A/A pair
    // is called different in under 1% of runs. (epoll against threads, the example, needs
    // release binaries to differ reliably: measured by hand, see the README.)
    let s = run_suite(
        "aa",
        "description = \"A/A\"\nduration = \"300ms\"\nwarmup = \"100ms\"\nrepeat = 8\n\
         [[sweep]]\nname = \"aa\"\nbackends = [\"epoll\", \"epoll\"]\n\
         sizes = [\"64B\", \"32KiB\"]\nconnections = [50]\n",
    );
    let report = std::fs::read_to_string(s.run.join("report.md")).unwrap();
    let verdict = |pair: &str| {
        report
            .lines()
            .find(|l| l.starts_with("- 50 connections: ") && l.contains(pair))
            .unwrap_or_else(|| panic!("no verdict for {pair}: {report}"))
            .to_string()
    };
    let aa = verdict("epoll 64B vs epoll #2 64B: ");
    assert!(aa.ends_with("no clear difference"), "{aa}");
    let planted = verdict("epoll 64B vs epoll 32KiB: ");
    assert!(planted.ends_with("epoll 64B better"), "{planted}");
    // The table shows the intervals; no column beats every other (the A/A pair ties).
    assert!(
        report
            .contains("| connections | epoll 64B | epoll 32KiB | epoll #2 64B | epoll #2 32KiB |"),
        "{report}"
    );
    assert!(report.contains(" [") && report.contains("–"), "{report}");
    assert!(
        !report.contains("**"),
        "no clear winner of the row: {report}"
    );
    // summary.json has the same, typed: every cell over its 8 rounds, and the verdicts.
    use pollbench_schema::summary::{Judgement, Summary};
    let summary: Summary = pollbench_schema::file::read_json(&s.run.join("summary.json")).unwrap();
    assert_eq!(summary.cells.len(), 4);
    for c in &summary.cells {
        assert_eq!((c.rounds, c.row), (8, 50), "{c:?}");
        let m = c.msgs_per_s.unwrap();
        assert!(
            m.lo <= m.median && m.median <= m.hi && m.confidence > 0.99,
            "{c:?}"
        );
        assert!(
            c.client_cpu_us_per_msg.is_some() && c.events_per_wait.is_some(),
            "{c:?}"
        );
        // The server's cost: some CPU per message, and at pipeline 1 at least a read and a write
        // per message (a read returns at most the one message in flight; waits come on top).
        let cpu = c.server_cpu_us_per_msg.unwrap();
        assert!(cpu.lo > 0.0 && cpu.median < 10_000.0, "{c:?}");
        assert!(c.server_syscalls_per_msg.unwrap().lo >= 2.0, "{c:?}");
    }
    let judged = |a: &str, b: &str| {
        summary
            .verdicts
            .iter()
            .find(|v| v.a == a && v.b == b)
            .unwrap_or_else(|| panic!("{a} vs {b}: {:?}", summary.verdicts))
    };
    let aa = judged("epoll 64B", "epoll #2 64B");
    assert_eq!(
        (aa.verdict, aa.metric.as_str(), aa.sweep.as_str(), aa.row),
        (Judgement::NoClearDifference, "msgs_per_s", "aa", 50)
    );
    assert!(aa.ratio.lo <= 1.0 && aa.ratio.hi >= 1.0, "{aa:?}");
    assert_eq!(
        judged("epoll 64B", "epoll 32KiB").verdict,
        Judgement::ABetter
    );
    // 4 columns at one row: 6 pairs.
    assert_eq!(summary.verdicts.len(), 6, "{:?}", summary.verdicts);
}

#[test]
fn meta_json_holds_each_one_round_cells_outcome_as_soon_as_it_finishes() {
    // While the suite still runs its second cell, the first cell's outcome is already in
    // meta.json: a runner that dies without cleanup (SIGKILL, power) loses at most the cell under
    // way.
    let dir = Temp::new("meta-now");
    let suite = dir.0.join("two.toml");
    std::fs::write(
        &suite,
        "description = \"two cells\"\nduration = \"2s\"\nwarmup = \"0s\"\n\
         [[sweep]]\nname = \"two\"\nbackends = [\"epoll\"]\nconnections = [2, 3]\n",
    )
    .unwrap();
    let results = dir.0.join("results");
    let mut runner = Command::new(BIN)
        .args(["suite", suite.to_str().unwrap(), "--results"])
        .arg(&results)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let seen_while_running = loop {
        let meta = std::fs::read_dir(&results)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.ok()?.path().join("meta.json")).ok())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        let outcomes = meta.map_or(0, |m| m["outcomes"].as_array().map_or(0, Vec::len));
        let running = runner.try_wait().unwrap().is_none();
        if outcomes == 1 && running {
            break true;
        }
        if !running || started.elapsed() > Duration::from_secs(60) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    nix_kill(runner.id(), 15);
    let out = wait_with_limit(&mut runner, Duration::from_secs(20));
    assert!(
        seen_while_running,
        "the first outcome was not in meta.json while the second cell ran: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_churn_sweep_reports_connections_per_second_and_the_listeners_empty_wake_ups() {
    // Two loops, every connection one message: reuseport and shared loops wait on a listener
    // (their empty wake-ups are counted), acceptor's loops do not (null, not zero).
    let s = run_suite(
        "churn",
        "description = \"churn\"\nduration = \"300ms\"\nwarmup = \"100ms\"\nrepeat = 2\n\
         [[sweep]]\nname = \"accept\"\nbackends = [\"epoll\"]\n\
         accepts = [\"reuseport\", \"shared\", \"acceptor\"]\nchurn = [1]\nconnections = [10]\n\
         server_threads = 2\n",
    );
    let summary: pollbench_schema::summary::Summary =
        pollbench_schema::file::read_json(&s.run.join("summary.json")).unwrap();
    assert_eq!(summary.cells.len(), 3);
    for c in &summary.cells {
        let rate = c.connections_per_s.unwrap_or_else(|| panic!("{c:?}"));
        assert!(rate.lo > 0.0, "{c:?}");
        let (p50, p99) = (c.connect_p50_us.unwrap(), c.connect_p99_us.unwrap());
        assert!(p50.median <= p99.median, "{c:?}");
        assert!(c.accept_spread.is_some(), "two loops: {c:?}");
        let waits_on_listener = !c.column.contains("acceptor");
        assert_eq!(
            c.empty_wakeups_per_accept.is_some(),
            waits_on_listener,
            "{c:?}"
        );
    }
    let report = std::fs::read_to_string(s.run.join("report.md")).unwrap();
    assert!(report.contains("Connection churn: "), "{report}");
    assert!(
        report.contains("| 10 | ") && report.contains("/s ["),
        "{report}"
    );
    for chart in ["accept-connections-per-s.svg", "accept-empty-wakeups.svg"] {
        assert!(report.contains(&format!("]({chart})")), "{chart}: {report}");
        assert!(s.run.join(chart).exists(), "{chart}");
    }
}

#[test]
fn sweep_runs_only_the_named_sweeps_and_the_run_says_so() {
    let toml = "description = \"two sweeps\"\nduration = \"200ms\"\nwarmup = \"0s\"\n\
                [[sweep]]\nname = \"first\"\nbackends = [\"poll\"]\nconnections = [10]\n\
                [[sweep]]\nname = \"second\"\nbackends = [\"epoll\", \"poll\"]\nconnections = [10]\n";
    let s = run_suite_with("sweeps", toml, &["--sweep", "second"]);
    let ids: Vec<&str> = s.meta["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["second-epoll-c10", "second-poll-c10"], "{}", s.meta);
    assert_eq!(s.meta["sweeps"], serde_json::json!(["second"]));
    assert_eq!(s.meta["suite"], "sweeps");
    let dir = s.run.file_name().unwrap().to_string_lossy().to_string();
    assert!(dir.ends_with("-sweeps-second"), "{dir}");
    let report = std::fs::read_to_string(s.run.join("report.md")).unwrap();
    assert!(
        report.starts_with("# pollbench: suite `sweeps` (sweep `second` only), "),
        "{report}"
    );
    assert!(
        report.contains("Only sweep `second` of it ran (`pollbench suite sweeps --sweep second`)."),
        "{report}"
    );
    // Without --sweep, every sweep runs and meta.json says null.
    let all = run_suite("sweeps", toml);
    assert_eq!(all.meta["cells"].as_array().unwrap().len(), 3);
    assert!(all.meta["sweeps"].is_null());
}

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

/// A backend entry with flags is a variant of its own: "io_uring_completion --fixed-files" is a
/// column labelled so, its cells pass the flags to bench-server (whose stats say it ran with fixed
/// files), and meta.json keeps them; a plain entry has none.
#[test]
fn a_backend_entry_with_flags_is_a_column_that_passes_them_to_bench_server() {
    let s = run_suite(
        "flags",
        "description = \"variants\"\nduration = \"200ms\"\nwarmup = \"0s\"\n\
         [[sweep]]\nname = \"v\"\nbackends = [\"io_uring_completion\", \"io_uring_completion --fixed-files\"]\nconnections = [4]\n",
    );
    let cells = s.meta["cells"].as_array().unwrap();
    assert_eq!(cells[1]["label"], "io_uring_completion --fixed-files");
    assert_eq!(cells[1]["backend"], "io_uring_completion");
    assert_eq!(
        cells[1]["server_flags"],
        serde_json::json!(["--fixed-files"])
    );
    assert!(cells[0].get("server_flags").is_none(), "{}", cells[0]);
    let id = cells[1]["id"].as_str().unwrap();
    assert_eq!(id, "v-io_uring_completion-fixed-files-c4");
    if s.outcome(id)["status"] == "skipped" {
        return skip(
            "suite variant with --fixed-files",
            "io_uring completion mode is not available here",
        );
    }
    assert_eq!(s.outcome(id)["status"], "ok", "{}", s.meta);
    let server: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(s.run.join("cells").join(format!("{id}.server.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(server["config"]["ring"]["fixed_files"], true, "{server}");
    let plain: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(s.run.join("cells/v-io_uring_completion-c4.server.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(plain["config"]["ring"]["fixed_files"], false, "{plain}");
}

/// A launcher in `dir` that runs its argument with `sh -c` and, like an ssh client, passes no
/// signal on: SIGTERM ends it and leaves what it started running. It prints a line of its own
/// first, as a login shell's rc file may.
fn like_ssh(dir: &Path) -> PathBuf {
    let launcher = dir.join("like-ssh");
    std::fs::write(
        &launcher,
        "#!/bin/sh\necho 'Welcome to the test host'\nsh -c \"$1\" &\nchild=$!\ntrap 'exit 143' TERM\nwait $child\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&launcher, std::fs::Permissions::from_mode(0o755)).unwrap();
    launcher
}

/// `[hosts]` through launch prefixes, exercised with `sh -c` (which runs a command line as `ssh
/// HOST` would, but here): bench-server launched on the "server host" and stopped there by pid,
/// 2 load-gens on the "client hosts", every result file written under the hosts' work directory,
/// read back and removed there; the parts merged and named by their launch prefix; meta.json
/// records the topology and each host's kernel, CPU and cores.
#[test]
fn hosts_reached_by_a_launch_prefix_run_the_cells_and_their_files_come_back() {
    let work = Temp::new("hosts-work");
    // The server's launcher passes no signal on, as an ssh client does not: SIGTERM to it here
    // would end it and leave bench-server running on its host, without its statistics.
    let launcher = like_ssh(&work.0);
    let work_dir = work.0.join("files");
    std::fs::create_dir(&work_dir).unwrap();
    let toml = format!(
        "description = \"hosts\"\nduration = \"300ms\"\nwarmup = \"0s\"\n\
         [hosts]\nserver = {{ launch = \"{}\", address = \"127.0.0.1\" }}\n\
         clients = [{{ launch = \"sh -c\" }}, {{ launch = \"sh -c\" }}]\n\
         work_dir = \"{}\"\n\
         [[sweep]]\nname = \"h\"\nbackends = [\"epoll\", \"poll\"]\nconnections = [4]\n",
        launcher.display(),
        work_dir.display()
    );
    let s = run_suite("hosts", &toml);
    for id in ["h-epoll-c4", "h-poll-c4"] {
        assert_eq!(s.outcome(id)["status"], "ok", "{}", s.meta);
        let read = |ext: &str| -> serde_json::Value {
            serde_json::from_str(
                &std::fs::read_to_string(s.run.join("cells").join(format!("{id}.{ext}"))).unwrap(),
            )
            .unwrap()
        };
        let merged = read("json");
        let parts: Vec<u64> = ["client1.json", "client2.json"]
            .iter()
            .map(|p| read(p)["messages"].as_u64().unwrap())
            .collect();
        assert_eq!(
            merged["messages"].as_u64().unwrap(),
            parts.iter().sum::<u64>()
        );
        assert_eq!(merged["clients"][0]["host"], "sh -c");
        // The server's statistics came back from its host, written when it was stopped there.
        let server = read("server.json");
        assert_eq!(server["config"]["addr"], "127.0.0.1:0");
        assert!(
            server["totals"]["bytes_out"].as_u64().unwrap() >= merged["bytes"].as_u64().unwrap()
        );
    }
    let left: Vec<_> = std::fs::read_dir(&work_dir).unwrap().flatten().collect();
    assert!(left.is_empty(), "files left on the hosts: {left:?}");
    assert!(
        s.meta["topology"]
            .as_str()
            .unwrap()
            .ends_with("like-ssh` at 127.0.0.1, load-gen via `sh -c`, `sh -c`"),
        "{}",
        s.meta["topology"]
    );
    let hosts = s.meta["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3);
    assert_eq!(hosts[0]["role"], "server");
    assert_eq!(hosts[2]["role"], "client 2");
    assert!(
        hosts[1]["kernel"].as_str().unwrap().starts_with("Linux "),
        "{hosts:?}"
    );
    assert!(hosts[1]["cores"].as_u64().unwrap() >= 1);
    let report = std::fs::read_to_string(s.run.join("report.md")).unwrap();
    assert!(
        report.contains("the programs ran on these hosts")
            && report.contains("- client 2 (`sh -c`): Linux "),
        "{report}"
    );
    assert!(!report.contains("veths"), "{report}");
}

/// A host whose binaries print another `--version` (another commit) is refused before anything
/// runs: one line naming the host and both versions, no run directory.
#[test]
fn hosts_with_binaries_of_another_build_are_refused() {
    let dir = Temp::new("hosts-other-build");
    let bin = dir.0.join("bin");
    std::fs::create_dir(&bin).unwrap();
    for name in ["bench-server", "load-gen"] {
        let path = bin.join(name);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho '{name} 0.0.1 (commit 000000000000)'\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let suite = dir.0.join("other.toml");
    std::fs::write(
        &suite,
        format!(
            "description = \"other build\"\nduration = \"300ms\"\nwarmup = \"0s\"\n\
             [hosts]\nserver = {{ launch = \"sh -c\", address = \"127.0.0.1\" }}\n\
             clients = [{{ launch = \"sh -c\" }}]\nbin_dir = \"{}\"\n\
             [[sweep]]\nname = \"h\"\nbackends = [\"epoll\"]\nconnections = [4]\n",
            bin.display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("suite")
        .arg(&suite)
        .arg("--results")
        .arg(dir.0.join("results"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("pollbench: sh -c: ")
            && last.contains("0.0.1 (commit 000000000000)")
            && last.contains("build the same commit"),
        "{stderr}"
    );
    assert!(
        !dir.0.join("results").exists(),
        "nothing ran, nothing written"
    );
}

/// Processes on the command lines of which `needle` appears (from /proc/PID/cmdline).
fn processes_with(needle: &str) -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(needle).then_some((pid, cmdline))
        })
        .collect()
}

/// SIGTERM to a runner whose hosts are reached by launchers that pass no signal on (as an ssh
/// client does not): bench-server and every load-gen are stopped on their hosts by pid, nothing
/// launched is left running, and the report is written.
#[test]
fn sigterm_to_a_hosts_suite_stops_what_runs_on_the_hosts() {
    let dir = Temp::new("hosts-term");
    let launcher = like_ssh(&dir.0);
    let work_dir = dir.0.join("files");
    std::fs::create_dir(&work_dir).unwrap();
    let suite = dir.0.join("long.toml");
    let l = launcher.display();
    std::fs::write(
        &suite,
        format!(
            "description = \"one long cell\"\nduration = \"30s\"\nwarmup = \"0s\"\n\
             [hosts]\nserver = {{ launch = \"{l}\", address = \"127.0.0.1\" }}\n\
             clients = [{{ launch = \"{l}\" }}, {{ launch = \"{l}\" }}]\nwork_dir = \"{}\"\n\
             [[sweep]]\nname = \"long\"\nbackends = [\"epoll\"]\nconnections = [10]\n",
            work_dir.display()
        ),
    )
    .unwrap();
    let needle = work_dir.display().to_string();
    let mut runner = Command::new(BIN)
        .args(["suite", suite.to_str().unwrap(), "--results"])
        .arg(dir.0.join("results"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Running: a bench-server and two load-gens whose result files go to the work directory.
    let started = Instant::now();
    loop {
        let running = processes_with(&needle);
        let count = |name: &str| running.iter().filter(|(_, c)| c.contains(name)).count();
        if count("bench-server --addr") == 1 && count("load-gen run") == 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the cell never started: {running:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    sigterm_in_a_cell(&mut runner, Duration::from_secs(40));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_with(&needle).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = processes_with(&needle);
    for (pid, _) in &left {
        nix_kill(*pid, 9); // not to leave them to the next test
    }
    assert!(left.is_empty(), "left running on the hosts: {left:?}");
}

/// Kills the child (an sshd of the test's own) when dropped.
struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `[hosts]` through real `ssh`: the test starts its own sshd on 127.0.0.1 (a free port, a host
/// key and a client key generated for it, only that key authorized), and runs one cell with the
/// server and a client launched over ssh to it. Skipped, with the reason, where sshd, ssh or
/// ssh-keygen is missing.
#[test]
fn hosts_over_ssh_to_an_sshd_of_the_tests_own() {
    let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd", "/usr/local/sbin/sshd"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let have = |tool: &str| {
        Command::new(tool)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success() || !o.stderr.is_empty())
    };
    let Some(sshd) =
        sshd.filter(|_| have("ssh") && Command::new("ssh-keygen").arg("-?").output().is_ok())
    else {
        return skip("hosts over ssh", "needs OpenSSH's sshd, ssh and ssh-keygen");
    };
    let dir = Temp::new("hosts-ssh");
    let keygen = |name: &str| {
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.0.join(name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    keygen("host_key");
    keygen("client_key");
    std::fs::copy(dir.0.join("client_key.pub"), dir.0.join("authorized_keys")).unwrap();
    // A free port on loopback (sshd binds it just after; a race only fails this test).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.0.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\n\
             StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n",
            d = dir.0.display()
        ),
    )
    .unwrap();
    // sshd refuses to start without its privilege-separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let daemon = KillOnDrop(
        Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(10) {
            drop(daemon);
            return skip("hosts over ssh", "the test's sshd did not start listening");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let user = Command::new("id").arg("-un").output().unwrap();
    let user = String::from_utf8_lossy(&user.stdout).trim().to_string();
    let launch = format!(
        "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
         -o LogLevel=ERROR -i {} -p {port} {user}@127.0.0.1",
        dir.0.join("client_key").display()
    );
    let reach = Command::new("sh")
        .args(["-c", &format!("{launch} true")])
        .output()
        .unwrap();
    if !reach.status.success() {
        return skip(
            "hosts over ssh",
            &format!(
                "cannot log in to the test's sshd: {}",
                String::from_utf8_lossy(&reach.stderr).trim()
            ),
        );
    }
    let work_dir = dir.0.join("files");
    std::fs::create_dir(&work_dir).unwrap();
    let toml = format!(
        "description = \"ssh\"\nduration = \"300ms\"\nwarmup = \"0s\"\n\
         [hosts]\nserver = {{ launch = \"{launch}\", address = \"127.0.0.1\" }}\n\
         clients = [{{ launch = \"{launch}\" }}]\nwork_dir = \"{}\"\n\
         [[sweep]]\nname = \"s\"\nbackends = [\"epoll\"]\nconnections = [4]\n",
        work_dir.display()
    );
    let s = run_suite("ssh", &toml);
    assert_eq!(s.outcome("s-epoll-c4")["status"], "ok", "{}", s.meta);
    let server: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(s.run.join("cells/s-epoll-c4.server.json")).unwrap(),
    )
    .unwrap();
    assert!(
        server["totals"]["bytes_out"].as_u64().unwrap() > 0,
        "{server}"
    );
    assert!(s.meta["hosts"][0]["kernel"].is_string(), "{}", s.meta);
    assert_eq!(
        std::fs::read_dir(&work_dir).unwrap().count(),
        0,
        "files left on the host"
    );
    drop(daemon);
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

/// A client host's own open-files limit counts, not the runner's: through a launcher that runs
/// with `ulimit -n` 64 (prlimit), a cell of 100 connections is skipped naming load-gen and that
/// limit, and one of 10 runs.
#[test]
fn a_client_hosts_open_files_limit_skips_the_cells_it_cannot_hold() {
    let have = Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        return skip(
            "a client host's open-files limit",
            "needs util-linux's prlimit",
        );
    }
    let s = run_suite(
        "hosts-ulimit",
        "description = \"ulimit\"\nduration = \"300ms\"\nwarmup = \"0s\"\n\
         [hosts]\nserver = { launch = \"sh -c\", address = \"127.0.0.1\" }\n\
         clients = [{ launch = \"prlimit --nofile=64 sh -c\" }]\n\
         [[sweep]]\nname = \"u\"\nbackends = [\"epoll\"]\nconnections = [10, 100]\n",
    );
    assert_eq!(s.outcome("u-epoll-c10")["status"], "ok", "{}", s.meta);
    let big = s.outcome("u-epoll-c100");
    assert_eq!(big["status"], "skipped", "{big}");
    let why = big["reason"].as_str().unwrap();
    assert!(
        why.contains("limit 64") && why.contains("load-gen"),
        "{why}"
    );
}

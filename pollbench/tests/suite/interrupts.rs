//! SIGTERM to the suite runner: its children, namespaces and the processes on its hosts stopped,
//! the report written; and meta.json written cell by cell for a runner that gets no chance to.

use super::*;

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

/// `pollbench suite SUITE --results RESULTS`, started.
fn start_suite(suite: &Path, results: &Path) -> Spawned {
    let mut command = Command::new(BIN);
    command
        .args(["suite", suite.to_str().unwrap(), "--results"])
        .arg(results);
    Spawned::new(command)
}

/// SIGTERM to a runner whose cell has been running for 300 ms: it exits 130 within `limit`.
/// Its stderr.
fn sigterm_in_a_cell(runner: Spawned, limit: Duration) -> String {
    std::thread::sleep(Duration::from_millis(300));
    runner.signal(Signal::SIGTERM);
    let out = runner.output_within(limit);
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
    let runner = start_suite(&suite, &results);
    let runner_pid = runner.id();
    // Wait until the first cell runs: bench-server and `load-gen run` are both children.
    let started = Instant::now();
    let children = loop {
        let children = children_of(runner_pid);
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
    let stderr = sigterm_in_a_cell(runner, Duration::from_secs(20));
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
    let meta: serde_json::Value = read_json(run_dir.join("meta.json"));
    assert_eq!(meta["outcomes"].as_array().unwrap().len(), 0);
    runner_pid
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
    let mut runner = start_suite(&suite, &results);
    let started = Instant::now();
    let seen_while_running = loop {
        let meta = std::fs::read_dir(&results)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.ok()?.path().join("meta.json")).ok())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        let outcomes = meta.map_or(0, |m| m["outcomes"].as_array().map_or(0, Vec::len));
        let running = runner.is_running();
        if outcomes == 1 && running {
            break true;
        }
        if !running || started.elapsed() > Duration::from_secs(60) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    runner.signal(Signal::SIGTERM);
    let out = runner.output_within(Duration::from_secs(20));
    assert!(
        seen_while_running,
        "the first outcome was not in meta.json while the second cell ran: {}",
        String::from_utf8_lossy(&out.stderr)
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
    let runner = start_suite(&suite, &dir.0.join("results"));
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
    sigterm_in_a_cell(runner, Duration::from_secs(40));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_with(&needle).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = processes_with(&needle);
    for (pid, _) in &left {
        signal(*pid, Signal::SIGKILL).unwrap(); // not to leave them to the next test
    }
    assert!(left.is_empty(), "left running on the hosts: {left:?}");
}

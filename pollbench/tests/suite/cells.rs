//! What the cells of a suite run and skip: labels, FD_SETSIZE, what bench-server cannot run or
//! pin, rounds, A/A pairs, churn sweeps, named sweeps, backend entries with flags.

use super::*;

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
    // A column of its own where libkqueue is built; named once above the tables where every cell
    // of it was skipped.
    assert!(
        report.contains("| kqueue (libkqueue) |")
            || report.contains("left out of the tables: kqueue (libkqueue) ("),
        "{report}"
    );
    assert!(report.contains("runs on epoll"), "{report}");
}

/// A select cell that needs descriptors at or above FD_SETSIZE is skipped with the reason before
/// anything starts, and the suite still succeeds (a skip is not a failure).
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
    // (A closed-loop verdict may add that the client set the pace: "(limited by the client: …)".)
    let said = |line: &str| {
        line.split(" (limited by")
            .next()
            .unwrap_or(line)
            .to_string()
    };
    let aa = verdict("epoll 64B vs epoll #2 64B: ");
    assert!(said(&aa).ends_with("no clear difference"), "{aa}");
    let planted = verdict("epoll 64B vs epoll 32KiB: ");
    assert!(said(&planted).ends_with("epoll 64B better"), "{planted}");
    // The table shows the intervals; no column beats every other (the A/A pair ties).
    assert!(
        report
            .contains("| connections | epoll 64B | epoll 32KiB | epoll #2 64B | epoll #2 32KiB |"),
        "{report}"
    );
    assert!(report.contains(" [") && report.contains("–"), "{report}");
    assert!(
        !report
            .lines()
            .any(|l| l.starts_with('|') && l.contains("**")),
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
    // 4 columns at one row: 6 pairs, each judged on the closed loop's metrics: msgs/s and the
    // server's CPU time and system calls per message.
    let on = |metric: &str| {
        summary
            .verdicts
            .iter()
            .filter(|v| v.metric == metric)
            .count()
    };
    assert_eq!(
        (
            on("msgs_per_s"),
            on("server_cpu_us_per_msg"),
            on("server_syscalls_per_msg")
        ),
        (6, 6, 6),
        "{:?}",
        summary.verdicts
    );
    assert_eq!(summary.verdicts.len(), 18);
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
    // The sweep leads with connections per second: a table of them, a row per connection count.
    let table = report
        .split("Connections per second, established in the measured window")
        .nth(1)
        .unwrap_or_else(|| panic!("no connections/s table: {report}"));
    assert!(table.contains("\n| 10 | "), "{report}");
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

/// A run directory holds its suite as it ran (suite.toml: the sweeps `--sweep` chose, and no
/// others), its report names the one command that reruns it, and that command, run as written
/// from beside results/, runs the same cells under the first run's name.
#[test]
fn a_runs_suite_toml_reruns_the_suite_as_it_ran() {
    let first = "[[sweep]]\nname = \"first\"\nbackends = [\"poll\"]\nconnections = [10]\n";
    let second = "# The second sweep.\n[[sweep]]\nname = \"second\"\nbackends = [\"epoll\", \"poll\"]\nconnections = [10]\n";
    let head =
        "# Two sweeps.\ndescription = \"two sweeps\"\nduration = \"200ms\"\nwarmup = \"0s\"\n\
                repeat = 2\n";
    let s = run_suite_with(
        "rerun",
        &format!("{head}{first}{second}"),
        &["--sweep", "second"],
    );
    let ran = std::fs::read_to_string(s.run.join("suite.toml")).unwrap();
    // With the seed its rounds drew from the clock, so the rerun shuffles them the same way.
    let seed = s.meta["rounds"]["seed"].as_u64().unwrap();
    assert_eq!(
        ran,
        format!(
            "{head}# The seed this run's shuffles drew from the clock (meta.json: rounds.seed).\n\
             seed = {seed}\n{second}"
        )
    );
    let report = std::fs::read_to_string(s.run.join("report.md")).unwrap();
    let name = s.run.file_name().unwrap().to_string_lossy().to_string();
    let command = report
        .split_once("To rerun it: `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(command, _)| command)
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(
        command,
        format!("pollbench suite results/{name}/suite.toml")
    );
    // The command as the report writes it, from the directory that holds results/.
    let beside = s.run.parent().unwrap().parent().unwrap();
    let args: Vec<&str> = command.split(' ').skip(1).collect();
    let out = Command::new(BIN)
        .args(&args)
        .current_dir(beside)
        .output()
        .unwrap();
    assert_success(&out);
    let again = std::fs::read_dir(beside.join("results"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| *p != s.run)
        .expect("a second run directory");
    let meta = read_json(again.join("meta.json"));
    assert_eq!(meta["cells"], s.meta["cells"]);
    assert_eq!(meta["rounds"]["seed"], seed, "{meta}");
    assert_eq!(meta["rounds"]["order"], s.meta["rounds"]["order"], "{meta}");
    assert_eq!(meta["suite"], "rerun-second");
    assert!(meta["sweeps"].is_null(), "{meta}");
    let dir = again.file_name().unwrap().to_string_lossy().to_string();
    // (…-rerun-second-2 when it started in the first run's second.)
    assert!(
        dir.ends_with("-rerun-second") || dir.ends_with("-rerun-second-2"),
        "{dir}"
    );
    assert_eq!(
        std::fs::read_to_string(again.join("suite.toml")).unwrap(),
        ran
    );
    assert!(
        meta["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] == "ok"),
        "{meta}"
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

/// An `external:NAME` column runs the command given on the command line in bench-server's place
/// (here bench-server itself, as a program pollbench only knows by its command), pinned, its CPU
/// time read from /proc; without the command its cells are skipped, saying how to give it, and a
/// name the suite has no column for is refused in one line.
#[test]
fn an_external_column_runs_the_given_command_and_its_cpu_time_is_read() {
    let toml = "description = \"external\"\nduration = \"2200ms\"\nwarmup = \"300ms\"\npin = true\n\
                [[sweep]]\nname = \"x\"\nbackends = [\"epoll\", \"external:other\"]\nconnections = [4]\nrate = 2000\n";
    let without = run_suite("external-none", toml);
    let id = "x-other-external-c4";
    let skipped = without.outcome(id);
    assert_eq!(skipped["status"], "skipped", "{skipped}");
    assert!(
        skipped["reason"]
            .as_str()
            .unwrap()
            .contains("--external other="),
        "{skipped}"
    );
    let unknown = Command::new(BIN)
        .args(["suite", "smoke", "--external", "nosuch=/bin/true {port}"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(said.contains("no column external:nosuch"), "{said}");
    assert_eq!(said.trim().lines().count(), 1, "{said}");

    if !Path::new("/proc/self/stat").exists() {
        return skip("external column", "its CPU time is read from /proc");
    }
    let bench_server = Path::new(BIN).with_file_name("bench-server");
    let command = format!(
        "other={} --addr 127.0.0.1:{{port}} --backend epoll",
        bench_server.display()
    );
    let with = run_suite_with("external", toml, &["--external", &command]);
    assert_eq!(with.outcome(id)["status"], "ok", "{}", with.meta);
    assert_eq!(
        with.meta["externals"]["other"][1], "--addr",
        "{}",
        with.meta
    );
    let record = read_json(with.run.join("cells").join(format!("{id}.external.json")));
    assert_eq!(record["schema"], "pollbench.external/1", "{record}");
    assert_eq!(record["command"][0], bench_server.display().to_string());
    let seconds = record["seconds"].as_array().unwrap();
    assert!(seconds.len() >= 2, "{record}");
    let summary = read_json(with.run.join("summary.json"));
    let cell = summary["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(
        cell["label"].as_str().or(cell["column"].as_str()),
        Some("other (external)")
    );
    assert_eq!(cell["server_cost_over"], "measured window", "{cell}");
    // Some CPU per message was read, and no more than a whole core's worth.
    let cpu = cell["server_cpu_us_per_msg"]["median"].as_f64().unwrap();
    assert!(cpu > 0.0 && cpu < 1e6 / 2000.0, "{cell}");
    assert!(cell["server_syscalls_per_msg"].is_null(), "{cell}");
    // The run's suite.toml holds the command it was given, so it reruns the column without it.
    let ran = std::fs::read_to_string(with.run.join("suite.toml")).unwrap();
    assert_eq!(
        ran,
        format!(
            "{toml}\n[external]\nother = \"{} --addr 127.0.0.1:{{port}} --backend epoll\"\n",
            bench_server.display()
        )
    );
    let results = with.run.parent().unwrap();
    let out = Command::new(BIN)
        .arg("suite")
        .arg(with.run.join("suite.toml"))
        .arg("--results")
        .arg(results)
        .output()
        .unwrap();
    assert_success(&out);
    let again = std::fs::read_dir(results)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| *p != with.run)
        .expect("the rerun's directory");
    let meta = read_json(again.join("meta.json"));
    assert_eq!(meta["externals"], with.meta["externals"]);
    let outcome = meta["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(outcome["status"], "ok", "{meta}");
}

//! Bad command lines, and the smoke suite end to end: its report rebuilt, `compare` on its data.

use super::*;

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
    let mut meta: serde_json::Value = read_json(run.join("meta.json"));
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
        let mut cell: serde_json::Value = read_json(entry.path());
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
    let smoke = || {
        Command::new(BIN)
            .args(["suite", "smoke", "--results"])
            .arg(&dir.0)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    };
    let out = smoke();
    assert_success(&out);
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
    let meta: serde_json::Value = read_json(run.join("meta.json"));
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
    assert!(
        report.contains("Cost per message, ") && report.contains("| server CPU µs/msg |"),
        "{report}"
    );
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
    // The suite as it ran: the whole file, and the seed its rounds drew from the clock (the
    // file gives none); and summary.csv: a header and a line per cell.
    let suite_toml = std::fs::read_to_string(run.join("suite.toml")).unwrap();
    let seed_lines = format!(
        "# The seed this run's shuffles drew from the clock (meta.json: rounds.seed).\nseed = {}\n",
        meta["rounds"]["seed"]
    );
    assert!(suite_toml.contains(&seed_lines), "{suite_toml}");
    assert_eq!(
        suite_toml.replace(&seed_lines, ""),
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/suites/smoke.toml")
        )
        .unwrap()
    );
    let csv = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    assert!(
        csv.starts_with("id,sweep,column,backend,row,status,"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 1 + summary.cells.len(), "{csv}");
    // `pollbench report DIR` rebuilds the same report, summary.csv and suite.toml from the data.
    for file in ["report.md", "summary.csv", "suite.toml"] {
        std::fs::remove_file(run.join(file)).unwrap();
    }
    let out = Command::new(BIN).arg("report").arg(run).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(run.join("report.md")).unwrap(),
        report
    );
    assert_eq!(
        std::fs::read_to_string(run.join("summary.csv")).unwrap(),
        csv
    );
    assert_eq!(
        std::fs::read_to_string(run.join("suite.toml")).unwrap(),
        suite_toml
    );
    // A second run never overwrites the first.
    let again = smoke();
    assert_success(&again);
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 2);
    compare_flags_regressions(run, &dir);
}

/// The cores this process may run on, ascending (Cpus_allowed_list in /proc/self/status).
fn allowed_cores() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap();
    pollbench_common::parse_cpu_list(list.trim()).unwrap()
}

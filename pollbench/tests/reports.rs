//! Every run committed under results/ rebuilds to the same bytes: `pollbench report DIR` on a copy
//! of it writes the report.md, summary.json, summary.csv, suite.toml and charts that are
//! committed, so a published number comes from the run's data and this code alone (and a change
//! to the report that alters a published one is seen here, not by a reader). And every committed
//! run can be reproduced: built from a clean tree, its statistics redone from summary.json.

use std::path::{Path, PathBuf};
use std::process::Command;

use pollbench_test_support::{skip, Temp};

/// The repository's root (this crate's parent).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The run directories git tracks under results/ (each a directory with a meta.json, at any
/// depth: a calibration keeps its runs in one directory), with the files tracked in each, by
/// path inside it; None where git cannot say (no git, not a checkout).
fn committed_runs() -> Option<Vec<(String, Vec<String>)>> {
    let out = Command::new("git")
        .args(["ls-files", "-z", "results"])
        .current_dir(repo())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tracked: Vec<&str> = text.split('\0').filter(|p| !p.is_empty()).collect();
    let runs = tracked
        .iter()
        .filter_map(|p| p.strip_suffix("/meta.json"))
        .map(|run| {
            let inside = format!("{run}/");
            let files = tracked
                .iter()
                .filter_map(|p| p.strip_prefix(&inside))
                .map(str::to_string)
                .collect();
            (run.to_string(), files)
        })
        .collect();
    Some(runs)
}

/// The files of a run directory `pollbench report` writes from the rest: summary.csv anew, and
/// suite.toml where the run has none.
const REBUILT: [&str; 2] = ["summary.csv", "suite.toml"];

#[test]
fn every_committed_run_rebuilds_its_report_byte_for_byte() {
    let Some(runs) = committed_runs() else {
        println!(
            "skipped: committed runs: git cannot list results/ here (no git, or not a checkout)"
        );
        return;
    };
    let scratch = Temp::new("reports");
    let mut checked = 0;
    let mut differ = Vec::new();
    for (run, files) in &runs {
        let copy = scratch.path().join(run);
        // Files that `report` writes only where they are missing, or that it must write anew,
        // are left out of the copy: what it writes must be what is committed.
        for file in files.iter().filter(|f| !REBUILT.contains(&f.as_str())) {
            let to = copy.join(file);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(repo().join(run).join(file), &to).unwrap();
        }
        let out = Command::new(env!("CARGO_BIN_EXE_pollbench"))
            .arg("report")
            .arg(&copy)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{run}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for file in files {
            let committed = std::fs::read(repo().join(run).join(file)).unwrap();
            if std::fs::read(copy.join(file)).ok().as_ref() != Some(&committed) {
                differ.push(format!("{run}/{file}"));
            }
        }
        // What it writes is committed too.
        for file in REBUILT {
            if copy.join(file).exists() && !files.iter().any(|f| f == file) {
                differ.push(format!("{run}/{file} (not committed)"));
            }
        }
        checked += 1;
    }
    assert!(
        differ.is_empty(),
        "rebuilt reports differ from the committed ones: {differ:?}"
    );
    if checked == 0 {
        skip("committed runs", "none under results/ has a meta.json");
    }
}

/// No committed run was built from a tree with uncommitted changes (or one git could not judge):
/// a published run must be reproducible from its commit.
#[test]
fn every_committed_run_was_built_from_a_clean_tree() {
    let Some(runs) = committed_runs() else {
        println!("skipped: committed runs: git cannot list results/ here");
        return;
    };
    let not_clean: Vec<String> = runs
        .iter()
        .filter_map(|(run, _)| {
            let meta: serde_json::Value =
                pollbench_test_support::read_json(repo().join(run).join("meta.json"));
            match meta["git_dirty"].as_bool() {
                Some(false) => None,
                Some(true) => Some(format!("{run}: uncommitted changes")),
                None => Some(format!("{run}: not known (git_dirty null)")),
            }
        })
        .collect();
    assert!(
        not_clean.is_empty(),
        "{} committed runs are not reproducible from their commit: {not_clean:#?}",
        not_clean.len()
    );
}

/// The median of a figure's values, as a reader computes it.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Equal but for the last bits: serde_json's default number parser may read a value one unit in
/// the last place off, and a median of two halves that. (The unit test of the summary checks the
/// values exactly, before they are written.)
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1e-300)
}

/// From every committed summary.json alone, a reader redoes the statistics: each figure's median
/// is the median of its per-round values, and its interval two of them; each verdict's ratio
/// the median of its per-round ratios.
#[test]
fn every_committed_summarys_medians_come_from_its_per_round_values() {
    let Some(runs) = committed_runs() else {
        println!("skipped: committed runs: git cannot list results/ here");
        return;
    };
    let mut figures = 0;
    let mut verdicts = 0;
    for (run, files) in &runs {
        if !files.iter().any(|f| f == "summary.json") {
            continue;
        }
        let summary: serde_json::Value =
            pollbench_test_support::read_json(repo().join(run).join("summary.json"));
        for cell in summary["cells"].as_array().unwrap() {
            let id = &cell["id"];
            let rounds = cell["rounds"].as_u64().unwrap() as usize;
            for (name, value) in cell.as_object().unwrap() {
                let Some(m) = value.get("median").and_then(|m| m.as_f64()) else {
                    continue;
                };
                let values: Vec<f64> = cell["per_round"][name]
                    .as_array()
                    .unwrap_or_else(|| panic!("{run} {id} {name}: no per-round values"))
                    .iter()
                    .map(|v| v.as_f64().expect("every round has a figure with a median"))
                    .collect();
                assert_eq!(values.len(), rounds, "{run} {id} {name}");
                assert!(
                    close(median(&values), m),
                    "{run} {id} {name}: {values:?}, {m}"
                );
                for end in ["lo", "hi"] {
                    let v = value[end].as_f64().unwrap();
                    assert!(values.contains(&v), "{run} {id} {name} {end}: {values:?}");
                }
                figures += 1;
            }
        }
        for v in summary["verdicts"].as_array().unwrap() {
            let ratios: Vec<f64> = v["per_round"]
                .as_array()
                .unwrap_or_else(|| panic!("{run} {v}: no per-round ratios"))
                .iter()
                .map(|r| r.as_f64().unwrap())
                .collect();
            assert!(
                close(median(&ratios), v["ratio"]["median"].as_f64().unwrap()),
                "{run} {v}"
            );
            verdicts += 1;
        }
    }
    if figures == 0 {
        skip("committed summaries", "none under results/");
    } else {
        assert!(verdicts > 0, "{figures} figures, no verdicts");
    }
}

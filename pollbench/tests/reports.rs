//! Every run committed under results/ rebuilds to the same bytes: `pollbench report DIR` on a copy
//! of it writes the report.md, summary.json and charts that are committed, so a published number
//! comes from the run's data and this code alone (and a change to the report that alters a
//! published one is seen here, not by a reader).

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
        for file in files {
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

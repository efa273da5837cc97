//! The workspace's `rust-version` is true: no locked dependency needs a newer Rust, and the README
//! states the same minimum. (It said 1.80 while hdrhistogram and proptest needed 1.88.)

use std::path::Path;
use std::process::Command;

/// A "1.88" or "1.85.0" version as comparable numbers.
fn version(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

#[test]
fn rust_version_covers_every_locked_dependency_and_the_readme_says_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let packages = meta["packages"].as_array().unwrap();
    let ours = packages
        .iter()
        .find(|p| p["name"] == "pollbench-common")
        .and_then(|p| p["rust_version"].as_str())
        .expect("the workspace sets rust-version");
    // Only what the workspace resolves to (the lock file can hold more than a build uses).
    let resolved: Vec<&str> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    let mut too_new = Vec::new();
    for p in packages {
        let id = p["id"].as_str().unwrap();
        if members.contains(&id) || !resolved.contains(&id) {
            continue;
        }
        if let Some(needs) = p["rust_version"].as_str() {
            if version(needs) > version(ours) {
                too_new.push(format!("{} {} needs {needs}", p["name"], p["version"]));
            }
        }
    }
    assert!(
        too_new.is_empty(),
        "rust-version {ours} is below what dependencies need: {too_new:?}"
    );
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("Rust {ours} or newer")),
        "README.md must say \"Rust {ours} or newer\""
    );
}

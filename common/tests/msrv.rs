//! The workspace's `rust-version` is true: no dependency the workspace resolves on a platform it
//! supports needs a newer Rust, and the README states the same minimum.
//!
//! `cargo metadata` reads each dependency's manifest, so it needs the sources of every package it
//! lists. Filtered to the supported platforms, it fetches what this machine's cache lacks (a
//! fresh machine's cache holds only what a Linux build used) and never asks for the Windows-only
//! packages in the lock file. Where the registry cannot be reached and the cache lacks a source,
//! the test says so and skips.

use std::path::Path;
use std::process::Command;

/// A "1.88" or "1.85.0" version as comparable numbers.
fn version(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// The platforms the workspace builds for (README: Linux; the poller, bench-server and the rest
/// also on macOS and the BSDs). `.ci/run` cross-checks the macOS and FreeBSD ones.
const PLATFORMS: [&str; 7] = [
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
    "x86_64-unknown-freebsd",
    "x86_64-unknown-netbsd",
    "x86_64-unknown-openbsd",
];

/// What cargo says when a package (or the index) is neither cached nor downloadable.
fn cannot_fetch(stderr: &str) -> bool {
    [
        "failed to download",
        "failed to get",
        "HTTP request",
        "offline mode",
        "network failure",
        "Could not resolve host",
    ]
    .iter()
    .any(|s| stderr.contains(s))
}

#[test]
fn rust_version_covers_every_locked_dependency_and_the_readme_says_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(PLATFORMS.iter().flat_map(|p| ["--filter-platform", p]))
        .current_dir(root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && cannot_fetch(&stderr) {
        let why = stderr.lines().next().unwrap_or_default();
        eprintln!(
            "skipped: rust-version check: cargo metadata needs sources this cache lacks and cannot download ({})",
            why.trim_start_matches("error: ")
        );
        return;
    }
    assert!(out.status.success(), "cargo metadata: {stderr}");
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
    // Only what the workspace resolves to on those platforms (the lock file holds more).
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

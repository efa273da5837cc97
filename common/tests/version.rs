//! `--version` names the commit the binaries were built from: what the suite runner compares
//! across hosts.

use std::process::Command;

#[test]
fn the_version_names_the_commit_it_was_built_from() {
    let version = pollbench_common::VERSION;
    let commit = version
        .strip_prefix(concat!(env!("CARGO_PKG_VERSION"), " (commit "))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{version}"));
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match head {
        Some(head) => assert_eq!(commit, head, "built from HEAD"),
        None => {
            eprintln!("skipped: the commit check: not a git checkout here");
            assert_eq!(commit, "unknown");
        }
    }
}

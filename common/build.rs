//! Bakes the git commit the binaries were built from into `pollbench_common::VERSION`, so the
//! suite runner can refuse a bench-server or load-gen on another host built from other code.
//! Outside a git checkout (a source tarball) the commit is `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=POLLBENCH_COMMIT={commit}");
    // Rebuild when HEAD moves (a commit, a checkout); the paths exist only in a checkout.
    let git = Path::new("../.git");
    for file in ["HEAD", "packed-refs"] {
        println!("cargo:rerun-if-changed={}", git.join(file).display());
    }
    if let Ok(head) = std::fs::read_to_string(git.join("HEAD")) {
        if let Some(reference) = head.strip_prefix("ref: ") {
            println!(
                "cargo:rerun-if-changed={}",
                git.join(reference.trim()).display()
            );
        }
    }
}

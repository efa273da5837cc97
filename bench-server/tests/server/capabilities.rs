//! `bench-server --capabilities` against what the binary does: every combination it lists starts
//! and runs with the trigger and accept strategy asked for, every other one exits 2, and so do the
//! flags it says a server does not take. Bounded: each refusal is waited for at most 5 s, each
//! start at most as long as `Server::start`'s first line, and a few servers run at a time.

use std::process::Command;

use crate::common::{refusal, Argv, Server, BIN};
use pollbench_schema::capabilities::{self, Capabilities, ServerKind, SCHEMA};
use poller::BackendKind;

const TRIGGERS: [&str; 3] = ["level", "edge", "oneshot"];
const ACCEPTS: [&str; 4] = ["reuseport", "exclusive", "shared", "acceptor"];

fn capabilities() -> Capabilities {
    let out = Command::new(BIN).arg("--capabilities").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    capabilities::parse(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Run bench-server with `args`, expecting a refusal: exit 2 with one line on stderr, nothing on
/// stdout. Waits at most 5 s (a server that starts instead would run until signalled).
fn refused(args: &[&str]) -> String {
    let out = refusal(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr:?}");
    assert!(out.stdout.is_empty(), "{args:?} never started listening");
    stderr
}

/// Start bench-server with `args`, check it listens, stop it; the `config` of its stats JSON.
fn runs(args: &[&str]) -> serde_json::Value {
    let server = Server::start(args, None);
    let (status, _, json) = server.stop();
    assert!(status.success(), "{args:?}: exit {status}");
    json["config"].clone()
}

#[test]
fn the_document_describes_this_binary() {
    let caps = capabilities();
    assert_eq!(caps.schema, SCHEMA);
    assert_eq!(caps.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(caps.os, std::env::consts::OS);
    let names: Vec<_> = caps.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "select",
            "poll",
            "epoll",
            "kqueue",
            "io_uring",
            "io_uring_completion",
            "threads",
            "tokio"
        ]
    );
    // The tests are built with the binary's features, so the binary and this process agree here;
    // the suite runner, built otherwise, must ask the binary.
    for kind in BackendKind::ALL {
        let server = caps.server(kind.name()).unwrap();
        assert_eq!(server.kind, ServerKind::EventLoop);
        assert_eq!(server.available, kind.probe().is_ok(), "{kind}");
        if let Ok(probed) = kind.capabilities() {
            assert_eq!(server.max_fd, probed.max_fd.map(i64::from), "{kind}");
        }
    }
    let (soft, _) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    if soft != nix::sys::resource::RLIM_INFINITY {
        // rlim_t is i64 on FreeBSD.
        #[allow(clippy::useless_conversion)]
        let soft = u64::try_from(soft).ok();
        assert_eq!(caps.open_files_limit, soft);
    }
    // The flag takes no other flag; the others are still checked.
    let err = refused(&["--capabilities", "--backend", "poll"]);
    assert!(err.contains("--capabilities"), "{err}");
    refused(&["--backend", "poll", "--trigger", "edge"]);
}

/// For every available event loop: each listed trigger × accept strategy runs, with that trigger
/// and strategy in its stats, and each unlisted one (select + edge, poll + exclusive, ...) exits 2.
#[test]
fn listed_combinations_run_and_the_others_are_refused() {
    let caps = capabilities();
    let mut listed = Vec::new();
    for server in caps.available() {
        if server.kind != ServerKind::EventLoop {
            continue;
        }
        for trigger in TRIGGERS {
            for accept in ACCEPTS {
                let args = Argv::new()
                    .backend(&server.name)
                    .trigger(trigger)
                    .accept(accept)
                    .loops(2);
                if server.accepts_combination(trigger, accept) {
                    listed.push(args);
                } else {
                    let err = refused(&args.strs());
                    assert!(err.contains(&server.mechanism), "names the backend: {err}");
                }
            }
        }
        // No flag: the listed defaults (no trigger where the server has none: completion mode).
        let config = runs(&["--backend", &server.name]);
        assert_eq!(
            config["trigger"],
            serde_json::json!(server.default_trigger),
            "{}",
            server.name
        );
        assert_eq!(config["accept"], server.default_accept.as_deref().unwrap());
    }
    let select = caps.server("select").unwrap();
    assert!(!select.accepts_combination("edge", "reuseport"));
    assert!(listed.len() >= 12, "select and poll at least: {listed:?}");
    for chunk in listed.chunks(4) {
        std::thread::scope(|s| {
            for args in chunk {
                s.spawn(move || {
                    let args = args.strs();
                    let config = runs(&args);
                    assert_eq!(config["backend"], args[1], "{args:?}");
                    assert_eq!(config["trigger"], args[3], "{args:?}");
                    assert_eq!(config["accept"], args[5], "{args:?}");
                });
            }
        });
    }
}

/// `pin` and `busy_poll` are what the binary does with `--pin` and `--busy-poll`: the threads
/// baseline refuses `--pin` (that skip is no longer a special case on its name in the runner); the
/// baselines list no trigger or accept strategy and refuse both flags. Unavailable servers exit 2
/// with the reason the document gives.
#[test]
fn flags_and_availability_match_the_binary() {
    let caps = capabilities();
    let threads = caps.server("threads").unwrap();
    assert!(threads.available && !threads.pin);
    for server in &caps.servers {
        let name = server.name.as_str();
        if !server.available {
            let err = refused(&["--backend", name]);
            let reason = server.unavailable_reason.as_deref().unwrap();
            assert_eq!(err.trim_end(), format!("bench-server: {reason}"));
            continue;
        }
        assert_eq!(server.unavailable_reason, None);
        let pin = ["--backend", name, "--pin", "--threads", "1"];
        if server.pin {
            assert_eq!(runs(&pin)["pinned"], true, "{name}");
        } else {
            refused(&pin);
        }
        let busy = ["--backend", name, "--busy-poll", "10us", "--threads", "1"];
        if server.busy_poll {
            assert_eq!(runs(&busy)["busy_poll_us"], 10, "{name}");
        } else {
            refused(&busy);
        }
        if server.kind == ServerKind::Baseline {
            assert!(server.triggers.is_empty() && server.accepts.is_empty());
            assert_eq!(server.default_trigger, None);
            refused(&["--backend", name, "--trigger", "level"]);
            refused(&["--backend", name, "--accept", "reuseport"]);
        }
    }
}

//! `--capabilities`: what this binary can run here, as a `pollbench.capabilities/1` document.
//!
//! Nothing here decides what is accepted. Every answer comes from parsing a command line and
//! checking it with [`Args::into_config_with`], the code that accepts or refuses bench-server's
//! flags when it starts: a trigger is listed when `--backend NAME --trigger T --accept A` passes
//! that check, `pin` when `--backend NAME --pin` does, and so on. The document and the binary
//! cannot disagree.

use clap::{Parser, ValueEnum};
use pollbench_schema::capabilities::{Capabilities, Server, ServerKind, SCHEMA};

use std::cell::RefCell;

use crate::cli::{self, flag_value, AcceptStrategy, Args, Config, Probes, ServerBackend, Trigger};
use crate::probes;

/// The document for this binary on this machine. An error only when the checks accept a set of
/// trigger and accept combinations that `capabilities/1` cannot state (not every listed trigger
/// with every listed strategy).
pub fn capabilities() -> Result<Capabilities, String> {
    Ok(Capabilities {
        schema: SCHEMA.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        os: std::env::consts::OS.into(),
        open_files_limit: pollbench_common::open_files_limit(),
        servers: ServerBackend::ALL
            .into_iter()
            .map(server)
            .collect::<Result<_, _>>()?,
    })
}

/// One `--backend` value, described by asking the command-line check about each flag.
fn server(backend: ServerBackend) -> Result<Server, String> {
    let name = backend.to_string();
    // Probe an event loop's backend once, and a completion ring once per setup; every check
    // below uses what they found, as one start of bench-server would.
    let probed = match backend {
        ServerBackend::Poller(kind) => Some(probes::poller(kind)),
        ServerBackend::Threads | ServerBackend::Tokio | ServerBackend::IoUringCompletion => None,
    };
    let poller = |kind| probed.clone().unwrap_or_else(|| probes::poller(kind));
    let rings = RefCell::new(Vec::new());
    let completion = |fixed_files: bool, batch: bool| {
        let mut rings = rings.borrow_mut();
        if let Some((_, found)) = rings
            .iter()
            .find(|(setup, _)| *setup == (fixed_files, batch))
        {
            return Clone::clone(found);
        }
        let found = (probes::here().completion)(fixed_files, batch);
        rings.push(((fixed_files, batch), found.clone()));
        found
    };
    let probes = Probes {
        poller: &poller,
        completion: &completion,
    };
    let check = |flags: &[&str]| -> Result<Config, String> {
        let argv = ["bench-server", "--backend", &name]
            .into_iter()
            .chain(flags.iter().copied());
        let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        args.into_config_with(&probes)
    };

    let mut server = Server {
        name: name.clone(),
        mechanism: cli::mechanism(backend).into(),
        kind: match backend {
            ServerBackend::Poller(_) | ServerBackend::IoUringCompletion => ServerKind::EventLoop,
            ServerBackend::Threads | ServerBackend::Tokio => ServerKind::Baseline,
        },
        available: false,
        unavailable_reason: None,
        triggers: Vec::new(),
        accepts: Vec::new(),
        default_trigger: None,
        default_accept: None,
        pin: false,
        busy_poll: false,
        max_fd: None,
    };
    // Available when `--backend NAME` alone starts; the reason is what bench-server says then.
    let defaults = match check(&[]) {
        Ok(config) => config,
        Err(reason) => {
            server.unavailable_reason = Some(reason);
            return Ok(server);
        }
    };
    server.available = true;
    server.default_trigger = defaults.trigger.as_ref().map(flag_value);
    server.default_accept = defaults.accept.as_ref().map(flag_value);
    server.pin = check(&["--pin"]).is_ok();
    server.busy_poll = check(&["--busy-poll", "1us"]).is_ok();
    server.max_fd = probed
        .clone()
        .and_then(Result::ok)
        .and_then(|caps| caps.max_fd)
        .map(i64::from);

    triggers_and_accepts(&mut server, check)?;
    Ok(server)
}

/// The triggers and accept strategies `check` takes with `server`'s backend, into `server`: an
/// error where it takes some triggers with some strategies only (the document cannot say so).
fn triggers_and_accepts(
    server: &mut Server,
    check: impl Fn(&[&str]) -> Result<Config, String>,
) -> Result<(), String> {
    let mut combinations = Vec::new();
    for trigger in Trigger::value_variants().iter().map(flag_value) {
        for accept in AcceptStrategy::value_variants().iter().map(flag_value) {
            if check(&["--trigger", &trigger, "--accept", &accept]).is_ok() {
                combinations.push((trigger.clone(), accept.clone()));
            }
        }
    }
    // A server without triggers (completion mode) may still take accept strategies.
    if combinations.is_empty() {
        for accept in AcceptStrategy::value_variants().iter().map(flag_value) {
            if check(&["--accept", &accept]).is_ok() {
                server.accepts.push(accept);
            }
        }
    }
    for (trigger, accept) in &combinations {
        if !server.triggers.contains(trigger) {
            server.triggers.push(trigger.clone());
        }
        if !server.accepts.contains(accept) {
            server.accepts.push(accept.clone());
        }
    }
    if combinations.len() != server.triggers.len() * server.accepts.len() {
        return Err(format!(
            "--backend {} accepts {combinations:?}, not every trigger with every accept \
             strategy: {SCHEMA} cannot say so",
            server.name
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every listed combination passes the command-line check and every other one is refused:
    /// the lists are the check's answers, not a copy of its rules.
    #[test]
    fn lists_are_what_the_command_line_check_accepts() {
        let caps = capabilities().expect("a document");
        assert_eq!(caps.schema, SCHEMA);
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
        for server in &caps.servers {
            let backend: ServerBackend = server.name.parse().unwrap();
            for trigger in Trigger::value_variants() {
                for accept in AcceptStrategy::value_variants() {
                    let (t, a) = (flag_value(trigger), flag_value(accept));
                    let args = Args::try_parse_from([
                        "bench-server",
                        "--backend",
                        &server.name,
                        "--trigger",
                        &t,
                        "--accept",
                        &a,
                    ])
                    .unwrap();
                    assert_eq!(
                        args.into_config().is_ok(),
                        server.accepts_combination(&t, &a),
                        "{backend} {t} {a}"
                    );
                }
            }
            let bare = Args::try_parse_from(["bench-server", "--backend", &server.name])
                .unwrap()
                .into_config();
            assert_eq!(bare.is_ok(), server.available, "{backend}");
            assert_eq!(bare.err(), server.unavailable_reason, "{backend}");
        }
    }

    #[test]
    fn baselines_say_what_they_accept() {
        let caps = capabilities().unwrap();
        let threads = caps.server("threads").unwrap();
        assert_eq!(threads.kind, ServerKind::Baseline);
        assert!(threads.available);
        assert!(!threads.pin, "a thread per connection cannot be pinned");
        assert!(!threads.busy_poll);
        assert!(threads.triggers.is_empty() && threads.accepts.is_empty());
        assert_eq!(threads.default_trigger, None);
        let tokio = caps.server("tokio").unwrap();
        assert!(tokio.pin && !tokio.busy_poll && tokio.triggers.is_empty());
    }

    #[test]
    fn event_loops_report_defaults_and_descriptor_limits() {
        let caps = capabilities().unwrap();
        let select = caps.server("select").unwrap();
        assert!(select.available, "select is built everywhere");
        assert_eq!(select.kind, ServerKind::EventLoop);
        assert!(!select.triggers.contains(&"edge".to_owned()));
        assert_eq!(select.default_trigger.as_deref(), Some("level"));
        assert_eq!(select.default_accept.as_deref(), Some("reuseport"));
        assert!(select.pin && select.busy_poll);
        let fd_setsize = i64::from(
            poller::BackendKind::Select
                .capabilities()
                .unwrap()
                .max_fd
                .unwrap(),
        );
        assert_eq!(select.max_fd, Some(fd_setsize));
        assert_eq!(
            caps.server("kqueue").unwrap().mechanism,
            cli::mechanism(ServerBackend::Poller(poller::BackendKind::Kqueue))
        );
        // Completion mode: a loop of ours with no readiness trigger, a listener per loop only.
        let completion = caps.server("io_uring_completion").unwrap();
        assert_eq!(completion.kind, ServerKind::EventLoop);
        if completion.available {
            assert!(completion.triggers.is_empty(), "{completion:?}");
            assert_eq!(completion.accepts, ["reuseport"], "{completion:?}");
            assert_eq!(completion.default_accept.as_deref(), Some("reuseport"));
            assert!(completion.pin && !completion.busy_poll, "{completion:?}");
        }
        for server in caps.available() {
            if server.kind == ServerKind::EventLoop && !server.triggers.is_empty() {
                assert!(
                    server.accepts_combination(
                        server.default_trigger.as_deref().unwrap(),
                        server.default_accept.as_deref().unwrap()
                    ),
                    "{}: the defaults are a listed combination",
                    server.name
                );
            }
        }
    }
}

//! Where a suite's cells run bench-server and load-gen: this machine over 127.0.0.1, network
//! namespaces of their own (`netns`), or hosts reached by launch prefixes (`hosts`). A [`Network`]
//! is made once per suite; its [`Site`]s (the server's, client k's) start programs as
//! [`Process`]es, one handle to wait for, stop and fetch the files of, whatever the topology.

use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::place::hosts::Hosts;
use crate::place::netns::Topology;
use pollbench_common::process::{Running, WaitEnd};
use pollbench_schema::capabilities::Capabilities;
use pollbench_schema::results::HostFacts;
use serde::Deserialize;

use crate::place::hosts::HostsSpec;
use crate::place::netns::Shaping;

/// The suite's `topology` key.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TopologyKind {
    /// Server and client in this machine's network namespace, over 127.0.0.1 (the default).
    #[default]
    Loopback,
    /// The server in a network namespace of its own at 198.18.0.1, the client in another at
    /// 198.18.0.2, joined by veths to a bridge (see [`crate::place::netns`]); needs root.
    Netns,
}

/// Where a suite's cells run their server and client, made once for the whole suite.
pub enum Network {
    /// Both in this machine's namespace, over 127.0.0.1.
    Loopback,
    /// The server in its namespace, client k in client k's; how their links are shaped, if
    /// they are (as the report says it).
    Netns(Topology, Option<String>),
    /// Hosts reached by launch prefixes (a suite's `[hosts]`): bench-server on one, load-gen on
    /// each of the others, files read back through the launcher.
    Hosts(Hosts),
    /// Namespaces were asked for and could not be made: every cell is skipped with this reason.
    Unavailable(String),
}

impl Network {
    /// The network a suite asks for, made now (namespaces are deleted when it is dropped): its
    /// `[hosts]` if it has them, else its `topology` for `clients` load-gens with links shaped as
    /// `shaping` says; `local_bin_dir` holds this runner's binaries (the hosts' default `bin_dir`).
    pub fn new(
        hosts: Option<&HostsSpec>,
        topology: TopologyKind,
        clients: usize,
        shaping: &Shaping,
        local_bin_dir: &Path,
    ) -> Network {
        if let Some(spec) = hosts {
            return Network::Hosts(Hosts::new(spec, local_bin_dir));
        }
        match topology {
            TopologyKind::Loopback => Network::Loopback,
            TopologyKind::Netns => match Topology::create(clients, shaping) {
                Ok(topology) => Network::Netns(topology, shaping.describe()),
                Err(why) => Network::Unavailable(format!("topology netns: {why}")),
            },
        }
    }

    /// Before the first cell, on launched hosts: check every host runs this build (the runner's
    /// `bench_server` and `load_gen`), and return the server host's capabilities and what
    /// meta.json records of the hosts; None elsewhere.
    pub fn prepare(
        &mut self,
        bench_server: &Path,
        load_gen: &Path,
    ) -> Result<Option<(Capabilities, Vec<HostFacts>)>, String> {
        let Network::Hosts(hosts) = self else {
            return Ok(None);
        };
        let capabilities = hosts.prepare(bench_server, load_gen)?;
        Ok(Some((capabilities, hosts.facts())))
    }

    /// Why no cell can run on this network, if none can.
    pub fn unavailable(&self) -> Option<&str> {
        match self {
            Network::Unavailable(why) => Some(why),
            _ => None,
        }
    }

    /// The address bench-server binds (port 0: it picks one and says which).
    pub fn server_bind(&self) -> String {
        match self {
            Network::Netns(t, _) => format!("{}:0", t.server.address),
            Network::Hosts(h) => std::net::SocketAddr::new(h.address, 0).to_string(),
            _ => "127.0.0.1:0".into(),
        }
    }

    /// Where bench-server runs.
    pub fn server(&self) -> Site<'_> {
        let at = match self {
            Network::Netns(t, _) => At::Namespace(&t.server),
            Network::Hosts(h) => At::Host(h, &h.server),
            _ => At::Here,
        };
        Site { role: None, at }
    }

    /// Where client `k` runs.
    pub fn client(&self, k: usize) -> Site<'_> {
        let at = match self {
            Network::Netns(t, _) => At::Namespace(&t.clients[k]),
            Network::Hosts(h) => At::Host(h, &h.clients[k]),
            _ => At::Here,
        };
        Site { role: Some(k), at }
    }

    /// Start `program` on every client site at once, with the arguments `args(k, site)` gives client
    /// `k`,
    /// and learn the pid of each launched on a host (after all are started, so one slow login does
    /// not hold back the others' start).
    pub fn start_clients(
        &self,
        clients: usize,
        program: &Path,
        mut args: impl FnMut(usize, &Site) -> Vec<String>,
    ) -> std::io::Result<Vec<Process<'_>>> {
        let mut started = Vec::with_capacity(clients);
        for k in 0..clients {
            let site = self.client(k);
            let args = args(k, &site);
            // Those started are stopped as `started` drops.
            started.push(site.start(program, &args)?);
        }
        for process in &mut started {
            process.learn_host_pid();
        }
        Ok(started)
    }

    /// When `clients` load-gens of a cell with `connections` in all should start their load, so
    /// they start together (`load-gen --start-at`, Unix seconds): a moment after every one can have
    /// been launched and connected; None for a single local client, which starts once connected.
    pub fn common_start(&self, clients: usize, connections: usize) -> Option<f64> {
        let launch = match self {
            Network::Hosts(_) => Duration::from_secs(3), // an ssh login each
            _ if clients > 1 => Duration::from_millis(300),
            _ => return None,
        };
        let connect = Duration::from_micros(200 * connections as u64 / clients.max(1) as u64);
        let at = std::time::SystemTime::now() + launch + connect;
        Some(
            at.duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
        )
    }

    /// The open-files limit a load-gen process runs under: the lowest of the client hosts'
    /// (asked before the first cell), or this process's, which local clients inherit.
    pub fn client_open_files(&self) -> Option<u64> {
        match self {
            Network::Hosts(h) => h.client_open_files,
            _ => pollbench_common::open_files_limit(),
        }
    }

    /// What meta.json and the report say of it: `None` for loopback, the default.
    pub fn describe(&self) -> Option<String> {
        match self {
            Network::Loopback => None,
            Network::Netns(t, shaped) => Some(format!(
                "netns: bench-server in network namespace {} at {}, load-gen in {}, joined by veths to a bridge in a namespace of their own{}",
                t.server.namespace,
                t.server.address,
                t.clients
                    .iter()
                    .map(|c| format!("{} at {}", c.namespace, c.address))
                    .collect::<Vec<_>>()
                    .join(", "),
                shaped.as_ref().map_or(String::new(), |s| format!("; {s}"))
            )),
            Network::Hosts(h) => Some(format!(
                "hosts: bench-server via `{}` at {}, load-gen via {}",
                h.server.name,
                h.address,
                h.clients
                    .iter()
                    .map(|c| format!("`{}`", c.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Network::Unavailable(why) => Some(format!("netns, not available: {why}")),
        }
    }
}

/// Where one program of a cell runs: bench-server's site or client `k`'s.
#[derive(Clone, Copy)]
pub struct Site<'a> {
    /// None for the server, else the client's index.
    role: Option<usize>,
    at: At<'a>,
}

#[derive(Clone, Copy)]
enum At<'a> {
    Here,
    Namespace(&'a crate::place::netns::Host),
    Host(&'a Hosts, &'a crate::place::hosts::Host),
}

impl<'a> Site<'a> {
    /// What the site is called in a merged run's parts and in errors: its address, its launch
    /// prefix, or `local K` (clients from 1).
    pub fn name(&self) -> String {
        match (self.at, self.role) {
            (At::Namespace(ns), _) => ns.address.to_string(),
            (At::Host(_, host), _) => host.name.clone(),
            (At::Here, Some(k)) => format!("local {}", k + 1),
            (At::Here, None) => "local".into(),
        }
    }

    /// Where a program here writes the file that ends up at `local` (see
    /// [`Process::fetch`]): `local` itself unless the site is a launched host.
    pub fn file_for(&self, local: &Path) -> String {
        match self.at {
            At::Host(hosts, _) => hosts.remote_file(local),
            _ => local.display().to_string(),
        }
    }

    /// Start `program` with `args` here.
    pub fn start(&self, program: &Path, args: &[String]) -> std::io::Result<Process<'a>> {
        let command = match self.at {
            At::Here => {
                let mut command = Command::new(program);
                command.args(args);
                command
            }
            At::Namespace(ns) => ns.command(program, args),
            At::Host(hosts, host) => hosts.launch(host, program, args),
        };
        Ok(Process {
            site: *self,
            child: Running::spawn(command)?,
            host_pid: None,
        })
    }
}

impl<'a> Site<'a> {
    /// Start `program` with `args` on this machine, on `core` from its first instruction where one
    /// is given (Linux: every thread it makes inherits the pin). A server pollbench does not build
    /// runs this way; it is refused at any other site. It may be a script that starts the server
    /// as its child: it leads a process group of its own, stopped, killed on drop and by the
    /// panic hook as a whole ([`Running::spawn_group`]), so no process it started keeps running,
    /// or keeps its port, after it.
    pub fn start_pinned(
        &self,
        program: &Path,
        args: &[String],
        core: Option<usize>,
    ) -> std::io::Result<Process<'a>> {
        if !matches!(self.at, At::Here) {
            return Err(std::io::Error::other(
                "an external server runs on this machine only",
            ));
        }
        let mut command = Command::new(program);
        command.args(args);
        if let Some(core) = core {
            pin_on_exec(&mut command, core)?;
        }
        Ok(Process {
            site: *self,
            child: Running::spawn_group(command)?,
            host_pid: None,
        })
    }
}

/// Make `command`'s child pin itself to `core` between fork and exec.
#[cfg(target_os = "linux")]
fn pin_on_exec(command: &mut Command, core: usize) -> std::io::Result<()> {
    use nix::sched::{sched_setaffinity, CpuSet};
    use std::os::unix::process::CommandExt;
    let mut set = CpuSet::new();
    set.set(core).map_err(std::io::Error::from)?;
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe
    // work is allowed: it makes one system call (sched_setaffinity) on a set built before the
    // fork, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(std::io::Error::from)
        });
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn pin_on_exec(_: &mut Command, _: usize) -> std::io::Result<()> {
    Err(std::io::Error::other(
        "pinning a program pollbench does not build needs Linux",
    ))
}

/// A program started at a [`Site`]: waited for, stopped and its files fetched the same way
/// whatever the site. One still running on a launched host when dropped is stopped there (its
/// launcher, killed here, may not pass the signal on).
pub struct Process<'a> {
    site: Site<'a>,
    child: Running,
    /// Its pid on a launched host, once announced, until it is known to have ended.
    host_pid: Option<u32>,
}

impl Process<'_> {
    /// The next line it writes to stdout, within `limit` (see [`Running::stdout_line`]); the
    /// announcement of its pid on a launched host is taken, not returned.
    pub fn stdout_line(&mut self, limit: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.child.stdout_line(left)?;
            match (self.site.at, crate::place::hosts::announced_pid(&line)) {
                (At::Host(..), Some(pid)) => self.host_pid = Some(pid),
                _ => return Some(line),
            }
        }
    }

    /// On a launched host: read its pid, its first line of output after what a login shell may
    /// print (at most 10 lines, 30 s).
    fn learn_host_pid(&mut self) {
        if !matches!(self.site.at, At::Host(..)) {
            return;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        for _ in 0..10 {
            if self.host_pid.is_some() {
                return;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if self.stdout_line(left).is_none() {
                return;
            }
        }
    }

    /// Whether it is still running (here: its launcher, on a launched host).
    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// Its process id on this machine (its launcher's, on a launched host).
    pub fn local_pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait for it to end, at most `limit` (see [`Running::wait`]).
    pub fn wait(&mut self, limit: Duration) -> Result<(ExitStatus, String), WaitEnd> {
        let end = self.child.wait(limit);
        if end.is_ok() {
            self.host_pid = None;
        }
        end
    }

    /// Stop it gracefully: SIGTERM (on its host where it was launched there), then killed after
    /// `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if let (At::Host(_, host), Some(pid)) = (self.site.at, self.host_pid.take()) {
            // Its launcher (an ssh client) ends when it does; also after an interruption.
            if host.terminate(pid).is_ok() && self.child.wait_through(grace).is_ok() {
                return;
            }
        }
        self.child.terminate(grace);
    }

    /// What it wrote to stderr; complete once it has ended.
    pub fn stderr_text(&mut self) -> String {
        self.child.stderr_text()
    }

    /// Bring the file it wrote at [`Site::file_for`] `local` to `local`: nothing to do unless it
    /// ran on a launched host.
    pub fn fetch(&self, local: &Path) -> Result<(), String> {
        match self.site.at {
            At::Host(hosts, host) => host.fetch(&hosts.remote_file(local), local),
            _ => Ok(()),
        }
    }
}

impl Drop for Process<'_> {
    fn drop(&mut self) {
        if let (At::Host(_, host), Some(pid)) = (self.site.at, self.host_pid) {
            let _ = host.terminate(pid);
        }
    }
}

//! Where a suite's cells run bench-server and load-gen: this machine over 127.0.0.1, network
//! namespaces of their own (`netns`), or hosts reached by launch prefixes (`hosts`). [`Network`]
//! is what the cell runner asks: how to start a program where the server or client `k` runs,
//! which address the server binds, where result files go and how they come back, how to stop
//! what runs elsewhere.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::hosts::Hosts;
use crate::netns::Topology;
use crate::process::Running;
use crate::suite::{Suite, TopologyKind};

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
    /// The network `suite` asks for, made now (namespaces are deleted when it is dropped);
    /// `local_bin_dir` holds this runner's binaries (the hosts' default `bin_dir`).
    pub fn for_suite(suite: &Suite, local_bin_dir: &Path) -> Network {
        if let Some(spec) = &suite.hosts {
            return Network::Hosts(Hosts::new(spec, local_bin_dir));
        }
        match suite.topology {
            TopologyKind::Loopback => Network::Loopback,
            TopologyKind::Netns => {
                let shaping = suite.shaping();
                match Topology::create(suite.clients, &shaping) {
                    Ok(topology) => Network::Netns(topology, shaping.describe()),
                    Err(why) => Network::Unavailable(format!("topology netns: {why}")),
                }
            }
        }
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

    /// A command that runs `program` with `args` where the server runs. On a launched host its
    /// first line of output is `pollbench-pid PID` (see [`crate::hosts`]).
    pub fn server_command(&self, program: &Path, args: &[String]) -> Command {
        match self {
            Network::Netns(t, _) => t.server.command(program, args),
            Network::Hosts(h) => {
                h.server
                    .command(&crate::hosts::exec_line(&h.program(program), args, true))
            }
            _ => local(program, args),
        }
    }

    /// A command that runs `program` with `args` where client `k` runs.
    pub fn client_command(&self, k: usize, program: &Path, args: &[String]) -> Command {
        match self {
            Network::Netns(t, _) => t.clients[k].command(program, args),
            Network::Hosts(h) => {
                h.clients[k].command(&crate::hosts::exec_line(&h.program(program), args, true))
            }
            _ => local(program, args),
        }
    }

    /// What client `k` is called in a merged run's parts: its address, its launch prefix, or
    /// `local K` (from 1).
    pub fn client_name(&self, k: usize) -> String {
        match self {
            Network::Netns(t, _) => t.clients[k].address.to_string(),
            Network::Hosts(h) => h.clients[k].name.clone(),
            _ => format!("local {}", k + 1),
        }
    }

    /// Where a process on the hosts writes the file that ends up at `local`: a path under the
    /// hosts' work directory, unique to this runner; `local` itself where the processes run on
    /// this machine.
    pub fn file_for(&self, local: &Path) -> String {
        match self {
            Network::Hosts(h) => format!(
                "{}/pollbench-{}-{}",
                h.work_dir.trim_end_matches('/'),
                std::process::id(),
                local
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().to_string())
            ),
            _ => local.display().to_string(),
        }
    }

    /// Bring a file the server (`None`) or client `k` wrote at [`file_for`](Self::file_for)
    /// `local` to `local`: a no-op on this machine.
    pub fn fetch(&self, client: Option<usize>, local: &Path) -> Result<(), String> {
        match self {
            Network::Hosts(h) => {
                let host = client.map_or(&h.server, |k| &h.clients[k]);
                host.fetch(&self.file_for(local), local)
            }
            _ => Ok(()),
        }
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

    /// The pid a process launched on a host announced (its first line of output, after what a
    /// login shell may print: at most 10 lines, 30 s); None here.
    pub fn launched_pid(&self, child: &mut Running) -> Option<u32> {
        let Network::Hosts(_) = self else {
            return None;
        };
        for _ in 0..10 {
            let line = child.stdout_line(Duration::from_secs(30))?;
            if let Some(pid) = crate::hosts::announced_pid(&line) {
                return Some(pid);
            }
        }
        None
    }

    /// After an interruption: SIGTERM to every client process launched on a host (the launcher
    /// killed here may not pass it on).
    pub fn stop_clients(&self, pids: &[Option<u32>]) {
        if let Network::Hosts(h) = self {
            for (k, pid) in pids.iter().enumerate() {
                if let Some(pid) = pid {
                    let _ = h.clients[k].terminate(*pid);
                }
            }
        }
    }

    /// Stop the server: SIGTERM to `pid` on its host where it was launched there, else to the
    /// child itself.
    pub fn stop_server(&self, child: &mut Running, pid: Option<u32>, grace: Duration) {
        if let (Network::Hosts(h), Some(pid)) = (self, pid) {
            // Its launcher (an ssh client) ends when it does; also after an interruption.
            if h.server.terminate(pid).is_ok() && child.wait_through(grace).is_ok() {
                return;
            }
        }
        child.terminate(grace);
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

/// A command that runs `program` with `args` here.
fn local(program: &Path, args: &[String]) -> Command {
    let mut command = Command::new(program);
    command.args(args);
    command
}

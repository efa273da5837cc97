//! Hosts reached by a launch prefix: a suite's `[hosts]`, for running bench-server on one machine
//! and load-gen on others (`launch = "ssh bench@client1"`), or anything else that runs a shell
//! command somewhere (`launch = "sh -c"` runs it here, which is how the tests drive this code).
//!
//! A launch prefix is split on whitespace (no quoting) and given one more argument: a POSIX shell
//! command line, as `ssh HOST 'command'` runs one. Every program is started with `exec`, so the
//! launched process is the program itself; bench-server's command line first prints
//! `pollbench-pid PID`, the pid it then has on its host, so the runner can stop it there with
//! `kill -TERM PID` (an ssh client killed here would leave it running there). Result files are
//! written on the host under `work_dir` and read back with `cat`, then removed.
//!
//! Before the first cell, every host's binaries must print the same `--version` (version and
//! commit) as the runner's own: a host built from other code would be measured under this
//! commit's name. Each client host's `ulimit -n` decides which cells its share of connections
//! fits (the rest are skipped with the reason); each host's kernel, CPU model and core count go
//! into meta.json.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pollbench_schema::results::HostFacts;
use serde::Deserialize;

use pollbench_common::process::{Running, WaitEnd};

/// The suite's `[hosts]` table.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct HostsSpec {
    /// Where bench-server runs, and the address the clients reach it at (bench-server binds it).
    pub server: ServerSpec,
    /// One load-gen per client host.
    pub clients: Vec<ClientSpec>,
    /// The directory holding bench-server and load-gen on every host. [default: the directory of
    /// the runner's own binaries, the same path on every host]
    pub bin_dir: Option<String>,
    /// Where the hosts write result files before they are read back. [default: /tmp]
    #[serde(default = "default_work_dir")]
    pub work_dir: String,
}

/// `[hosts] server`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub launch: String,
    /// An IP address of the server host that every client host can reach.
    pub address: IpAddr,
}

/// One of `[hosts] clients`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    pub launch: String,
}

fn default_work_dir() -> String {
    "/tmp".into()
}

impl HostsSpec {
    /// The checks TOML cannot make: launch prefixes that are not empty, at least one client.
    pub fn check(&self) -> Result<(), String> {
        if self.clients.is_empty() {
            return Err("[hosts] needs at least one client".into());
        }
        let launches =
            std::iter::once(&self.server.launch).chain(self.clients.iter().map(|c| &c.launch));
        for launch in launches {
            if launch.split_whitespace().next().is_none() {
                return Err(
                    "[hosts]: a launch prefix is empty (\"ssh user@host\", \"sh -c\")".into(),
                );
            }
        }
        if !self.work_dir.starts_with('/') {
            return Err(format!(
                "[hosts] work_dir must be an absolute path, not {:?}",
                self.work_dir
            ));
        }
        Ok(())
    }
}

/// The hosts of a suite's `[hosts]`, ready to launch on.
#[derive(Debug)]
pub struct Hosts {
    pub server: Host,
    /// Where the clients reach the server (and where it binds).
    pub address: std::net::IpAddr,
    pub clients: Vec<Host>,
    /// The directory of bench-server and load-gen on every host.
    pub bin_dir: String,
    /// Where result files are written on the hosts.
    pub work_dir: String,
    /// The lowest `ulimit -n` of the client hosts, once [`prepare`](Self::prepare) asked them
    /// (None where one did not say).
    pub client_open_files: Option<u64>,
}

impl Hosts {
    /// The hosts of `spec`, the binaries in `bin_dir` (or `local_bin_dir`, the same path as
    /// here).
    pub fn new(spec: &HostsSpec, local_bin_dir: &std::path::Path) -> Hosts {
        Hosts {
            server: Host::new(&spec.server.launch),
            address: spec.server.address,
            clients: spec.clients.iter().map(|c| Host::new(&c.launch)).collect(),
            bin_dir: spec
                .bin_dir
                .clone()
                .unwrap_or_else(|| local_bin_dir.display().to_string()),
            work_dir: spec.work_dir.clone(),
            client_open_files: None,
        }
    }

    /// Before the first cell: every host's binaries are the runner's own build (their
    /// `--version`s match), each client host's open-files limit, and what the server host's
    /// bench-server can run there.
    pub fn prepare(
        &mut self,
        bench_server: &Path,
        load_gen: &Path,
    ) -> Result<pollbench_schema::capabilities::Capabilities, String> {
        let server = self.program(bench_server);
        same_version(&self.server, &local_version(bench_server)?, &server)?;
        let (load_gen, ours) = (self.program(load_gen), local_version(load_gen)?);
        let mut limits = Vec::new();
        for client in &self.clients {
            same_version(client, &ours, &load_gen)?;
            // What a process launched there gets (an unlimited one: as good as any).
            let limit = client.capture("ulimit -n")?;
            limits.push(match limit.trim() {
                "unlimited" => Some(u64::MAX),
                n => n.parse::<u64>().ok(),
            });
        }
        self.client_open_files = limits
            .into_iter()
            .collect::<Option<Vec<u64>>>()
            .and_then(|l| l.into_iter().min());
        let answer =
            self.server
                .capture(&exec_line(&server, &["--capabilities".to_string()], false))?;
        pollbench_schema::capabilities::parse(&answer)
    }

    /// What meta.json records of every host.
    pub fn facts(&self) -> Vec<pollbench_schema::results::HostFacts> {
        std::iter::once(self.server.facts("server"))
            .chain(
                self.clients
                    .iter()
                    .enumerate()
                    .map(|(k, c)| c.facts(&format!("client {}", k + 1))),
            )
            .collect()
    }

    /// A command that runs `program` with `args` on `host` as the host's process itself,
    /// announcing its pid there first (see [`exec_line`]).
    pub fn launch(&self, host: &Host, program: &Path, args: &[String]) -> Command {
        host.command(&exec_line(&self.program(program), args, true))
    }

    /// Where a process on the hosts writes the file that ends up at `local`: a path under the
    /// work directory, unique to this runner.
    pub fn remote_file(&self, local: &Path) -> String {
        format!(
            "{}/pollbench-{}-{}",
            self.work_dir.trim_end_matches('/'),
            std::process::id(),
            local
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().to_string())
        )
    }

    /// `program`'s path on the hosts: its file name in `bin_dir`.
    pub fn program(&self, program: &std::path::Path) -> String {
        let name = program
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().to_string());
        format!("{}/{name}", self.bin_dir.trim_end_matches('/'))
    }
}

/// One host: how to run a shell command line on it.
#[derive(Debug, Clone)]
pub struct Host {
    /// The launch prefix as the suite wrote it (what reports call the host).
    pub name: String,
    prefix: Vec<String>,
}

/// The line [`Host::capture`] prints before a command's output.
const OUTPUT_MARK: &str = "pollbench-output";

/// How long a short command on a host (a version, a `cat`, a `kill`) may take.
const SHORT: Duration = Duration::from_secs(30);

impl Host {
    pub fn new(launch: &str) -> Host {
        Host {
            name: launch.to_string(),
            prefix: launch.split_whitespace().map(str::to_owned).collect(),
        }
    }

    /// A command that runs `script` (a shell command line) on the host.
    pub fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new(&self.prefix[0]);
        cmd.args(&self.prefix[1..]).arg(script);
        cmd
    }

    /// Run `script` on the host to its end (at most 30 s; an interruption of the runner does not
    /// cut it short, since stopping what runs on a host is done this way); its stdout, or a
    /// one-line reason.
    pub fn capture(&self, script: &str) -> Result<String, String> {
        // A marker line first: what a login shell prints before it is not the command's output.
        let marked = format!("echo {OUTPUT_MARK} && {script}");
        let mut child = Running::spawn(self.command(&marked))
            .map_err(|e| format!("{}: cannot run {:?}: {e}", self.name, self.prefix[0]))?;
        match child.wait_through(SHORT) {
            Ok((status, _)) if status.success() => {
                let out = child.stdout_rest();
                let start = out
                    .find(&format!("{OUTPUT_MARK}\n"))
                    .ok_or_else(|| format!("{}: `{script}` printed nothing", self.name))?;
                Ok(out[start + OUTPUT_MARK.len() + 1..].to_string())
            }
            Ok((status, stderr)) => Err(format!(
                "{}: `{script}` exited with {status}: {}",
                self.name,
                stderr.trim()
            )),
            Err(WaitEnd::Interrupted) => Err("interrupted".into()),
            Err(WaitEnd::Deadline) => Err(format!("{}: `{script}` took over {SHORT:?}", self.name)),
        }
    }

    /// Copy file `remote` on the host to `local` here, and remove it there.
    pub fn fetch(&self, remote: &str, local: &Path) -> Result<(), String> {
        let text = self.capture(&format!("cat {} && rm -f {}", quote(remote), quote(remote)))?;
        pollbench_schema::file::write_atomically(local, text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", local.display()))
    }

    /// Send SIGTERM to process `pid` on the host.
    pub fn terminate(&self, pid: u32) -> Result<(), String> {
        self.capture(&format!("kill -TERM {pid}")).map(drop)
    }

    /// What meta.json records of the host: kernel, CPU model and cores, where it answers.
    pub fn facts(&self, role: &str) -> HostFacts {
        let answer = self
            .capture("uname -sr; nproc; grep -m1 'model name' /proc/cpuinfo || true")
            .unwrap_or_default();
        let mut lines = answer.lines();
        HostFacts {
            role: role.to_string(),
            launch: self.name.clone(),
            kernel: lines.next().map(|l| l.trim().to_string()),
            cores: lines.next().and_then(|l| l.trim().parse().ok()),
            cpu: lines
                .next()
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_string()),
        }
    }
}

/// What `program --version` prints here (the runner's own build of it).
fn local_version(program: &Path) -> Result<String, String> {
    let out = Command::new(program)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Refuse `host`'s copy of a program at `remote` unless its `--version` is `ours`: a host built
/// from other code would be measured under this commit's name.
pub fn same_version(host: &Host, ours: &str, remote: &str) -> Result<(), String> {
    let theirs = host
        .capture(&exec_line(remote, &["--version".to_string()], false))?
        .trim()
        .to_string();
    if theirs != ours {
        return Err(format!(
            "{}: {remote} is `{theirs}`, this runner's is `{ours}`: build the same commit on every host",
            host.name
        ));
    }
    Ok(())
}

/// `s` as one word of a POSIX shell command line.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What a launched process's command line prints before anything else: `PID_MARK PID`.
const PID_MARK: &str = "pollbench-pid";

/// The pid a line of a launched process's output announces (see [`exec_line`]), if it is that
/// line.
pub fn announced_pid(line: &str) -> Option<u32> {
    line.trim()
        .strip_prefix(PID_MARK)?
        .strip_prefix(' ')?
        .parse()
        .ok()
}

/// The command line that runs `program` with `args` as the host's process itself (`exec`);
/// `announce_pid` first prints `pollbench-pid PID` (the pid the program keeps through `exec`).
fn exec_line(program: &str, args: &[String], announce_pid: bool) -> String {
    let mut line = String::new();
    if announce_pid {
        line.push_str(&format!("echo {PID_MARK} $$ && "));
    }
    line.push_str("exec ");
    line.push_str(&quote(program));
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words with spaces, quotes and shell syntax reach the program as they were.
    #[test]
    fn a_command_line_reaches_the_program_word_for_word() {
        let args: Vec<String> = ["a b", "it's", "$HOME", "; rm -rf /", ""]
            .map(String::from)
            .to_vec();
        let line = exec_line(
            "printf",
            &[vec!["%s|".to_string()], args.clone()].concat(),
            false,
        );
        let out = Host::new("sh -c").capture(&line).unwrap();
        assert_eq!(out.trim_end_matches('\n'), "a b|it's|$HOME|; rm -rf /||");
        let announced = Host::new("sh -c")
            .capture(&exec_line("true", &[], true))
            .unwrap();
        let pid = announced.lines().find_map(announced_pid);
        assert!(pid.is_some_and(|p| p > 1), "{announced}");
        assert_eq!(announced_pid("pollbench-pidx 12"), None);
        assert_eq!(announced_pid("Welcome"), None);
    }

    /// A host that fails says which host and what it said.
    #[test]
    fn a_failing_host_is_named_in_the_error() {
        let err = Host::new("sh -c")
            .capture("echo nope >&2; exit 3")
            .unwrap_err();
        assert!(err.starts_with("sh -c: ") && err.contains("nope"), "{err}");
        let err = Host::new("no-such-launcher-here")
            .capture("true")
            .unwrap_err();
        assert!(err.contains("cannot run"), "{err}");
    }
}

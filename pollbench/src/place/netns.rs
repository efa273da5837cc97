//! Hosts made of Linux network namespaces, for running the server and its clients as separate
//! network stacks on one machine: a suite's `topology = "netns"` (see `network::Network`), with a client
//! host per load-gen of a cell (`clients`).
//!
//! A topology is a server namespace and one namespace per client, each with loopback up and one
//! interface (`eth0`, a veth) addressed from 198.18.0.0/24, the start of the range RFC 2544
//! reserves for benchmarking: the server is 198.18.0.1, client i is 198.18.0.(i + 2). The veths'
//! other ends meet on a bridge inside a namespace of its own (the "switch"), so nothing is added
//! to the machine's own network namespace: no interface, address or route there changes, and no
//! traffic can leave the machine. Deleting the namespaces removes everything; that happens on drop,
//! and [`remove_leftovers`] does it from the panic hook, where no destructor runs.
//!
//! Creating namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2's `ip`;
//! [`Topology::create`] says which is missing, in one line, so callers can skip with the reason.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Every namespace this process created and has not deleted yet, for [`remove_leftovers`].
static CREATED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The benchmarking network every topology uses (RFC 2544's 198.18.0.0/15, its first /24).
pub const NETWORK: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
/// Its prefix length.
pub const PREFIX: u8 = 24;

/// One host: a network namespace and its address.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace's name (`ip netns list`).
    pub namespace: String,
    /// The address of its `eth0`.
    pub address: Ipv4Addr,
}

impl Host {
    /// A command that runs `program` with `args` inside this host's namespace (`ip netns exec
    /// NAME program ...`): the launch prefix of a netns host.
    pub fn command(&self, program: impl AsRef<OsStr>, args: &[String]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(program)
            .args(args);
        command
    }
}

/// A server host and client hosts joined by one bridge; deleted when dropped.
#[derive(Debug)]
pub struct Topology {
    /// 198.18.0.1.
    pub server: Host,
    /// 198.18.0.2 onwards.
    pub clients: Vec<Host>,
    /// The bridge's namespace.
    switch: String,
    /// Every namespace created, the switch first; deleted in reverse.
    namespaces: Vec<String>,
}

impl Topology {
    /// Create the namespaces, the bridge and the veths for a server and `clients` clients. On
    /// failure, whatever was created is deleted, and the error is one line naming the step.
    pub fn create(clients: usize, shaping: &Shaping) -> Result<Topology, String> {
        if clients == 0 || clients > 250 {
            return Err(format!(
                "a netns topology has 1 to 250 clients, not {clients}"
            ));
        }
        // Unique per process and per topology: two runners, or two topologies of one test
        // process, never share a name.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!(
            "pollbench-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut topology = Topology {
            server: Host {
                namespace: format!("{prefix}-server"),
                address: host_address(0),
            },
            clients: (0..clients)
                .map(|i| Host {
                    namespace: format!("{prefix}-client{}", i + 1),
                    address: host_address(i + 1),
                })
                .collect(),
            switch: format!("{prefix}-switch"),
            namespaces: Vec::new(),
        };
        topology.build()?; // on error, dropping `topology` deletes what was made
        for host in topology.hosts() {
            shape(&host.namespace, shaping)?;
        }
        Ok(topology)
    }

    /// Every host, the server first.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        std::iter::once(&self.server).chain(&self.clients)
    }

    fn build(&mut self) -> Result<(), String> {
        self.add_namespace(&self.switch.clone())?;
        ip(&["-n", &self.switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &self.switch, "link", "set", "br0", "up"])?;
        let hosts: Vec<Host> = self.hosts().cloned().collect();
        for (i, host) in hosts.iter().enumerate() {
            self.add_namespace(&host.namespace)?;
            // Both ends are made inside their namespaces: nothing appears in ours.
            let port = format!("port{i}");
            ip(&[
                "link",
                "add",
                "eth0",
                "netns",
                &host.namespace,
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &self.switch,
            ])?;
            ip(&[
                "-n",
                &self.switch,
                "link",
                "set",
                &port,
                "master",
                "br0",
                "up",
            ])?;
            let address = format!("{}/{PREFIX}", host.address);
            ip(&[
                "-n",
                &host.namespace,
                "addr",
                "add",
                &address,
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &host.namespace, "link", "set", "eth0", "up"])?;
            ip(&["-n", &host.namespace, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    fn add_namespace(&mut self, name: &str) -> Result<(), String> {
        ip(&["netns", "add", name])?;
        self.namespaces.push(name.to_string());
        CREATED
            .lock()
            .expect("namespace list")
            .push(name.to_string());
        Ok(())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for name in self.namespaces.drain(..).rev() {
            delete_namespace(&name);
        }
    }
}

/// Delete every namespace this process created and has not deleted: for the panic hook, where
/// no destructor runs. `try_lock`: the panic may have happened while the list was held.
pub fn remove_leftovers() {
    let names = match CREATED.try_lock() {
        Ok(mut list) => std::mem::take(&mut *list),
        Err(_) => return,
    };
    for name in names.iter().rev() {
        let _ = Command::new("ip").args(["netns", "delete", name]).output();
    }
}

fn delete_namespace(name: &str) {
    // Its veth ends go with it, and with them their peers in the other namespaces.
    let _ = Command::new("ip").args(["netns", "delete", name]).output();
    if let Ok(mut list) = CREATED.lock() {
        list.retain(|n| n != name);
    }
}

/// Host `i`'s address: the server (0) is .1, client i is .(i + 1).
fn host_address(i: usize) -> Ipv4Addr {
    let [a, b, c, _] = NETWORK.octets();
    Ipv4Addr::new(a, b, c, (i + 1) as u8)
}

/// How a topology's links are shaped (the suite's `link_delay` and `link_rate`): a qdisc on every
/// host's `eth0`, so each direction of a connection passes one. `netem` where there is a delay
/// (with its rate, if any), `tbf` for a rate alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shaping {
    /// Added to every packet a host sends: a round trip gains twice this.
    pub delay: Option<std::time::Duration>,
    /// Most bits per second a host sends, as tc writes it ("100mbit").
    pub rate: Option<String>,
}

impl Shaping {
    /// The qdisc's arguments after `qdisc add dev eth0 root`, or None for no shaping.
    fn qdisc(&self) -> Option<Vec<String>> {
        let mut args: Vec<String> = match (self.delay, &self.rate) {
            (None, None) => return None,
            (Some(d), _) => vec![
                "netem".into(),
                "delay".into(),
                format!("{}us", d.as_micros()),
            ],
            (None, Some(_)) => vec!["tbf".into()],
        };
        if let Some(rate) = &self.rate {
            args.extend(["rate".into(), rate.clone()]);
            if self.delay.is_none() {
                // tbf needs a bucket and a queue bound: a few packets' burst, 100 ms of queue.
                args.extend(["burst", "32kbit", "latency", "100ms"].map(String::from));
            }
        }
        Some(args)
    }

    /// What the report says of it.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(d) = self.delay {
            parts.push(format!(
                "{} added to every packet each host sends (a round trip gains {})",
                pollbench_common::human_us(d.as_micros() as f64),
                pollbench_common::human_us(2.0 * d.as_micros() as f64)
            ));
        }
        if let Some(r) = &self.rate {
            parts.push(format!("each host sends at most {r}"));
        }
        (!parts.is_empty()).then(|| format!("links shaped with tc: {}", parts.join("; ")))
    }
}

/// Put the shaping qdisc on `namespace`'s eth0; the error names the qdisc the kernel lacks.
fn shape(namespace: &str, shaping: &Shaping) -> Result<(), String> {
    let Some(qdisc) = shaping.qdisc() else {
        return Ok(());
    };
    let mut args = vec!["-n", namespace, "qdisc", "add", "dev", "eth0", "root"];
    args.extend(qdisc.iter().map(String::as_str));
    let out = Command::new("tc")
        .args(&args)
        .output()
        .map_err(|e| format!("link shaping needs tc (iproute2): {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let kind = &qdisc[0];
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(format!(
        "link shaping needs tc's {kind} qdisc (the kernel's sch_{kind}), and `tc {}` failed: {}",
        args.join(" "),
        stderr.lines().next().unwrap_or("no message").trim()
    ))
}

/// Run `ip ARGS`; its first line of stderr as the error.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2) to make network namespaces: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(format!(
        "`ip {}` failed: {} (network namespaces need root: CAP_SYS_ADMIN and CAP_NET_ADMIN)",
        args.join(" "),
        stderr.lines().next().unwrap_or("no message").trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A delay is netem (with the rate, if any); a rate alone is tbf with a bucket and a queue
    /// bound; nothing is no qdisc.
    #[test]
    fn shaping_picks_netem_for_a_delay_and_tbf_for_a_rate_alone() {
        let delay = Shaping {
            delay: Some(std::time::Duration::from_micros(1500)),
            rate: Some("1gbit".into()),
        };
        assert_eq!(
            delay.qdisc().unwrap(),
            ["netem", "delay", "1500us", "rate", "1gbit"]
        );
        let rate = Shaping {
            delay: None,
            rate: Some("100mbit".into()),
        };
        assert_eq!(
            rate.qdisc().unwrap(),
            ["tbf", "rate", "100mbit", "burst", "32kbit", "latency", "100ms"]
        );
        assert_eq!(Shaping::default().qdisc(), None);
        assert_eq!(Shaping::default().describe(), None);
        let said = delay.describe().unwrap();
        assert!(
            said.contains("a round trip gains 3.00 ms") && said.contains("1gbit"),
            "{said}"
        );
    }

    fn namespaces() -> String {
        let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn links_here() -> String {
        let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// A topology of a server and 2 clients: each client reaches the server's address over TCP
    /// (an echo through `ip netns exec`), the machine's own namespace gains no interface, and
    /// dropping it leaves no namespace behind.
    #[test]
    fn clients_reach_the_server_across_namespaces_and_nothing_is_left() {
        let links_before = links_here();
        let topology = match Topology::create(2, &Shaping::default()) {
            Ok(t) => t,
            Err(why) => {
                eprintln!("skipped: netns topology: {why}");
                return;
            }
        };
        assert_eq!(topology.server.address, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(topology.clients[1].address, Ipv4Addr::new(198, 18, 0, 3));
        let listed = namespaces();
        for host in topology.hosts() {
            assert!(listed.contains(&host.namespace), "{listed}");
        }
        assert_eq!(links_here(), links_before, "no interface added here");
        // An echo server in the server's namespace (python3, as the test's stand-in for
        // bench-server: this module only makes the network), one connection from each client.
        let server_script = "import socket\n\
            s = socket.socket(); s.bind(('198.18.0.1', 7000)); s.listen(8)\n\
            print('ready', flush=True)\n\
            for _ in range(2):\n    c, _ = s.accept(); c.sendall(c.recv(64)); c.close()\n";
        let mut server = topology
            .server
            .command("python3", &[])
            .args(["-c", server_script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(server.stdout.take().unwrap()),
            &mut ready,
        )
        .unwrap();
        assert_eq!(ready.trim(), "ready");
        for client in &topology.clients {
            let script = "import socket, sys\n\
                c = socket.create_connection(('198.18.0.1', 7000), timeout=5)\n\
                c.sendall(b'hello from ' + sys.argv[1].encode())\n\
                print(c.getsockname()[0], c.recv(64).decode())\n";
            let out = client
                .command("python3", &[])
                .args(["-c", script, &client.address.to_string()])
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            // From the client's own address, echoed by the server.
            assert_eq!(
                stdout.trim(),
                format!("{0} hello from {0}", client.address),
                "{stdout}"
            );
        }
        assert!(server.wait().unwrap().success());
        let names: Vec<String> = topology.namespaces.clone();
        drop(topology);
        let listed = namespaces();
        for name in names {
            assert!(!listed.contains(&name), "{name} left behind: {listed}");
        }
        assert_eq!(links_here(), links_before);
    }

    /// A client count out of range is refused before anything is made; a build that fails deletes
    /// the namespaces it made and no other. The failures are forced by taking a namespace name
    /// the topology wants: its switch's (nothing made yet), then a client's (switch and server
    /// made by then).
    #[test]
    fn a_failed_build_deletes_what_it_made() {
        assert!(Topology::create(0, &Shaping::default()).is_err());
        let name = format!("pollbench-{}-clash", std::process::id());
        if let Err(why) = ip(&["netns", "add", &name]) {
            eprintln!("skipped: netns clean-up after a failure: {why}");
            return;
        }
        // A topology whose switch namespace exists already: the first `ip netns add` fails.
        let mut topology = Topology {
            server: Host {
                namespace: format!("{name}-server"),
                address: host_address(0),
            },
            clients: vec![],
            switch: name.clone(),
            namespaces: Vec::new(),
        };
        let err = topology.build().unwrap_err();
        assert!(err.contains("ip netns add"), "{err}");
        drop(topology);
        assert!(namespaces().contains(&name), "not ours: left alone");
        let _ = ip(&["netns", "delete", &name]);
        // And one that fails after making namespaces: clients' namespace taken.
        let taken = format!("pollbench-{}-taken", std::process::id());
        ip(&["netns", "add", &taken]).unwrap();
        let mut topology = Topology {
            server: Host {
                namespace: format!("{taken}-server"),
                address: host_address(0),
            },
            clients: vec![Host {
                namespace: taken.clone(),
                address: host_address(1),
            }],
            switch: format!("{taken}-switch"),
            namespaces: Vec::new(),
        };
        assert!(topology.build().is_err());
        let made = topology.namespaces.clone();
        assert_eq!(made.len(), 2, "switch and server were made: {made:?}");
        drop(topology);
        let listed = namespaces();
        for name in made {
            assert!(!listed.contains(&name), "{name} left behind: {listed}");
        }
        let _ = ip(&["netns", "delete", &taken]);
    }
}

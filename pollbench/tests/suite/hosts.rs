//! `[hosts]`: cells run through launch prefixes and real ssh, binaries of another build refused,
//! a client host's own open-files limit.

use super::*;

/// `[hosts]` through launch prefixes, exercised with `sh -c` (which runs a command line as `ssh
/// HOST` would, but here): bench-server launched on the "server host" and stopped there by pid,
/// 2 load-gens on the "client hosts", every result file written under the hosts' work directory,
/// read back and removed there; the parts merged and named by their launch prefix; meta.json
/// records the topology and each host's kernel, CPU and cores.
#[test]
fn hosts_reached_by_a_launch_prefix_run_the_cells_and_their_files_come_back() {
    let work = Temp::new("hosts-work");
    // The server's launcher passes no signal on, as an ssh client does not: SIGTERM to it here
    // would end it and leave bench-server running on its host, without its statistics.
    let launcher = like_ssh(&work.0);
    let work_dir = work.0.join("files");
    std::fs::create_dir(&work_dir).unwrap();
    let toml = format!(
        "description = \"hosts\"\nduration = \"300ms\"\nwarmup = \"0s\"\n\
         [hosts]\nserver = {{ launch = \"{}\", address = \"127.0.0.1\" }}\n\
         clients = [{{ launch = \"sh -c\" }}, {{ launch = \"sh -c\" }}]\n\
         work_dir = \"{}\"\n\
         [[sweep]]\nname = \"h\"\nbackends = [\"epoll\", \"poll\"]\nconnections = [4]\n",
        launcher.display(),
        work_dir.display()
    );
    let s = run_suite("hosts", &toml);
    for id in ["h-epoll-c4", "h-poll-c4"] {
        assert_eq!(s.outcome(id)["status"], "ok", "{}", s.meta);
        let read = |ext: &str| -> serde_json::Value {
            serde_json::from_str(
                &std::fs::read_to_string(s.run.join("cells").join(format!("{id}.{ext}"))).unwrap(),
            )
            .unwrap()
        };
        let merged = read("json");
        let parts: Vec<u64> = ["client1.json", "client2.json"]
            .iter()
            .map(|p| read(p)["messages"].as_u64().unwrap())
            .collect();
        assert_eq!(
            merged["messages"].as_u64().unwrap(),
            parts.iter().sum::<u64>()
        );
        assert_eq!(merged["clients"][0]["host"], "sh -c");
        // The server's statistics came back from its host, written when it was stopped there.
        let server = read("server.json");
        assert_eq!(server["config"]["addr"], "127.0.0.1:0");
        assert!(
            server["totals"]["bytes_out"].as_u64().unwrap() >= merged["bytes"].as_u64().unwrap()
        );
    }
    let left: Vec<_> = std::fs::read_dir(&work_dir).unwrap().flatten().collect();
    assert!(left.is_empty(), "files left on the hosts: {left:?}");
    assert!(
        s.meta["topology"]
            .as_str()
            .unwrap()
            .ends_with("like-ssh` at 127.0.0.1, load-gen via `sh -c`, `sh -c`"),
        "{}",
        s.meta["topology"]
    );
    let hosts = s.meta["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3);
    assert_eq!(hosts[0]["role"], "server");
    assert_eq!(hosts[2]["role"], "client 2");
    assert!(
        hosts[1]["kernel"].as_str().unwrap().starts_with("Linux "),
        "{hosts:?}"
    );
    assert!(hosts[1]["cores"].as_u64().unwrap() >= 1);
    let report = std::fs::read_to_string(s.run.join("report.md")).unwrap();
    assert!(
        report.contains("the programs ran on these hosts")
            && report.contains("- client 2 (`sh -c`): Linux "),
        "{report}"
    );
    assert!(!report.contains("veths"), "{report}");
}

/// A host whose binaries print another `--version` (another commit) is refused before anything
/// runs: one line naming the host and both versions, no run directory.
#[test]
fn hosts_with_binaries_of_another_build_are_refused() {
    let dir = Temp::new("hosts-other-build");
    let bin = dir.0.join("bin");
    std::fs::create_dir(&bin).unwrap();
    for name in ["bench-server", "load-gen"] {
        let path = bin.join(name);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho '{name} 0.0.1 (commit 000000000000)'\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let suite = dir.0.join("other.toml");
    std::fs::write(
        &suite,
        format!(
            "description = \"other build\"\nduration = \"300ms\"\nwarmup = \"0s\"\n\
             [hosts]\nserver = {{ launch = \"sh -c\", address = \"127.0.0.1\" }}\n\
             clients = [{{ launch = \"sh -c\" }}]\nbin_dir = \"{}\"\n\
             [[sweep]]\nname = \"h\"\nbackends = [\"epoll\"]\nconnections = [4]\n",
            bin.display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("suite")
        .arg(&suite)
        .arg("--results")
        .arg(dir.0.join("results"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("pollbench: sh -c: ")
            && last.contains("0.0.1 (commit 000000000000)")
            && last.contains("build the same commit"),
        "{stderr}"
    );
    assert!(
        !dir.0.join("results").exists(),
        "nothing ran, nothing written"
    );
}

/// `[hosts]` through real `ssh`: the test starts its own sshd on 127.0.0.1 (a free port, a host
/// key and a client key generated for it, only that key authorized), and runs one cell with the
/// server and a client launched over ssh to it. Skipped, with the reason, where sshd, ssh or
/// ssh-keygen is missing.
#[test]
fn hosts_over_ssh_to_an_sshd_of_the_tests_own() {
    let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd", "/usr/local/sbin/sshd"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let have = |tool: &str| {
        Command::new(tool)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success() || !o.stderr.is_empty())
    };
    let Some(sshd) =
        sshd.filter(|_| have("ssh") && Command::new("ssh-keygen").arg("-?").output().is_ok())
    else {
        return skip("hosts over ssh", "needs OpenSSH's sshd, ssh and ssh-keygen");
    };
    let dir = Temp::new("hosts-ssh");
    let keygen = |name: &str| {
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.0.join(name))
            .output()
            .unwrap();
        assert_success(&out);
    };
    keygen("host_key");
    keygen("client_key");
    std::fs::copy(dir.0.join("client_key.pub"), dir.0.join("authorized_keys")).unwrap();
    // A free port on loopback (sshd binds it just after; a race only fails this test).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.0.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\n\
             StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n",
            d = dir.0.display()
        ),
    )
    .unwrap();
    // sshd refuses to start without its privilege-separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let mut command = Command::new(sshd);
    command.args(["-D", "-e", "-f"]).arg(&config);
    // Killed when dropped; its log (-e: on stderr) is read as it runs, so it never fills the pipe.
    let daemon = Spawned::new(command);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(10) {
            drop(daemon);
            return skip("hosts over ssh", "the test's sshd did not start listening");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let user = Command::new("id").arg("-un").output().unwrap();
    let user = String::from_utf8_lossy(&user.stdout).trim().to_string();
    let launch = format!(
        "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
         -o LogLevel=ERROR -i {} -p {port} {user}@127.0.0.1",
        dir.0.join("client_key").display()
    );
    let reach = Command::new("sh")
        .args(["-c", &format!("{launch} true")])
        .output()
        .unwrap();
    if !reach.status.success() {
        return skip(
            "hosts over ssh",
            &format!(
                "cannot log in to the test's sshd: {}",
                String::from_utf8_lossy(&reach.stderr).trim()
            ),
        );
    }
    let work_dir = dir.0.join("files");
    std::fs::create_dir(&work_dir).unwrap();
    let toml = format!(
        "description = \"ssh\"\nduration = \"300ms\"\nwarmup = \"0s\"\n\
         [hosts]\nserver = {{ launch = \"{launch}\", address = \"127.0.0.1\" }}\n\
         clients = [{{ launch = \"{launch}\" }}]\nwork_dir = \"{}\"\n\
         [[sweep]]\nname = \"s\"\nbackends = [\"epoll\"]\nconnections = [4]\n",
        work_dir.display()
    );
    let s = run_suite("ssh", &toml);
    assert_eq!(s.outcome("s-epoll-c4")["status"], "ok", "{}", s.meta);
    let server: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(s.run.join("cells/s-epoll-c4.server.json")).unwrap(),
    )
    .unwrap();
    assert!(
        server["totals"]["bytes_out"].as_u64().unwrap() > 0,
        "{server}"
    );
    assert!(s.meta["hosts"][0]["kernel"].is_string(), "{}", s.meta);
    assert_eq!(
        std::fs::read_dir(&work_dir).unwrap().count(),
        0,
        "files left on the host"
    );
    drop(daemon);
}

/// A client host's own open-files limit counts, not the runner's: through a launcher that runs
/// with `ulimit -n` 64 (prlimit), a cell of 100 connections is skipped naming load-gen and that
/// limit, and one of 10 runs.
#[test]
fn a_client_hosts_open_files_limit_skips_the_cells_it_cannot_hold() {
    let have = Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        return skip(
            "a client host's open-files limit",
            "needs util-linux's prlimit",
        );
    }
    let s = run_suite(
        "hosts-ulimit",
        "description = \"ulimit\"\nduration = \"300ms\"\nwarmup = \"0s\"\n\
         [hosts]\nserver = { launch = \"sh -c\", address = \"127.0.0.1\" }\n\
         clients = [{ launch = \"prlimit --nofile=64 sh -c\" }]\n\
         [[sweep]]\nname = \"u\"\nbackends = [\"epoll\"]\nconnections = [10, 100]\n",
    );
    assert_eq!(s.outcome("u-epoll-c10")["status"], "ok", "{}", s.meta);
    let big = s.outcome("u-epoll-c100");
    assert_eq!(big["status"], "skipped", "{big}");
    let why = big["reason"].as_str().unwrap();
    assert!(
        why.contains("limit 64") && why.contains("load-gen"),
        "{why}"
    );
}

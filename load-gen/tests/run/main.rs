//! `load-gen run` end to end, against bench-server and against small misbehaving servers written
//! here. Loopback only; every run is bounded by its --duration and a time limit.

mod churn;
mod errors;
mod hlog;
mod windows;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pollbench_test_support::{
    assert_success, output_within, read_json, skip, Argv, Signal, Spawned, Temp,
};

const BIN: &str = env!("CARGO_BIN_EXE_load-gen");

/// Run load-gen to completion (killed after `limit`); output and the JSON it wrote, if any.
fn run(args: &Argv, limit: Duration) -> (Output, Option<serde_json::Value>, Temp) {
    let dir = Temp::new("run");
    let mut command = Command::new(BIN);
    command.arg("run").args(args);
    run_to_json(command, dir, limit)
}

/// Run `command` (a load-gen run, or a shell that starts one), with `--json DIR/out.json` added,
/// to completion (killed after `limit`); its output and the JSON, if it wrote one.
fn run_to_json(
    mut command: Command,
    dir: Temp,
    limit: Duration,
) -> (Output, Option<serde_json::Value>, Temp) {
    let json = dir.0.join("out.json");
    command.arg("--json").arg(&json);
    let out = output_within(command, limit);
    let value = std::fs::read_to_string(&json)
        .ok()
        .map(|t| serde_json::from_str(&t).expect("valid JSON"));
    (out, value, dir)
}

/// A test server: each connection is served by `serve` on its own thread.
fn server(serve: impl Fn(TcpStream, usize) + Send + Sync + Clone + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let serve = serve.clone();
            std::thread::spawn(move || serve(stream, i));
        }
    });
    addr
}

/// Echo until EOF, passing each chunk through `alter` (position in the stream, bytes).
fn echo_with(mut s: TcpStream, mut alter: impl FnMut(u64, &mut [u8])) {
    let mut buf = [0u8; 16 * 1024];
    let mut pos = 0u64;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        alter(pos, &mut buf[..n]);
        pos += n as u64;
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// bench-server, built beside this test by `cargo test --workspace`; `None` (skipped, said) if not.
fn bench_server_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent()?.parent()?.join("bench-server");
    if !bin.exists() {
        skip(
            "load-gen against bench-server",
            "bench-server is not built (run `cargo test --workspace`)",
        );
        return None;
    }
    Some(bin)
}

/// bench-server with its default backend and one loop.
fn bench_server() -> Option<(Spawned, SocketAddr)> {
    bench_server_with(&Argv::new().loops(1))
}

/// bench-server on a loopback port with `args`, and the address it listens on; killed when the
/// first is dropped.
fn bench_server_with(args: &Argv) -> Option<(Spawned, SocketAddr)> {
    let mut command = Command::new(bench_server_bin()?);
    command
        .args(["--addr", "127.0.0.1:0", "--stats-interval", "0s"])
        .args(args);
    let mut server = Spawned::new(command);
    let line = server
        .stdout_line(Duration::from_secs(20))
        .expect("bench-server says where it listens");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    Some((server, addr))
}

//! The comparison client for load-gen's README: the design of the widely used rust_echo_bench, one
//! blocking thread per connection, each writing a message and reading the echo back in a loop.
//! Written for this project so both clients run against the same server in one session.
//!
//! `cargo run --release -p load-gen --example threads_client -- ADDR CONNECTIONS SECONDS [SIZE]`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: threads_client ADDR CONNECTIONS SECONDS [SIZE]");
        std::process::exit(2);
    }
    let addr = args[1].clone();
    let conns: usize = args[2].parse().expect("CONNECTIONS");
    let secs: u64 = args[3].parse().expect("SECONDS");
    let size: usize = args.get(4).map_or(64, |s| s.parse().expect("SIZE"));
    let stop = Arc::new(AtomicBool::new(false));
    // One counter per thread (no shared cache line), read at the instant the window closes.
    let counts: Vec<Arc<AtomicU64>> = (0..conns).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let streams: Vec<TcpStream> = (0..conns)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    let cpu0 = pollbench_common::process_cpu_time();
    let start = Instant::now();
    let handles: Vec<_> = streams
        .into_iter()
        .zip(&counts)
        .map(|(mut s, count)| {
            let (stop, count) = (stop.clone(), count.clone());
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let _ = s.set_nodelay(true);
                    let out = vec![7u8; size];
                    let mut back = vec![0u8; size];
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        if s.write_all(&out).is_err() || s.read_exact(&mut back).is_err() {
                            break;
                        }
                        n += 1;
                        count.store(n, Ordering::Relaxed);
                    }
                })
                .expect("spawn")
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    let msgs: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = pollbench_common::process_cpu_time()
        .saturating_sub(cpu0)
        .as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    println!(
        "{{\"messages\": {msgs}, \"duration_s\": {elapsed:.3}, \"throughput_msgs_per_s\": {:.0}, \"client_cpu_us_per_msg\": {:.2}}}",
        msgs as f64 / elapsed,
        cpu * 1e6 / msgs.max(1) as f64
    );
}

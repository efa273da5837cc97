//! Running one cell: a fresh bench-server, `load-gen run` against it, the server stopped with
//! SIGTERM so it writes its statistics, and the cell's outcome decided from what they wrote. Also
//! what a cell needs of this machine (descriptors, cores) and why it is skipped when it cannot run.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use pollbench_schema::file::read_json;
use pollbench_schema::results::{Cell, CellStatus, Outcome, Repeat};
use pollbench_schema::run::RunReport;

use crate::place::network::{Network, Process, Site};
use crate::run::binaries::Binaries;
use crate::run::clients::{merge_into, share, Part};
use crate::run::external;
use crate::run::process::WaitEnd;
use crate::run::suite::Suite;

/// The files every run of a cell leaves, by extension, then the server's record: bench-server's
/// statistics, or what was read of an external server.
const CELL_FILES: [&str; 2] = ["json", "hlog"];

/// The extension of the server's record of a cell's run.
fn server_file(cell: &Cell) -> &'static str {
    match external::name_of(&cell.backend) {
        Some(_) => "external.json",
        None => "server.json",
    }
}

/// Run one round of a cell: its files go to `dir` as ID.json (load-gen), ID.server.json and
/// ID.hlog, or ID.rK.* in round K of a suite with several rounds. Err when the runner was
/// interrupted: the round did not complete, and both processes are gone.
pub fn run_round(
    cell: &Cell,
    suite: &Suite,
    bins: &Binaries,
    net: &Network,
    dir: &Path,
    round: usize,
) -> Result<Outcome, Interrupted> {
    let place = Place { bins, net, dir };
    if suite.repeat <= 1 {
        return run_once(cell, suite, &place, &cell.id);
    }
    let mut outcome = run_once(cell, suite, &place, &format!("{}.r{round}", cell.id))?;
    if outcome.status == CellStatus::Failed {
        outcome.reason = outcome.reason.map(|r| format!("round {round}: {r}"));
    }
    Ok(outcome)
}

/// The outcome of a cell whose `rounds` (in order) all completed: each round's msgs/s and p99 as
/// its repeats, and the median round by msgs/s copied to ID.*, so reports and comparisons read one
/// file per cell either way.
pub fn combine_rounds(cell: &Cell, dir: &Path, rounds: &[usize]) -> Outcome {
    let failed = |reason: String, repeats: Vec<Repeat>| Outcome {
        id: cell.id.clone(),
        status: CellStatus::Failed,
        reason: Some(reason),
        repeats,
    };
    let mut repeats = Vec::with_capacity(rounds.len());
    for k in rounds {
        match read_json::<RunReport>(&dir.join(format!("{}.r{k}.json", cell.id))) {
            Ok(run) => repeats.push(Repeat {
                msgs_per_s: run.throughput_msgs_per_s,
                p99_us: run.latency_us.p99 as f64,
            }),
            Err(e) => return failed(format!("round {k}: {e}"), repeats),
        }
    }
    let mut order: Vec<usize> = (0..repeats.len()).collect();
    order.sort_by(|&a, &b| repeats[a].msgs_per_s.total_cmp(&repeats[b].msgs_per_s));
    let median = rounds[order[(order.len() - 1) / 2]];
    for ext in CELL_FILES.into_iter().chain([server_file(cell)]) {
        let from = dir.join(format!("{}.r{median}.{ext}", cell.id));
        let to = dir.join(format!("{}.{ext}", cell.id));
        if let Err(e) =
            std::fs::read(&from).and_then(|b| pollbench_schema::file::write_atomically(&to, &b))
        {
            let reason = format!("cannot copy the median run to {}: {e}", to.display());
            return failed(reason, repeats);
        }
    }
    Outcome {
        id: cell.id.clone(),
        status: CellStatus::Ok,
        reason: None,
        repeats,
    }
}

/// The cores load-gen's threads may use when the server's loops are pinned to the first
/// `server_threads` cores ([`pollbench_common::cores::client_cores`]: the rest, or none, no
/// pinning, when nothing is left over), as `load-gen run --cpus` takes them ("1", "2,3").
pub fn client_cores(server_threads: usize) -> Option<String> {
    pollbench_common::cores::client_cores(server_threads).map(|cores| {
        cores
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// The descriptors each process of a cell holds: its connections and idle connections, plus
/// what bench-server opens beside them (stdio, signal pipe, and per loop a listener, a poller and a
/// waker: measured 6 + 3 per loop for epoll, fewer for the others) and what load-gen does (stdio,
/// result files, a poller per thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptors {
    pub server: usize,
    pub client: usize,
}

impl Descriptors {
    /// A cell's needs with its load split over `clients` load-gen processes (each its own
    /// open-files limit): the server holds every socket, a client its share.
    pub fn of(cell: &Cell, clients: usize) -> Descriptors {
        let sockets = cell.connections + cell.idle;
        Descriptors {
            server: sockets + 7 + 3 * cell.server_threads,
            client: sockets.div_ceil(clients.max(1)) + 8 + 2 * cell.client_threads,
        }
    }
}

/// The descriptor limits a cell runs under: each process's open-files limit, and the highest
/// descriptor the server's backend can watch (select: FD_SETSIZE - 1).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub server_open_files: Option<u64>,
    /// The lowest of the client processes' (on hosts: each client host's `ulimit -n`).
    pub client_open_files: Option<u64>,
    pub max_fd: Option<i64>,
    /// load-gen processes sharing a cell.
    pub clients: usize,
}

/// Why a cell cannot run here, if it cannot: the backend cannot watch descriptors as high as the
/// server's will go (bench-server would close the connections past it, so the cell could only
/// fail), or an open-files limit is below what its process needs.
pub fn descriptor_skip(cell: &Cell, limits: Limits) -> Option<String> {
    let need = Descriptors::of(cell, limits.clients);
    // The backend's own limit first: no open-files limit would let it run. Descriptors are
    // allocated lowest first, so the server's highest is about its count - 1.
    if let Some(max) = limits.max_fd.filter(|&max| need.server as i64 > max + 1) {
        return Some(format!(
            "{} cannot watch descriptors at or above FD_SETSIZE ({}); this cell needs about {}",
            cell.backend,
            max + 1,
            need.server
        ));
    }
    let short = |limit: Option<u64>, need: usize| limit.filter(|&l| l < need as u64);
    short(limits.server_open_files, need.server)
        .map(|l| (l, need.server, "bench-server"))
        .or_else(|| short(limits.client_open_files, need.client).map(|l| (l, need.client, "load-gen")))
        .map(|(limit, need, who)| {
            format!("open-files limit {limit} is below the {need} {who} needs for this cell (raise ulimit -n)")
        })
}

/// The cell's measured window and warm-up: its sweep's where it sets them, else the suite's.
fn window(cell: &Cell, suite: &Suite) -> (Duration, Duration) {
    // Whole microseconds, as the suite wrote them (0.3 s is not exactly 0.3 in binary).
    let exact = |s: f64| Duration::from_micros((s * 1e6).round() as u64);
    (
        cell.duration_s.map_or(suite.duration, exact),
        cell.warmup_s.map_or(suite.warmup, exact),
    )
}

/// A duration as load-gen's command line takes it, exactly.
fn micros(d: Duration) -> String {
    format!("{}us", d.as_micros())
}

/// How long to wait for bench-server to say where it listens.
const SERVER_START: Duration = Duration::from_secs(10);

/// The runner was interrupted: the round did not complete, and its processes are gone.
#[derive(Debug)]
pub struct Interrupted;

/// Why a step of a cell's run did not complete.
enum StepError {
    Interrupted,
    Failed(String),
}

/// What a cell runs with and where: the binaries, the network, and the directory of its files.
struct Place<'a> {
    bins: &'a Binaries,
    net: &'a Network,
    dir: &'a Path,
}

/// Run a cell once, writing STEM.json, STEM.server.json and STEM.hlog into the place's directory:
/// start the server, run the clients, stop the server, collect its statistics.
fn run_once(cell: &Cell, suite: &Suite, place: &Place, stem: &str) -> Result<Outcome, Interrupted> {
    let Place { bins, net, dir } = *place;
    let outcome = |status: CellStatus, reason: String| Outcome {
        id: cell.id.clone(),
        status,
        reason: Some(reason),
        repeats: Vec::new(),
    };
    let external = external::name_of(&cell.backend);
    if let Some(why) = net
        .unavailable()
        .map(str::to_string)
        .or_else(|| match external {
            Some(name) => external_skip(name, suite, net),
            None => skip_reason(cell, bins, net, suite.clients),
        })
    {
        return Ok(outcome(CellStatus::Skipped, why));
    }
    let files = CellFiles { dir, stem };
    let site = net.server();
    if let Some(name) = external {
        return run_external(cell, suite, place, &files, name);
    }
    let args = server_args(
        cell,
        suite,
        place,
        &site.file_for(&files.path("server.json")),
    );
    let (mut server, addr) = match start_server(&site, &bins.bench_server, &args) {
        Ok(started) => started,
        Err(StepError::Interrupted) => return Err(Interrupted),
        Err(StepError::Failed(why)) => return Ok(outcome(CellStatus::Failed, why)),
    };
    let clients = run_clients(cell, suite, place, addr, &files);
    // Graceful stop, so the server writes its statistics (on a launched host: read back here).
    server.stop(Duration::from_secs(5));
    let stats = server.fetch(&files.path("server.json"));
    match (clients, stats) {
        (Err(StepError::Interrupted), _) => Err(Interrupted),
        (Err(StepError::Failed(why)), _) => Ok(outcome(CellStatus::Failed, why)),
        (Ok(()), Err(why)) => Ok(outcome(
            CellStatus::Failed,
            format!("bench-server's statistics: {why}"),
        )),
        (Ok(()), Ok(())) => Ok(Outcome {
            reason: None,
            ..outcome(CellStatus::Ok, String::new())
        }),
    }
}

/// [`run_once`] with an external server in bench-server's place: started from its command,
/// pinned as bench-server would be, its CPU time read while the clients run, STEM.external.json
/// written where bench-server would write STEM.server.json.
fn run_external(
    cell: &Cell,
    suite: &Suite,
    place: &Place,
    files: &CellFiles,
    name: &str,
) -> Result<Outcome, Interrupted> {
    let outcome = |status: CellStatus, reason: Option<String>| Outcome {
        id: cell.id.clone(),
        status,
        reason,
        repeats: Vec::new(),
    };
    let words = &suite.externals[name];
    let core = suite
        .pin
        .then(|| pollbench_common::cores::server_cores(1).first().copied())
        .flatten();
    let server = match external::Running::start(&place.net.server(), name, words, core) {
        Ok(server) => server,
        Err(_) if crate::run::process::interrupted().load(std::sync::atomic::Ordering::Relaxed) => {
            return Err(Interrupted)
        }
        Err(why) => return Ok(outcome(CellStatus::Failed, Some(why))),
    };
    let addr = server.addr;
    let clients = run_clients(cell, suite, place, addr, files);
    // A server that ended during the run (a crash, or another program on its port) leaves CPU
    // readings that stopped counting: its cell failed, whatever load-gen saw.
    let recorded = server.stop(Duration::from_secs(2), &files.path("external.json"));
    match (clients, recorded) {
        (Err(StepError::Interrupted), _) => Err(Interrupted),
        (Err(StepError::Failed(why)), _) | (Ok(()), Err(why)) => {
            Ok(outcome(CellStatus::Failed, Some(why)))
        }
        (Ok(()), Ok(())) => Ok(outcome(CellStatus::Ok, None)),
    }
}

/// Why an external column cannot run here: no command given for it, or a topology other than
/// this machine's loopback (it is started here, and only here its CPU time can be read).
fn external_skip(name: &str, suite: &Suite, net: &Network) -> Option<String> {
    if !suite.externals.contains_key(name) {
        return Some(format!(
            "external server {name}: no command given (pollbench suite ... --external {name}='COMMAND {{port}}')"
        ));
    }
    if !matches!(net, Network::Loopback) {
        return Some("an external server runs on this machine over 127.0.0.1 only".into());
    }
    if !cfg!(target_os = "linux") {
        return Some("an external server's CPU time is read from Linux's /proc".into());
    }
    None
}

/// Run the cell's load-gen clients at once, each with its share of the load, and leave their
/// result as STEM.json and STEM.hlog: one client writes them itself; several write
/// STEM.clientK.* and are merged into them.
fn run_clients(
    cell: &Cell,
    suite: &Suite,
    place: &Place,
    addr: SocketAddr,
    files: &CellFiles,
) -> Result<(), StepError> {
    let (duration, warmup) = window(cell, suite);
    let limit = duration + warmup + Duration::from_secs(60);
    let n = suite.clients;
    let stems: Vec<String> = (0..n)
        .map(|k| match n {
            1 => files.stem.to_string(),
            _ => format!("{}.client{}", files.stem, k + 1),
        })
        .collect();
    let client_files: Vec<CellFiles> = stems
        .iter()
        .map(|stem| CellFiles {
            dir: files.dir,
            stem,
        })
        .collect();
    let start_at = place.net.common_start(n, cell.connections + cell.idle);
    let mut clients = place
        .net
        .start_clients(n, &place.bins.load_gen, |k, site| {
            load_args(cell, suite, (addr, start_at), site, &client_files[k], k)
        })
        .map_err(|e| StepError::Failed(format!("cannot start load-gen: {e}")))?;
    let named = |k: usize, why: String| match n {
        1 => why,
        _ => format!("client {} ({}): {why}", k + 1, place.net.client(k).name()),
    };
    let mut failure = None;
    for (k, load) in clients.iter_mut().enumerate() {
        let end = load.wait(limit);
        if matches!(end, Err(WaitEnd::Interrupted)) {
            // Those still running are stopped as `clients` drops.
            return Err(StepError::Interrupted);
        }
        // On a launched host the files are read back first, to judge the run by them too.
        let fetched = ["json", "hlog"]
            .iter()
            .try_for_each(|ext| load.fetch(&client_files[k].path(ext)));
        let why = match end {
            // An interruption returned above.
            Err(_) => format!("load-gen did not finish within {limit:?}"),
            Ok((status, _)) if status.success() => match fetched {
                Ok(()) => continue,
                Err(why) => format!("reading its results back: {why}"),
            },
            Ok((status, stderr)) => format!(
                "load-gen exited with {status}: {}",
                why_load_gen_failed(&client_files[k].path("json"), &stderr)
            ),
        };
        failure.get_or_insert(named(k, why));
    }
    if let Some(why) = failure {
        return Err(StepError::Failed(why));
    }
    if n == 1 {
        return Ok(());
    }
    let parts: Result<Vec<Part>, String> = client_files
        .iter()
        .enumerate()
        .map(|(k, f)| Part::read(place.net.client(k).name(), &f.path("json"), &f.path("hlog")))
        .collect();
    parts
        .and_then(|parts| merge_into(&parts, &files.path("json"), &files.path("hlog")))
        .map(|_| ())
        .map_err(|e| StepError::Failed(format!("merging the clients' runs: {e}")))
}

/// Where one run of a cell leaves its files: STEM.json, STEM.server.json and STEM.hlog in `dir`.
struct CellFiles<'a> {
    dir: &'a Path,
    stem: &'a str,
}

impl CellFiles<'_> {
    fn path(&self, ext: &str) -> std::path::PathBuf {
        self.dir.join(format!("{}.{ext}", self.stem))
    }
}

/// Why a cell cannot run here, if it cannot, as bench-server itself says: a backend it does not
/// have or that is not available on this machine, a trigger or accept strategy the backend does not
/// take, or more descriptors than can be had.
fn skip_reason(cell: &Cell, bins: &Binaries, net: &Network, clients: usize) -> Option<String> {
    let caps = &bins.capabilities;
    let Some(server) = caps.server(&cell.backend) else {
        return Some(format!("bench-server has no backend '{}'", cell.backend));
    };
    if !server.available {
        return Some(
            server
                .unavailable_reason
                .clone()
                .unwrap_or_else(|| format!("{} is not available here", server.mechanism)),
        );
    }
    let refused = |flag: &str, value: &Option<String>, accepted: &[String]| {
        value.as_ref().filter(|v| !accepted.contains(v)).map(|v| {
            format!(
                "{} does not take --{flag} {v} (it takes {accepted:?})",
                server.mechanism
            )
        })
    };
    refused("trigger", &cell.trigger, &server.triggers)
        .or_else(|| refused("accept", &cell.accept, &server.accepts))
        .or_else(|| {
            let limits = Limits {
                server_open_files: caps.open_files_limit,
                client_open_files: net.client_open_files(),
                max_fd: server.max_fd,
                clients,
            };
            descriptor_skip(cell, limits)
        })
}

/// bench-server's arguments for a cell: on 127.0.0.1 (or the server host's address), a free port,
/// statistics to `stats_json`.
fn server_args(cell: &Cell, suite: &Suite, place: &Place, stats_json: &str) -> Vec<String> {
    let bins = place.bins;
    let mut args: Vec<String> = [
        "--addr",
        &place.net.server_bind(),
        "--stats-interval",
        "0s",
        "--backend",
        &cell.backend,
        "--threads",
        &cell.server_threads.to_string(),
        "--stats-json",
        stats_json,
    ]
    .map(String::from)
    .to_vec();
    if let Some(t) = &cell.trigger {
        args.extend(["--trigger".into(), t.clone()]);
    }
    if let Some(a) = &cell.accept {
        args.extend(["--accept".into(), a.clone()]);
    }
    args.extend(cell.server_flags.iter().cloned());
    // A server that cannot be pinned (the threads baseline: a thread per connection) runs
    // unpinned; its client still is.
    let pinnable = bins
        .capabilities
        .server(&cell.backend)
        .is_some_and(|s| s.pin);
    if suite.pin && pinnable {
        args.push("--pin".into());
    }
    args
}

/// Start bench-server and read the address it listens on. It prints the address once every loop
/// listens: connections made from then on are queued by the kernel until accepted, so no probe
/// connection is needed (one would show in the server's counters as a connection).
fn start_server<'a>(
    site: &Site<'a>,
    program: &Path,
    args: &[String],
) -> Result<(Process<'a>, SocketAddr), StepError> {
    let mut server = site
        .start(program, args)
        .map_err(|e| StepError::Failed(format!("cannot start bench-server: {e}")))?;
    // A login shell may print something of its own before: read up to the address line, within
    // the start limit.
    let deadline = std::time::Instant::now() + SERVER_START;
    let mut line = String::new();
    while let Some(next) =
        server.stdout_line(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        line = next;
        if line.trim().starts_with("listening on ") {
            break;
        }
    }
    if crate::run::process::interrupted().load(std::sync::atomic::Ordering::Relaxed) {
        return Err(StepError::Interrupted);
    }
    match line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse::<SocketAddr>().ok())
    {
        Some(addr) => Ok((server, addr)),
        None => {
            server.stop(Duration::from_secs(1));
            let err = server.stderr_text();
            Err(StepError::Failed(format!(
                "bench-server did not start within {SERVER_START:?}: {}",
                err.trim()
            )))
        }
    }
}

/// `load-gen run`'s arguments for client `k` of a cell at `site` against `addr` (its share of the
/// connections, idle connections and rate), results to STEM.json and STEM.hlog.
fn load_args(
    cell: &Cell,
    suite: &Suite,
    (addr, start_at): (SocketAddr, Option<f64>),
    site: &Site,
    files: &CellFiles,
    k: usize,
) -> Vec<String> {
    let share = |total: u64| share(total, suite.clients, k).to_string();
    let (duration, warmup) = window(cell, suite);
    let mut args: Vec<String> = [
        "run",
        "--target",
        &addr.to_string(),
        "-c",
        &share(cell.connections as u64),
        "-t",
        &cell.client_threads.to_string(),
        "-d",
        &micros(duration),
        "--warmup",
        &micros(warmup),
        "--size",
        &cell.size,
        "--pipeline",
        &cell.pipeline.to_string(),
        "--idle",
        &share(cell.idle as u64),
        "--json",
        &site.file_for(&files.path("json")),
        "--hlog",
        &site.file_for(&files.path("hlog")),
    ]
    .map(String::from)
    .to_vec();
    if let Some(rate) = cell.rate {
        args.extend(["-R".into(), share(rate)]);
    }
    if let Some(n) = cell.messages_per_connection {
        args.extend(["--messages-per-connection".into(), n.to_string()]);
    }
    if let Some(at) = start_at {
        args.extend(["--start-at".into(), format!("{at:.3}")]);
    }
    if let Some(cores) = suite
        .pin
        .then(|| client_cores(cell.server_threads))
        .flatten()
    {
        args.extend(["--cpus".into(), cores]);
    }
    args
}

/// Why load-gen failed: its own account (errors by kind, an early stop, an empty window) when it
/// wrote its JSON, else its last words on stderr.
fn why_load_gen_failed(json: &Path, stderr: &str) -> String {
    match read_json::<RunReport>(json) {
        Ok(run) => run
            .failure_summary()
            .unwrap_or_else(|| "no errors recorded".into()),
        Err(_) => stderr
            .lines()
            .rfind(|l| !l.starts_with('['))
            .unwrap_or("")
            .trim()
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::suite::tests::{suite, HEAD};

    #[test]
    fn descriptors_count_the_server_loops_and_skip_what_cannot_run() {
        let mut cell = suite(&format!(
            "{HEAD}[[sweep]]\nname = \"s\"\nbackends = [\"select\"]\nconnections = [10]\nidle = [1000]\n"
        ))
        .unwrap()
        .cells(str::to_string)
        .remove(0);
        // select at 1,000 idle + 10 busy with one loop fits under FD_SETSIZE (it ran in the
        // reference run at 20k msgs/s); with eight loops, 24 more descriptors do not.
        let limits = |open: u64, max_fd: Option<i64>| Limits {
            server_open_files: Some(open),
            client_open_files: Some(open),
            max_fd,
            clients: 1,
        };
        assert_eq!(descriptor_skip(&cell, limits(20_000, Some(1023))), None);
        cell.server_threads = 8;
        let why = descriptor_skip(&cell, limits(20_000, Some(1023))).expect("skipped");
        assert!(why.contains("FD_SETSIZE (1024)"), "{why}");
        // The open-files limit counts the larger of the two processes.
        let need = Descriptors::of(&cell, 1);
        assert!(need.server > need.client);
        let limit = need.server as u64 - 1;
        let why = descriptor_skip(&cell, limits(limit, None)).expect("skipped");
        assert!(why.contains(&format!("limit {limit}")), "{why}");
        assert_eq!(descriptor_skip(&cell, limits(limit + 1, None)), None);
        // Clients each hold their share: 4 of them need a quarter of the sockets each, and a
        // limit that one client could not live with is enough for each of four.
        let one = Descriptors::of(&cell, 1).client;
        let four = Descriptors::of(&cell, 4).client;
        assert_eq!(one - four, 1010 - 1010_usize.div_ceil(4));
        let clients = |n: usize| Limits {
            server_open_files: Some(100_000),
            client_open_files: Some(four as u64),
            max_fd: None,
            clients: n,
        };
        let why = descriptor_skip(&cell, clients(1)).expect("one client cannot");
        assert!(why.contains("load-gen"), "{why}");
        assert_eq!(descriptor_skip(&cell, clients(4)), None);
    }

    /// A sweep's own duration and warm-up reach its cells exactly; the others keep the suite's.
    #[test]
    fn a_sweeps_own_window_is_its_cells_window() {
        let s = suite(&format!(
            "{HEAD}[[sweep]]\nname = \"cost\"\nbackends = [\"epoll\"]\nconnections = [10]\n\
             duration = \"2500ms\"\nwarmup = \"300ms\"\n[[sweep]]\nname = \"plain\"\n\
             backends = [\"epoll\"]\nconnections = [10]\n"
        ))
        .unwrap();
        let cells = s.cells(str::to_string);
        assert_eq!(
            window(&cells[0], &s),
            (Duration::from_millis(2500), Duration::from_millis(300))
        );
        assert_eq!(micros(window(&cells[0], &s).1), "300000us");
        assert_eq!(window(&cells[1], &s), (s.duration, s.warmup));
    }
}

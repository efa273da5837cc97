//! A suite (a TOML file under scripts/suites/): its model, its checks, and the cells it expands
//! to. A cell is backend x trigger x accept x size x pipeline x rate x connections x idle, each list
//! of a sweep a dimension; `cell.rs` runs one.

use crate::place::network::{Network, TopologyKind};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pollbench_schema::results::{Cell, Meta};
use serde::{Deserialize, Deserializer};

/// A suite file, parsed and validated once: durations are durations and sizes are checked sizes
/// (what the TOML format cannot say is checked by [`Suite::load`]).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    pub description: String,
    /// Measured time of every cell ("4s").
    #[serde(deserialize_with = "duration")]
    pub duration: Duration,
    /// Warm-up of every cell, excluded from its figures.
    #[serde(deserialize_with = "duration")]
    pub warmup: Duration,
    #[serde(default = "default_size")]
    pub size: Size,
    #[serde(default = "one")]
    pub pipeline: usize,
    #[serde(default = "one")]
    pub server_threads: usize,
    #[serde(default = "one")]
    pub client_threads: usize,
    /// Rounds: every cell runs once per round, in an order shuffled per round; the report shows
    /// the median round (by msgs/s) and the spread.
    #[serde(default = "one")]
    pub repeat: usize,
    /// The seed of the rounds' shuffles. [default: from the clock; recorded in meta.json]
    pub seed: Option<u64>,
    /// Pin the server's loops to the first cores and load-gen's threads to the cores after them,
    /// so the two do not migrate onto each other's cores between runs.
    #[serde(default)]
    pub pin: bool,
    /// Where server and client talk: over 127.0.0.1 in the machine's own network stack, or from
    /// network namespaces of their own across a veth bridge.
    #[serde(default)]
    pub topology: TopologyKind,
    /// load-gen processes per cell, each with its share of the connections (and of the rate and
    /// idle connections), on client hosts of their own with `topology = "netns"`; their runs are
    /// merged exactly into the cell's. [default: 1]
    #[serde(default = "one")]
    pub clients: usize,
    /// `topology = "netns"`: added to every packet each host sends (tc netem on every host's
    /// veth; a round trip gains twice this). A kernel without netem skips the cells, saying so.
    #[serde(default, deserialize_with = "optional_duration")]
    pub link_delay: Option<Duration>,
    /// `topology = "netns"`: most bits per second each host sends ("100mbit", as tc writes it;
    /// tc tbf, or netem's rate with `link_delay`).
    pub link_rate: Option<String>,
    /// Real machines (or anything a launch prefix reaches) for bench-server and the clients,
    /// instead of this machine: see `hosts`. Sets `clients` to its number of clients.
    pub hosts: Option<crate::place::hosts::HostsSpec>,
    pub sweep: Vec<Sweep>,
    /// Commands of the suite's `external:NAME` columns written in the file, `[external]` NAME =
    /// "COMMAND {port}": what a run directory's suite.toml records of the commands its run was
    /// given, so that it reruns them. A shared suite leaves them to `pollbench suite --external`
    /// (a path on one machine is not a path on another), which takes precedence over these.
    #[serde(default)]
    pub external: std::collections::BTreeMap<String, String>,
    /// The commands of the suite's `external:NAME` columns that run: the file's `[external]`, and
    /// over them those of `pollbench suite --external`.
    #[serde(skip)]
    pub externals: crate::run::external::Commands,
    /// The file's text, as read: what meta.json records and a run directory's suite.toml is
    /// made from. Empty for a suite not read from a file.
    #[serde(skip)]
    pub text: String,
}

fn default_size() -> Size {
    Size {
        text: "64B".into(),
        bytes: 64,
    }
}

/// A message size as the suite writes it ("4KiB": kept for labels and for load-gen's --size) and
/// in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Size {
    pub text: String,
    pub bytes: usize,
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = pollbench_common::parse_bytes(&text).map_err(serde::de::Error::custom)?;
        Ok(Size { text, bytes })
    }
}

/// A duration field ("4s", "250ms"), bounded as on every command line.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    pollbench_common::parse_duration(&text).map_err(serde::de::Error::custom)
}
/// An optional duration field.
fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// A rate as tc takes it: a number and bit, kbit, mbit or gbit.
fn tc_rate(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    ["gbit", "mbit", "kbit", "bit"].iter().any(|unit| {
        lower.strip_suffix(unit).is_some_and(|n| {
            !n.is_empty() && n.parse::<f64>().is_ok_and(|v| v.is_finite() && v > 0.0)
        })
    })
}

fn one() -> usize {
    1
}

/// One sweep: the cartesian product of its lists.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    pub name: String,
    pub backends: Vec<BackendEntry>,
    /// The sweep's own measured window and warm-up, where it needs other ones than the suite's (a
    /// cost sweep's cells long enough for the server's readings at whole seconds).
    #[serde(default, deserialize_with = "optional_duration")]
    pub duration: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    pub warmup: Option<Duration>,
    pub connections: Vec<usize>,
    #[serde(default)]
    pub idle: Vec<usize>,
    #[serde(default)]
    pub triggers: Vec<String>,
    #[serde(default)]
    pub accepts: Vec<String>,
    /// Open loop at this many messages per second; closed loop if absent.
    pub rate: Option<u64>,
    /// Several open-loop rates: a column each (instead of `rate`).
    #[serde(default)]
    pub rates: Vec<u64>,
    /// Message sizes, a column each. [default: the suite's size]
    #[serde(default)]
    pub sizes: Vec<Size>,
    /// Closed-loop pipeline depths, a column each. [default: the suite's pipeline]
    #[serde(default)]
    pub pipelines: Vec<usize>,
    /// Connection churn: messages each connection sends before it closes and a new one replaces
    /// it (load-gen --messages-per-connection), a column each. [default: connections are kept]
    #[serde(default)]
    pub churn: Vec<u64>,
    /// Override the suite's server threads for this sweep (accept strategies need several).
    pub server_threads: Option<usize>,
    /// Override the suite's client threads for this sweep.
    pub client_threads: Option<usize>,
}

impl Suite {
    /// How the links of a netns topology are shaped.
    /// The network this suite asks for, made now (see [`Network::new`]); `local_bin_dir` holds
    /// this runner's binaries (the hosts' default `bin_dir`).
    pub fn network(&self, local_bin_dir: &Path) -> Network {
        Network::new(
            self.hosts.as_ref(),
            self.topology,
            self.clients,
            &self.shaping(),
            local_bin_dir,
        )
    }

    pub fn shaping(&self) -> crate::place::netns::Shaping {
        crate::place::netns::Shaping {
            delay: self.link_delay,
            rate: self.link_rate.clone(),
        }
    }

    /// Find a suite by name (scripts/suites/NAME.toml, searched upwards from here) or path.
    pub fn locate(name: &str) -> Result<PathBuf, String> {
        let direct = PathBuf::from(name);
        if direct.extension().is_some_and(|e| e == "toml") && direct.exists() {
            return Ok(direct);
        }
        let mut dir = std::env::current_dir().map_err(|e| e.to_string())?;
        loop {
            let candidate = dir.join("scripts/suites").join(format!("{name}.toml"));
            if candidate.exists() {
                return Ok(candidate);
            }
            if !dir.pop() {
                return Err(format!("no suite '{name}': expected scripts/suites/{name}.toml or a path to a .toml file"));
            }
        }
    }

    /// Keep only the named sweeps (in the suite's order); a name the suite does not have is an
    /// error listing the ones it has.
    pub fn only(&mut self, names: &[String]) -> Result<(), String> {
        if let Some(unknown) = names
            .iter()
            .find(|n| !self.sweep.iter().any(|s| &s.name == *n))
        {
            let have: Vec<&str> = self.sweep.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "--sweep {unknown}: the suite has no such sweep (its sweeps: {})",
                have.join(", ")
            ));
        }
        self.sweep.retain(|s| names.contains(&s.name));
        // The file's commands of columns that no longer run are not run.
        let columns = self.external_columns();
        self.externals.retain(|name, _| columns.contains(name));
        Ok(())
    }

    /// The names of the suite's external columns (`external:NAME`).
    fn external_columns(&self) -> Vec<String> {
        self.sweep
            .iter()
            .flat_map(|s| &s.backends)
            .filter_map(|b| crate::run::external::name_of(&b.backend))
            .map(str::to_string)
            .collect()
    }

    pub fn load(path: &Path) -> Result<Suite, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut suite: Suite =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        suite
            .check()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(hosts) = &suite.hosts {
            suite.clients = hosts.clients.len();
        }
        for (name, command) in &suite.external {
            let (name, words) = crate::run::external::parse(&format!("{name}={command}"))
                .map_err(|e| format!("{}: [external] {name}: {e}", path.display()))?;
            suite.externals.insert(name, words);
        }
        suite.text = text;
        Ok(suite)
    }

    /// The name of the suite in file `path`, as run directories and reports call it: the file's
    /// stem, except for a run directory's suite.toml, which is named after the run it reruns
    /// (its suite, and the sweeps `--sweep` chose: `full-accept`).
    pub fn name_of(path: &Path) -> String {
        let beside = path.parent().unwrap_or(Path::new("."));
        if path.file_name().is_some_and(|n| n == RUN_SUITE_FILE) {
            if let Ok(meta) = Meta::read(beside) {
                return std::iter::once(meta.suite)
                    .chain(meta.sweeps.into_iter().flatten())
                    .collect::<Vec<_>>()
                    .join("-");
            }
        }
        path.file_stem()
            .map_or("suite".into(), |s| s.to_string_lossy().to_string())
    }

    /// Every cell of every sweep, in order. `mechanism` names a backend for reports: what
    /// bench-server calls it (`kqueue (libkqueue)` where kqueue is libkqueue on epoll).
    pub fn cells(&self, mechanism: impl Fn(&str) -> String) -> Vec<Cell> {
        let mut cells = Vec::new();
        for sweep in &self.sweep {
            let variants = self.variants(sweep);
            for (b, entry) in sweep.backends.iter().enumerate() {
                // A backend listed again is a column of its own ("epoll #2"): an A/A pair whose
                // verdict is the measured noise floor.
                let nth = sweep.backends[..b].iter().filter(|x| *x == entry).count() + 1;
                for v in &variants {
                    // The label names what the report's columns vary; the id adds the row
                    // (connections, idle).
                    let mut label = mechanism(&entry.backend);
                    for flag in &entry.flags {
                        label.push(' ');
                        label.push_str(flag);
                    }
                    if nth > 1 {
                        label.push_str(&format!(" #{nth}"));
                    }
                    label.push_str(&v.label);
                    let stem = format!(
                        "{}-{}",
                        sweep.name,
                        label
                            .replace(" --", " ")
                            .replace(' ', "-")
                            .replace(['(', ')', '#'], "")
                    )
                    .replace("-pipeline-", "-p")
                    .replace("/s", "ps")
                    .replace("-msgs/conn", "mpc");
                    for &connections in &sweep.connections {
                        for &idle in &or_one(&sweep.idle, 0) {
                            let mut id = format!("{stem}-c{connections}");
                            if !sweep.idle.is_empty() {
                                id.push_str(&format!("-idle{idle}"));
                            }
                            cells.push(Cell {
                                id,
                                label: label.clone(),
                                sweep: sweep.name.clone(),
                                backend: entry.backend.clone(),
                                server_flags: entry.flags.clone(),
                                trigger: v.trigger.clone(),
                                accept: v.accept.clone(),
                                connections,
                                idle,
                                rate: v.rate,
                                size: v.size.text.clone(),
                                pipeline: v.pipeline,
                                messages_per_connection: v.churn,
                                duration_s: sweep.duration.map(|d| d.as_secs_f64()),
                                warmup_s: sweep.warmup.map(|d| d.as_secs_f64()),
                                server_threads: sweep.server_threads.unwrap_or(self.server_threads),
                                client_threads: sweep.client_threads.unwrap_or(self.client_threads),
                            });
                        }
                    }
                }
            }
        }
        cells
    }

    /// A sweep's columns for one backend: every combination of its trigger, accept, size,
    /// pipeline, rate and churn lists, each with the label suffix that names what the sweep varies.
    fn variants(&self, sweep: &Sweep) -> Vec<Variant> {
        let mut variants = Vec::new();
        let rates: Vec<Option<u64>> = if sweep.rates.is_empty() {
            vec![sweep.rate]
        } else {
            sweep.rates.iter().copied().map(Some).collect()
        };
        let churns: Vec<Option<u64>> = if sweep.churn.is_empty() {
            vec![None]
        } else {
            sweep.churn.iter().copied().map(Some).collect()
        };
        for trigger in optional(&sweep.triggers) {
            for accept in optional(&sweep.accepts) {
                for size in or_one(&sweep.sizes, self.size.clone()) {
                    for pipeline in or_one(&sweep.pipelines, self.pipeline) {
                        for &rate in &rates {
                            for &churn in &churns {
                                let mut label = String::new();
                                for part in [&trigger, &accept].into_iter().flatten() {
                                    label.push_str(&format!(" {part}"));
                                }
                                if !sweep.sizes.is_empty() {
                                    label.push_str(&format!(" {}", size.text));
                                }
                                if !sweep.pipelines.is_empty() {
                                    label.push_str(&format!(" pipeline {pipeline}"));
                                }
                                if let Some(r) = rate.filter(|_| !sweep.rates.is_empty()) {
                                    label.push_str(&format!(" {r}/s"));
                                }
                                if let Some(n) = churn {
                                    label.push_str(&format!(" {n} msgs/conn"));
                                }
                                variants.push(Variant {
                                    label,
                                    trigger: trigger.clone(),
                                    accept: accept.clone(),
                                    size: size.clone(),
                                    pipeline,
                                    rate,
                                    churn,
                                });
                            }
                        }
                    }
                }
            }
        }
        variants
    }

    /// Take the commands of the suite's external columns (`--external NAME=COMMAND`, parsed), over
    /// any the file gives; a name no column of the suite has is refused.
    pub fn use_externals(&mut self, given: &[String]) -> Result<(), String> {
        for arg in given {
            let (name, words) = crate::run::external::parse(arg)?;
            let column = format!("{}{name}", crate::run::external::PREFIX);
            if !self.external_columns().contains(&name) {
                return Err(format!(
                    "--external {name}: the suite has no column {column}"
                ));
            }
            self.externals.insert(name, words);
        }
        Ok(())
    }

    /// What the TOML format cannot say: lists that must not be empty, values that must parse.
    fn check(&self) -> Result<(), String> {
        if self.repeat == 0 {
            return Err("repeat must be at least 1".into());
        }
        if !(1..=64).contains(&self.clients) {
            return Err(format!("clients must be 1 to 64, not {}", self.clients));
        }
        if self.sweep.is_empty() {
            return Err("no [[sweep]]: a suite needs at least one".into());
        }
        if self.link_delay.is_some() || self.link_rate.is_some() {
            if self.topology != TopologyKind::Netns {
                return Err("link_delay and link_rate shape the links of topology = \"netns\"; this suite has none".into());
            }
            if let Some(rate) = &self.link_rate {
                if !tc_rate(rate) {
                    return Err(format!(
                        "link_rate {rate:?}: a number and bit, kbit, mbit or gbit (\"100mbit\")"
                    ));
                }
            }
        }
        if let Some(hosts) = &self.hosts {
            hosts.check()?;
            if self.topology != TopologyKind::Loopback {
                return Err("[hosts] and topology = \"netns\" exclude each other: the hosts are the topology".into());
            }
            if self.clients != 1 && self.clients != hosts.clients.len() {
                return Err(format!(
                    "clients = {} but [hosts] lists {}: leave clients out with [hosts]",
                    self.clients,
                    hosts.clients.len()
                ));
            }
        }
        for s in &self.sweep {
            let name = &s.name;
            if s.backends.is_empty() || s.connections.is_empty() {
                return Err(format!(
                    "sweep '{name}': backends and connections must not be empty"
                ));
            }
            if let Some(entry) = s.backends.iter().find(|e| !e.is_well_formed()) {
                return Err(format!("sweep '{name}': backend '{entry}': a backend name, then any bench-server flags of a variant (\"io_uring_completion --fixed-files\"); --backend, --addr and --threads are the suite's"));
            }
            if let Some(entry) = s.backends.iter().find(|e| {
                crate::run::external::name_of(&e.backend).is_some()
                    && (!e.flags.is_empty()
                        || self.hosts.is_some()
                        || self.topology != TopologyKind::Loopback
                        || s.server_threads.unwrap_or(self.server_threads) != 1
                        || !s.triggers.is_empty()
                        || !s.accepts.is_empty())
            }) {
                return Err(format!("sweep '{name}': {entry}: an external server takes no flags, triggers or accept strategies (its command is given with --external), runs with server_threads = 1 (it is pinned to one core and its busy share is over one) and on this machine over 127.0.0.1 (no [hosts], topology \"loopback\")"));
            }
            if s.rate.is_some() && !s.rates.is_empty() {
                return Err(format!(
                    "sweep '{name}': give rate (one) or rates (a list), not both"
                ));
            }
            if s.pipelines.iter().chain([&self.pipeline]).any(|&p| p == 0)
                || s.rates.contains(&0)
                || s.rate == Some(0)
                || s.churn.contains(&0)
            {
                return Err(format!(
                    "sweep '{name}': pipelines, rates and churn must be at least 1"
                ));
            }
        }
        if let Some(name) = self
            .external
            .keys()
            .find(|n| !self.external_columns().contains(n))
        {
            return Err(format!(
                "[external] {name}: the suite has no column {}{name}",
                crate::run::external::PREFIX
            ));
        }
        if self
            .sweep
            .iter()
            .enumerate()
            .any(|(i, s)| self.sweep[..i].iter().any(|t| t.name == s.name))
        {
            return Err("two sweeps have the same name: cell ids would collide".into());
        }
        Ok(())
    }
}

/// The file in a run directory that holds its suite as it ran: `pollbench suite DIR/suite.toml`
/// reruns it.
pub const RUN_SUITE_FILE: &str = "suite.toml";

/// The text of the suite run `meta` ran: meta.json's suite text, with only the sweeps that ran
/// where `--sweep` chose some (the others' `[[sweep]]` tables, and the comments above them,
/// taken out), and the commands its external columns ran (`--external`) in its `[external]`
/// table; everything else as written. Err says why there is none that would be exact.
pub fn as_ran(meta: &Meta) -> Result<String, String> {
    if meta.suite_file.trim().is_empty() {
        return Err("meta.json does not record the suite's text".into());
    }
    let parsed = meta.suite_file.parse::<toml_edit::DocumentMut>();
    // The seed a run of several rounds drew from the clock, where its text gives none: without it
    // a rerun would shuffle its rounds another way.
    let drawn = meta
        .rounds
        .as_ref()
        .map(|r| r.seed)
        .filter(|_| !parsed.as_ref().is_ok_and(|doc| doc.get("seed").is_some()));
    if meta.sweeps.is_none() && meta.externals.is_none() && drawn.is_none() {
        return Ok(meta.suite_file.clone());
    }
    let mut doc = parsed.map_err(|e| format!("meta.json's suite text does not parse: {e}"))?;
    if let Some(seed) = drawn {
        let seed = i64::try_from(seed)
            .map_err(|_| format!("the run's seed {seed} is beyond what a TOML integer holds"))?;
        doc.insert("seed", toml_edit::value(seed));
        if let Some(mut key) = doc.key_mut("seed") {
            key.leaf_decor_mut().set_prefix(
                "# The seed this run's shuffles drew from the clock (meta.json: rounds.seed).\n",
            );
        }
    }
    if let Some(sweeps) = &meta.sweeps {
        only_sweeps(&mut doc, sweeps)?;
    }
    let ran = meta.externals.clone().unwrap_or_default();
    let written: crate::run::external::Commands = doc
        .get("external")
        .and_then(toml_edit::Item::as_table_like)
        .into_iter()
        .flat_map(|t| t.iter())
        .filter_map(|(name, command)| {
            let words = command.as_str()?.split_whitespace().map(str::to_owned);
            Some((name.to_string(), words.collect()))
        })
        .collect();
    if written != ran {
        doc.remove("external");
        if !ran.is_empty() {
            let mut table = toml_edit::Table::new();
            for (name, words) in &ran {
                table.insert(name, toml_edit::value(words.join(" ")));
            }
            doc.insert("external", toml_edit::Item::Table(table));
        }
    }
    Ok(doc.to_string())
}

/// Keep only the `[[sweep]]` tables of `sweeps` in `doc`, each with the comment above it.
fn only_sweeps(doc: &mut toml_edit::DocumentMut, sweeps: &[String]) -> Result<(), String> {
    let tables = doc
        .get_mut("sweep")
        .and_then(toml_edit::Item::as_array_of_tables_mut)
        .ok_or("meta.json's suite text has no [[sweep]] tables to choose from")?;
    let mut kept = Vec::new();
    tables.retain(|t| {
        let name = t.get("name").and_then(toml_edit::Item::as_str);
        let keep = name.is_some_and(|n| sweeps.iter().any(|s| s == n));
        if keep {
            kept.extend(name.map(str::to_string));
        }
        keep
    });
    match sweeps.iter().find(|s| !kept.contains(s)) {
        Some(missing) => Err(format!(
            "meta.json's suite text has no sweep named {missing}, which ran"
        )),
        None => Ok(()),
    }
}

/// Write `dir`'s suite.toml from meta.json ([`as_ran`]), atomically, unless it is there already
/// (a run writes it before its first cell). Nothing is written when there is no exact text: the
/// report says why.
pub fn write_as_ran(dir: &Path, meta: &Meta) -> Result<(), String> {
    let path = dir.join(RUN_SUITE_FILE);
    if path.exists() {
        return Ok(());
    }
    let Ok(text) = as_ran(meta) else {
        return Ok(());
    };
    pollbench_schema::file::write_atomically(&path, text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A sweep's backend entry, as the suite writes it ("io_uring_completion --fixed-files"): the
/// backend bench-server runs, then bench-server flags of a variant, a column of its own.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(from = "String")]
pub struct BackendEntry {
    pub backend: String,
    pub flags: Vec<String>,
}

impl From<String> for BackendEntry {
    fn from(entry: String) -> BackendEntry {
        let mut words = entry.split_whitespace().map(str::to_owned);
        BackendEntry {
            backend: words.next().unwrap_or_default(),
            flags: words.collect(),
        }
    }
}

impl BackendEntry {
    /// A name first, and none of the flags the suite sets itself.
    fn is_well_formed(&self) -> bool {
        let suites_own = ["--backend", "--addr", "--threads"];
        !self.backend.is_empty()
            && !self.backend.starts_with('-')
            && !self
                .flags
                .iter()
                .any(|f| suites_own.iter().any(|own| f.starts_with(own)))
    }
}

impl std::fmt::Display for BackendEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.backend)?;
        self.flags.iter().try_for_each(|flag| write!(f, " {flag}"))
    }
}

/// One column of a sweep, for one backend: what the sweep's lists vary.
struct Variant {
    /// What the column's label adds to the backend's name (" edge", " 4KiB", " 1 msgs/conn").
    label: String,
    trigger: Option<String>,
    accept: Option<String>,
    size: Size,
    pipeline: usize,
    rate: Option<u64>,
    churn: Option<u64>,
}

/// The list, or the one default value when the list is empty.
fn or_one<T: Clone>(list: &[T], default: T) -> Vec<T> {
    if list.is_empty() {
        vec![default]
    } else {
        list.to_vec()
    }
}

/// The list as options, or a single None (the flag is left to bench-server's default).
fn optional(list: &[String]) -> Vec<Option<String>> {
    if list.is_empty() {
        vec![None]
    } else {
        list.iter().cloned().map(Some).collect()
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn suite(text: &str) -> Result<Suite, String> {
        let suite: Suite = toml::from_str(text).map_err(|e| e.to_string())?;
        suite.check()?;
        Ok(suite)
    }

    pub const HEAD: &str = "description = \"t\"\nduration = \"1s\"\nwarmup = \"0s\"\n";

    /// Every suite committed under scripts/suites/ reads and passes its checks, and expands to
    /// cells with unique ids.
    #[test]
    fn every_committed_suite_reads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/suites");
        let mut read = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let suite = Suite::load(&path).unwrap_or_else(|e| panic!("{e}"));
                let cells = suite.cells(str::to_string);
                let mut ids: Vec<&str> = cells.iter().map(|c| c.id.as_str()).collect();
                ids.sort_unstable();
                ids.dedup();
                assert_eq!(ids.len(), cells.len(), "{}", path.display());
                read += 1;
            }
        }
        assert!(read >= 4, "{read} suites in {}", dir.display());
    }

    /// A meta.json for [`as_ran`]: suite text `text`, sweeps chosen `sweeps`.
    fn meta_of(text: &str, sweeps: Option<&[&str]>) -> Meta {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/20261123T210857Z-vm-full");
        Meta {
            suite_file: text.into(),
            sweeps: sweeps.map(|s| s.iter().map(|s| s.to_string()).collect()),
            rounds: None,
            ..Meta::read(&dir).unwrap()
        }
    }

    /// A run of several rounds whose suite gave no seed writes the one it drew from the clock into
    /// its suite.toml, so that the rerun shuffles its rounds the same way; a suite that gives one
    /// is left as written.
    #[test]
    fn a_suite_as_it_ran_holds_the_seed_its_rounds_drew() {
        let text = "description = \"x\"\nduration = \"1s\"\nwarmup = \"0s\"\nrepeat = 6\n\n\
                    [[sweep]]\nname = \"a\"\nbackends = [\"epoll\"]\nconnections = [1]\n";
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/20261123T210857Z-vm-full");
        let drew = Meta {
            rounds: Meta::read(&dir).unwrap().rounds,
            ..meta_of(text, None)
        };
        let seed = drew.rounds.as_ref().unwrap().seed;
        let ran = as_ran(&drew).unwrap();
        assert!(
            ran.starts_with(text.split("\n[[sweep]]").next().unwrap()),
            "{ran}"
        );
        assert!(
            ran.contains(&format!(
                "# The seed this run's shuffles drew from the clock (meta.json: rounds.seed).\nseed = {seed}\n"
            )),
            "{ran}"
        );
        assert_eq!(suite(&ran).unwrap().seed, Some(seed));
        // Given in the text: as written.
        let given = text.replace("repeat = 6\n", "repeat = 6\nseed = 7\n");
        let mut seeded = drew.clone();
        seeded.suite_file = given.clone();
        assert_eq!(as_ran(&seeded).unwrap(), given);
    }

    /// The suite as it ran: the text as written, or with only the sweeps `--sweep` chose (each
    /// other sweep's table and the comment above it taken out, nothing else changed).
    #[test]
    fn a_suite_as_it_ran_keeps_the_text_and_only_the_sweeps_that_ran() {
        let text =
            "# The suite.\ndescription = \"d, \\\"quoted\\\"\"\nduration = \"1s\" # inline\n\
                    warmup = \"0s\"\n\n# First.\n[[sweep]]\nname = \"a\"\nbackends = [\"epoll\"]\n\
                    connections = [1]\n\n# Second,\n# two lines.\n[[sweep]]\nname = \"b\"\n\
                    backends = [\"poll\"]\nconnections = [2]\n\n[[sweep]]\nname = \"c\"\n\
                    backends = [\"select\"]\nconnections = [3] # last\n# The end.\n";
        assert_eq!(as_ran(&meta_of(text, None)).unwrap(), text);
        assert_eq!(
            as_ran(&meta_of(text, Some(&["a", "b", "c"]))).unwrap(),
            text
        );
        let a_and_c = as_ran(&meta_of(text, Some(&["c", "a"]))).unwrap();
        let (head, tail) = text.split_once("# Second,").unwrap();
        let expected = format!(
            "{head}{}",
            &tail[tail.find("[[sweep]]\nname = \"c\"").unwrap()..]
        );
        assert_eq!(a_and_c, expected);
        let read = suite(&a_and_c).unwrap();
        let names: Vec<&str> = read.sweep.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        for (meta, why) in [
            (meta_of("", None), "does not record"),
            (meta_of(text, Some(&["a", "z"])), "no sweep named z"),
            (meta_of("description = ", Some(&["a"])), "does not parse"),
            (meta_of("sweep = 3", Some(&["a"])), "no [[sweep]] tables"),
        ] {
            let err = as_ran(&meta).unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
        }
        // Every committed suite, all its sweeps chosen, is its text to the byte.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/suites");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let suite = Suite::load(&path).unwrap();
            let names: Vec<&str> = suite.sweep.iter().map(|s| s.name.as_str()).collect();
            let all = as_ran(&meta_of(&suite.text, Some(&names))).unwrap();
            assert_eq!(all, suite.text, "{}", path.display());
        }
    }

    /// The commands external columns ran with (`--external`) are written into the suite as it
    /// ran, as its `[external]` table, so that it reruns them; a file whose table already says
    /// them is left as written, and its table is what a suite loads, under `--external`'s.
    #[test]
    fn a_suite_as_it_ran_holds_the_external_commands_it_ran() {
        let text = "description = \"x\"\nduration = \"1s\"\nwarmup = \"0s\"\n\n\
                    [[sweep]]\nname = \"a\"\nbackends = [\"epoll\", \"external:lib\"]\n\
                    connections = [1]\n\n[[sweep]]\nname = \"b\"\nbackends = [\"poll\"]\n\
                    connections = [2]\n";
        let command = vec!["/opt/echo".to_string(), "-p".into(), "{port}".into()];
        let mut meta = meta_of(text, None);
        meta.externals = Some([("lib".to_string(), command.clone())].into());
        let ran = as_ran(&meta).unwrap();
        assert_eq!(
            ran,
            format!("{text}\n[external]\nlib = \"/opt/echo -p {{port}}\"\n")
        );
        // Read back: the column's command is the file's.
        let dir = std::env::temp_dir().join(format!("pollbench-as-ran-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.toml");
        std::fs::write(&path, &ran).unwrap();
        let mut loaded = Suite::load(&path).unwrap();
        assert_eq!(loaded.externals["lib"], command);
        // --external takes precedence; a sweep chosen without the column drops its command.
        loaded.use_externals(&["lib=/other {port}".into()]).unwrap();
        assert_eq!(loaded.externals["lib"], ["/other", "{port}"]);
        loaded.only(&["b".into()]).unwrap();
        assert!(loaded.externals.is_empty());
        // Already written so: the text as it is; with other sweeps chosen, still there.
        let mut again = meta_of(&ran, None);
        again.externals = meta.externals.clone();
        assert_eq!(as_ran(&again).unwrap(), ran);
        again.sweeps = Some(vec!["a".into()]);
        assert!(as_ran(&again)
            .unwrap()
            .ends_with("[external]\nlib = \"/opt/echo -p {port}\"\n"));
        // A command the file gives for a column it does not have is refused.
        std::fs::write(&path, format!("{text}[external]\nnone = \"/x {{port}}\"\n")).unwrap();
        let err = Suite::load(&path).unwrap_err();
        assert!(
            err.contains("[external] none: the suite has no column external:none"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A run directory's suite.toml is named after the run it reruns; any other file after its
    /// stem.
    #[test]
    fn a_runs_suite_toml_is_named_after_the_run() {
        let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results");
        let run = |name: &str| results.join(name).join(RUN_SUITE_FILE);
        assert_eq!(Suite::name_of(&run("20261123T210857Z-vm-full")), "full");
        assert_eq!(
            Suite::name_of(&run("20261123T232628Z-vm-full-accept")),
            "full-accept"
        );
        // Without a meta.json beside it, or under another name: the file's stem.
        assert_eq!(Suite::name_of(&run("nonesuch")), "suite");
        assert_eq!(
            Suite::name_of(&results.join("20261123T210857Z-vm-full/quick.toml")),
            "quick"
        );
    }

    /// Every committed run's suite as it ran reads today and expands to the cells the run
    /// records (ids, and everything each cell is), so its suite.toml reruns those cells.
    #[test]
    fn every_committed_runs_suite_as_it_ran_expands_to_its_cells() {
        fn runs(dir: &Path, found: &mut Vec<PathBuf>) {
            if dir.join("meta.json").exists() {
                found.push(dir.to_path_buf());
            }
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.path().is_dir() {
                    runs(&entry.path(), found);
                }
            }
        }
        let mut found = Vec::new();
        runs(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../results"),
            &mut found,
        );
        let mut differ = Vec::new();
        for dir in &found {
            let meta = Meta::read(dir).unwrap();
            let text = as_ran(&meta).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            let cells = match suite(&text) {
                // Labels as the run named each backend (and external column).
                Ok(s) => s.cells(|backend| {
                    if let Some(name) = crate::run::external::name_of(backend) {
                        return format!("{name} (external)");
                    }
                    meta.cells
                        .iter()
                        .find(|c| c.backend == backend && c.label.starts_with(backend))
                        .map_or(backend.to_string(), |c| {
                            if c.label.starts_with(&format!("{backend} (libkqueue)")) {
                                format!("{backend} (libkqueue)")
                            } else {
                                backend.to_string()
                            }
                        })
                }),
                Err(e) => {
                    differ.push(format!("{}: {e}", dir.display()));
                    continue;
                }
            };
            if cells != meta.cells {
                differ.push(format!("{}: other cells", dir.display()));
            }
        }
        assert!(found.len() >= 10, "{found:?}");
        assert!(differ.is_empty(), "{differ:#?}");
    }

    /// A backend entry is a name and maybe flags; a flag in the name's place, or one of the
    /// flags the suite itself sets, is refused with the rule.
    #[test]
    fn a_backend_entry_is_a_name_then_flags_of_a_variant() {
        let s = suite(&format!(
            "{HEAD}[[sweep]]\nname = \"v\"\nbackends = [\"io_uring_completion --batch 32 --batch-wait 100us\"]\nconnections = [10]\n"
        ))
        .unwrap();
        let cell = &s.cells(str::to_string)[0];
        assert_eq!(cell.backend, "io_uring_completion");
        assert_eq!(
            cell.server_flags,
            ["--batch", "32", "--batch-wait", "100us"]
        );
        assert_eq!(
            cell.label,
            "io_uring_completion --batch 32 --batch-wait 100us"
        );
        assert_eq!(
            cell.id,
            "v-io_uring_completion-batch-32-batch-wait-100us-c10"
        );
        for bad in [
            "--fixed-files",
            "epoll --threads 4",
            "epoll --backend poll",
            "",
        ] {
            let err = suite(&format!(
                "{HEAD}[[sweep]]\nname = \"v\"\nbackends = [\"{bad}\"]\nconnections = [10]\n"
            ))
            .unwrap_err();
            assert!(
                err.contains("a backend name, then any bench-server flags"),
                "{bad}: {err}"
            );
        }
    }

    /// Link shaping is for a netns topology, with a rate as tc writes it.
    #[test]
    fn link_shaping_needs_netns_and_a_rate_tc_takes() {
        let sweep = "[[sweep]]\nname = \"s\"\nbackends = [\"epoll\"]\nconnections = [10]\n";
        let s = suite(&format!(
            "{HEAD}topology = \"netns\"\nlink_delay = \"2ms\"\nlink_rate = \"100mbit\"\n{sweep}"
        ))
        .unwrap();
        assert_eq!(s.shaping().delay, Some(Duration::from_millis(2)));
        assert_eq!(s.shaping().rate.as_deref(), Some("100mbit"));
        let err = suite(&format!("{HEAD}link_delay = \"2ms\"\n{sweep}")).unwrap_err();
        assert!(err.contains("topology = \"netns\""), "{err}");
        for bad in ["fast", "100", "mbit", "-5mbit"] {
            let err = suite(&format!(
                "{HEAD}topology = \"netns\"\nlink_rate = \"{bad}\"\n{sweep}"
            ))
            .unwrap_err();
            assert!(
                err.contains("a number and bit, kbit, mbit or gbit"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn every_list_of_a_sweep_is_a_dimension_of_its_cells() {
        let s = suite(&format!(
            "{HEAD}size = \"128B\"\n[[sweep]]\nname = \"mix\"\nbackends = [\"poll\", \"epoll\"]\n\
             sizes = [\"64B\", \"4KiB\"]\npipelines = [1, 8]\nrates = [1000, 5000]\n\
             connections = [10, 100]\n\
             [[sweep]]\nname = \"plain\"\nbackends = [\"epoll\"]\nconnections = [10]\n"
        ))
        .unwrap();
        let cells = s.cells(str::to_string);
        assert_eq!(cells.len(), 2 * 2 * 2 * 2 * 2 + 1);
        let ids: std::collections::BTreeSet<&str> = cells.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids.len(), cells.len(), "ids are unique");
        let c = cells
            .iter()
            .find(|c| c.id == "mix-epoll-4KiB-p8-5000ps-c100")
            .expect("id names every varied value");
        assert_eq!(c.label, "epoll 4KiB pipeline 8 5000/s");
        assert_eq!(
            (c.size.as_str(), c.pipeline, c.rate, c.connections),
            ("4KiB", 8, Some(5000), 100)
        );
        // A sweep that varies nothing but connections keeps the short id, and the suite's values.
        let plain = cells.iter().find(|c| c.sweep == "plain").unwrap();
        assert_eq!(plain.id, "plain-epoll-c10");
        assert_eq!(plain.label, "epoll");
        assert_eq!(
            (plain.size.as_str(), plain.pipeline, plain.rate),
            ("128B", 1, None)
        );
    }

    #[test]
    fn churn_is_a_column_per_messages_per_connection() {
        let s = suite(&format!(
            "{HEAD}[[sweep]]\nname = \"accept\"\nbackends = [\"epoll\"]\n\
             accepts = [\"reuseport\", \"shared\"]\nchurn = [1, 100]\nconnections = [50]\n\
             server_threads = 2\n"
        ))
        .unwrap();
        let cells = s.cells(str::to_string);
        let labels: Vec<&str> = cells.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "epoll reuseport 1 msgs/conn",
                "epoll reuseport 100 msgs/conn",
                "epoll shared 1 msgs/conn",
                "epoll shared 100 msgs/conn"
            ]
        );
        let c = &cells[3];
        assert_eq!(c.id, "accept-epoll-shared-100mpc-c50");
        assert_eq!(
            (
                c.messages_per_connection,
                c.accept.as_deref(),
                c.server_threads
            ),
            (Some(100), Some("shared"), 2)
        );
        // Without churn, connections are kept: no flag for load-gen.
        let kept = suite(&format!(
            "{HEAD}[[sweep]]\nname = \"c\"\nbackends = [\"epoll\"]\nconnections = [5]\n"
        ))
        .unwrap();
        assert_eq!(kept.cells(str::to_string)[0].messages_per_connection, None);
        let zero = format!(
            "{HEAD}[[sweep]]\nname = \"c\"\nbackends = [\"epoll\"]\nchurn = [0]\nconnections = [5]\n"
        );
        let err = suite(&zero).and_then(|s| s.check()).unwrap_err();
        assert!(err.contains("churn must be at least 1"), "{err}");
    }

    #[test]
    fn labels_name_the_mechanism_bench_server_reports_and_ids_stay_plain() {
        let s = suite(&format!(
            "{HEAD}[[sweep]]\nname = \"c\"\nbackends = [\"epoll\", \"kqueue\"]\n\
             triggers = [\"edge\"]\nconnections = [10]\n"
        ))
        .unwrap();
        let libkqueue = |b: &str| {
            if b == "kqueue" {
                "kqueue (libkqueue)".to_string()
            } else {
                b.to_string()
            }
        };
        let cells = s.cells(libkqueue);
        let kqueue = cells.iter().find(|c| c.backend == "kqueue").unwrap();
        let epoll = cells.iter().find(|c| c.backend == "epoll").unwrap();
        assert_eq!(
            (epoll.label.as_str(), epoll.id.as_str()),
            ("epoll edge", "c-epoll-edge-c10")
        );
        assert_eq!(kqueue.label, "kqueue (libkqueue) edge");
        assert_eq!(kqueue.id, "c-kqueue-libkqueue-edge-c10");
        // Native kqueue keeps the plain label, so its ids never match a libkqueue run's.
        let native = s.cells(str::to_string);
        let kqueue = native.iter().find(|c| c.backend == "kqueue").unwrap();
        assert_eq!(
            (kqueue.label.as_str(), kqueue.id.as_str()),
            ("kqueue edge", "c-kqueue-edge-c10")
        );
    }

    #[test]
    fn a_backend_listed_twice_is_a_second_column_for_an_a_a_pair() {
        let s = suite(&format!(
            "{HEAD}[[sweep]]\nname = \"aa\"\nbackends = [\"epoll\", \"epoll\", \"threads\"]\n\
             connections = [1000]\n"
        ))
        .unwrap();
        let cells = s.cells(str::to_string);
        let labels: Vec<&str> = cells.iter().map(|c| c.label.as_str()).collect();
        let ids: Vec<&str> = cells.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(labels, ["epoll", "epoll #2", "threads"]);
        assert_eq!(
            ids,
            ["aa-epoll-c1000", "aa-epoll-2-c1000", "aa-threads-c1000"]
        );
        assert!(
            cells.iter().all(|c| c.backend != "epoll #2"),
            "bench-server gets the name"
        );
    }

    #[test]
    fn a_suite_that_cannot_run_as_written_is_refused_with_the_reason() {
        let sweep = "[[sweep]]\nname = \"a\"\nbackends = [\"epoll\"]\nconnections = [10]\n";
        for (extra, top, why) in [
            ("rate = 5\nrates = [1, 2]\n", "", "not both"),
            ("sizes = [\"12XB\"]\n", "", "size"),
            ("pipelines = [0]\n", "", "at least 1"),
            ("", "repeat = 0\n", "repeat"),
            ("", "duration = \"soon\"\n", "duration"),
            ("colour = \"red\"\n", "", "unknown field"),
        ] {
            let text = if top.starts_with("duration") {
                format!("description = \"t\"\nwarmup = \"0s\"\n{top}{sweep}{extra}")
            } else {
                format!("{HEAD}{top}{sweep}{extra}")
            };
            let err = suite(&text)
                .err()
                .unwrap_or_else(|| panic!("accepted: {text}"));
            assert!(err.contains(why), "{why}: {err}");
        }
        let twice = format!("{HEAD}{sweep}{sweep}");
        assert!(suite(&twice).unwrap_err().contains("same name"));
        // An external column runs one thread of its own, with no flags, triggers or strategies.
        let external = "[[sweep]]\nname = \"x\"\nbackends = [\"epoll\", \"external:other\"]\nconnections = [10]\n";
        assert!(suite(&format!("{HEAD}{external}")).is_ok());
        for extra in [
            "server_threads = 2\n",
            "triggers = [\"edge\"]\n",
            "accepts = [\"shared\"]\n",
        ] {
            let err = suite(&format!("{HEAD}{external}{extra}")).unwrap_err();
            assert!(
                err.contains("an external server takes no flags"),
                "{extra}: {err}"
            );
        }
        let flagged = external.replace("external:other", "external:other --fast");
        assert!(suite(&format!("{HEAD}{flagged}")).is_err());
        assert!(suite(&format!("{HEAD}{sweep}")).is_ok());
    }
}

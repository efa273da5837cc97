//! HdrHistogram interval logs (`load-gen run --hlog`): one compressed histogram of corrected latency
//! per measured second, in microseconds. Written by load-gen; read by `load-gen merge` and by the
//! report's percentile-spectrum charts.
//!
//! A log may also hold other per-second distributions as *tagged* series: interval lines that start
//! with `Tag=NAME,` (HdrHistogram's interval-log format since 1.2). The untagged lines always mean
//! corrected latency, so a reader that knows no tag ([`read`], [`total`], HdrHistogram's
//! `HistogramLogProcessor` without `-tag`) sees latency only and never mixes a tagged series in.
//! load-gen writes one tagged series, [`SEND_LATENESS_TAG`] (added within version 1: older logs
//! have none).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

/// The tag of the open-loop send-lateness series: per message, its actual send minus its intended
/// send time, in microseconds, recorded in the second its echo was measured (as its latency is).
pub const SEND_LATENESS_TAG: &str = "send_lateness";

/// The tag of the connection-churn series (load-gen --messages-per-connection): each connection's
/// connect() to established, in microseconds, for the connections established in that second; not
/// latency, so readers of latency ([`read`], [`total`]) never see it. Added within version 1.
pub const CONNECT_TAG: &str = "connect";

/// The tag of latency from the actual send (uncorrected), per second, over the same messages as
/// the untagged (corrected) series, so that runs of several clients merge it exactly too. Added
/// within version 1; a log without it was written before.
pub const UNCORRECTED_TAG: &str = "uncorrected";

/// The histogram every latency is recorded in: 1 µs to 60 s, 3 significant digits. Logs written
/// and read with these bounds can be added exactly.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Write an interval log of corrected latency alone (see [`write_series`]).
pub fn write(
    path: &Path,
    intervals: &[&Histogram<u64>],
    window_start: SystemTime,
) -> std::io::Result<()> {
    write_series(path, intervals, &[], window_start)
}

/// One tagged series of a log: its tag and one histogram per second, `intervals[i]` covering
/// second i after the window's start, as for latency.
pub struct Tagged<'a> {
    pub tag: &'a str,
    pub intervals: &'a [&'a Histogram<u64>],
}

/// Write an interval log (V2 compressed, with the version, StartTime and legend lines that
/// HdrHistogram's HistogramLogProcessor reads): `latency[i]` covers second i after
/// `window_start`, the wall-clock time the measured window opened, untagged; each tagged series
/// follows latency's line in each second, its lines starting with `Tag=NAME,`. Written atomically.
/// A tag with a character the format cannot hold (`,`, space, newline) is an error.
pub fn write_series(
    path: &Path,
    latency: &[&Histogram<u64>],
    tagged: &[Tagged],
    window_start: SystemTime,
) -> std::io::Result<()> {
    let tags = tagged
        .iter()
        .map(|t| {
            Tag::new(t.tag).ok_or_else(|| {
                std::io::Error::other(format!("'{}' cannot be an interval-log tag", t.tag))
            })
        })
        .collect::<std::io::Result<Vec<Tag>>>()?;
    let mut buf: Vec<u8> = Vec::new();
    let start_secs = window_start
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    writeln!(
        buf,
        "#[Logged with pollbench load-gen {}]",
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(buf, "#[Histogram log format version 1.3]")?;
    writeln!(buf, "#[StartTime: {start_secs:.3} (seconds since epoch)]")?;
    writeln!(
        buf,
        "#[Values are latencies in microseconds, corrected for coordinated omission]"
    )?;
    for t in tagged {
        if t.tag == SEND_LATENESS_TAG {
            writeln!(
                buf,
                "#[Tag={SEND_LATENESS_TAG}: each message's send lateness in microseconds (actual send minus intended send), not latency]"
            )?;
        }
        if t.tag == CONNECT_TAG {
            writeln!(
                buf,
                "#[Tag={CONNECT_TAG}: each new connection's connect() to established in microseconds, not latency]"
            )?;
        }
    }
    writeln!(
        buf,
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
    )?;
    let mut serializer = V2DeflateSerializer::new();
    {
        let mut writer = IntervalLogWriterBuilder::new()
            .begin_log_with(&mut buf, &mut serializer)
            .map_err(std::io::Error::other)?;
        let seconds = tagged
            .iter()
            .map(|t| t.intervals.len())
            .fold(latency.len(), usize::max);
        for i in 0..seconds {
            let lines = std::iter::once((None, latency.get(i))).chain(
                tags.iter()
                    .zip(tagged)
                    .map(|(tag, t)| (Some(*tag), t.intervals.get(i))),
            );
            for (tag, h) in lines {
                let Some(h) = h else { continue };
                writer
                    .write_histogram(
                        *h,
                        Duration::from_secs(i as u64),
                        Duration::from_secs(1),
                        tag,
                    )
                    .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            }
        }
    }
    crate::file::write_atomically(path, &buf)
}

/// Each interval's absolute start (whole seconds since the epoch) and histogram.
pub type Intervals = Vec<(u64, Histogram<u64>)>;

/// Several logs' series of one kind added second by second (their wall-clock seconds): the exact
/// merge of what several clients measured at the same time.
pub fn by_second<'a>(
    series: impl IntoIterator<Item = &'a Intervals>,
) -> BTreeMap<u64, Histogram<u64>> {
    let mut out: BTreeMap<u64, Histogram<u64>> = BTreeMap::new();
    for intervals in series {
        for (second, h) in intervals {
            out.entry(*second)
                .or_insert_with(new_histogram)
                .add(h)
                .expect("histograms of one set of bounds");
        }
    }
    out
}

/// Every second of a merged series added into one histogram.
pub fn sum_of_seconds(seconds: &BTreeMap<u64, Histogram<u64>>) -> Histogram<u64> {
    let mut sum = new_histogram();
    for h in seconds.values() {
        sum.add(h).expect("histograms of one set of bounds");
    }
    sum
}

/// Everything in a log: the untagged (latency) intervals, and each tagged series by tag.
pub struct Log {
    pub latency: Intervals,
    pub tagged: BTreeMap<String, Intervals>,
}

impl Log {
    /// A tagged series added up over its intervals; None when the log has no such series (a log
    /// written before it existed).
    pub fn total_of(&self, tag: &str) -> Option<Histogram<u64>> {
        let series = self.tagged.get(tag)?;
        let mut total = new_histogram();
        for (_, h) in series {
            total.add(h).expect("same bounds");
        }
        Some(total)
    }
}

/// Read a whole log, tagged series too. An error names the file; so does a log without a single
/// untagged (latency) interval.
pub fn read_log(path: &Path) -> Result<Log, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut start = Duration::ZERO;
    let mut log = Log {
        latency: Vec::new(),
        tagged: BTreeMap::new(),
    };
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(&text) {
        match entry.map_err(|e| {
            format!(
                "{}: not an HdrHistogram interval log ({e:?})",
                path.display()
            )
        })? {
            LogEntry::StartTime(t) | LogEntry::BaseTime(t) => start = t,
            LogEntry::Interval(h) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(h.encoded_histogram())
                    .map_err(|e| format!("{}: bad histogram encoding: {e}", path.display()))?;
                let hist: Histogram<u64> = deserializer
                    .deserialize(&mut &bytes[..])
                    .map_err(|e| format!("{}: bad histogram: {e:?}", path.display()))?;
                let interval = ((start + h.start_timestamp()).as_secs(), hist);
                match h.tag() {
                    None => log.latency.push(interval),
                    Some(tag) => log
                        .tagged
                        .entry(tag.as_str().to_string())
                        .or_default()
                        .push(interval),
                }
            }
        }
    }
    if log.latency.is_empty() {
        return Err(format!("{}: no interval histograms in it", path.display()));
    }
    Ok(log)
}

/// Read a log's corrected latency: each untagged interval's absolute start (whole seconds since
/// the epoch) and histogram. Tagged series are left out. The error names the file.
pub fn read(path: &Path) -> Result<Intervals, String> {
    read_log(path).map(|log| log.latency)
}

/// The whole measured latency histogram of one log: its untagged intervals added up (tagged
/// series, such as send lateness, are not latency and are left out).
pub fn total(path: &Path) -> Result<Histogram<u64>, String> {
    let mut total = new_histogram();
    for (_, hist) in read(path)? {
        total
            .add(&hist)
            .map_err(|e| format!("{}: {e:?}", path.display()))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("schema-hlog-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn histogram(values: &[u64]) -> Histogram<u64> {
        let mut h = new_histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn a_log_reads_back_with_its_intervals_at_their_wall_clock_seconds() {
        let dir = temp_dir("plain");
        let path = dir.join("run.hlog");
        let a = histogram(&[10, 20, 30]);
        let b = histogram(&[5_000]);
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        write(&path, &[&a, &b], start).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!((back[0].0, back[0].1.len()), (1_000_000, 3));
        assert_eq!((back[1].0, back[1].1.max()), (1_000_001, b.max()));
        assert_eq!(total(&path).unwrap().len(), 4);
        let log = read_log(&path).unwrap();
        assert!(log.tagged.is_empty());
        assert!(log.total_of(SEND_LATENESS_TAG).is_none(), "no such series");
        std::fs::write(&path, b"not a log\n").unwrap();
        assert!(read(&path).unwrap_err().contains("run.hlog"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_tagged_series_is_kept_apart_from_latency() {
        let dir = temp_dir("tagged");
        let path = dir.join("run.hlog");
        let latency = [histogram(&[100, 110, 120]), histogram(&[130, 140])];
        // Lateness far above every latency: mixed in, it would move the total's max and count.
        let lateness = [histogram(&[7_000, 8_000, 9_000]), histogram(&[0, 50_000])];
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000);
        let lat: Vec<&Histogram<u64>> = latency.iter().collect();
        let late: Vec<&Histogram<u64>> = lateness.iter().collect();
        write_series(
            &path,
            &lat,
            &[Tagged {
                tag: SEND_LATENESS_TAG,
                intervals: &late,
            }],
            start,
        )
        .unwrap();
        // The tagged lines are in the file as HdrHistogram writes them.
        let text = std::fs::read_to_string(&path).unwrap();
        let tagged_lines = text
            .lines()
            .filter(|l| l.starts_with("Tag=send_lateness,"))
            .count();
        assert_eq!(tagged_lines, 2, "{text}");
        // Latency readers see latency only.
        let back = read(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(
            back.iter().map(|(s, h)| (*s, h.len())).collect::<Vec<_>>(),
            vec![(2_000_000, 3), (2_000_001, 2)]
        );
        let t = total(&path).unwrap();
        assert_eq!((t.len(), t.max()), (5, 140));
        // The tagged series reads back on its own, at its seconds.
        let log = read_log(&path).unwrap();
        let series = &log.tagged[SEND_LATENESS_TAG];
        assert_eq!(
            series
                .iter()
                .map(|(s, h)| (*s, h.len()))
                .collect::<Vec<_>>(),
            vec![(2_000_000, 3), (2_000_001, 2)]
        );
        let late_total = log.total_of(SEND_LATENESS_TAG).unwrap();
        assert_eq!(late_total.len(), 5);
        assert_eq!(
            late_total.min(),
            0,
            "zero lateness is recorded, not dropped"
        );
        assert!(late_total.max() >= 50_000);
        // A tag the format cannot hold is refused, not written as a broken line.
        let bad = write_series(
            &path,
            &lat,
            &[Tagged {
                tag: "send lateness",
                intervals: &late,
            }],
            start,
        );
        assert!(bad.unwrap_err().to_string().contains("tag"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_log_of_tagged_lines_alone_has_no_latency() {
        let dir = temp_dir("only-tagged");
        let path = dir.join("run.hlog");
        let late = histogram(&[5]);
        write_series(
            &path,
            &[],
            &[Tagged {
                tag: SEND_LATENESS_TAG,
                intervals: &[&late],
            }],
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
        assert!(read(&path).unwrap_err().contains("no interval histograms"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

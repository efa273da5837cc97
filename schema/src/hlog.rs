//! HdrHistogram interval logs (`load-gen run --hlog`): one compressed histogram of corrected latency
//! per measured second, in microseconds. Written by load-gen; read by `load-gen merge` and by the
//! report's percentile-spectrum charts.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

/// The histogram every latency is recorded in: 1 µs to 60 s, 3 significant digits. Logs written
/// and read with these bounds can be added exactly.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Write an interval log (V2 compressed, with the version, StartTime and legend lines that
/// HdrHistogram's HistogramLogProcessor reads): `intervals[i]` covers second i after
/// `window_start`, the wall-clock time the measured window opened. Written atomically.
pub fn write(
    path: &Path,
    intervals: &[&Histogram<u64>],
    window_start: SystemTime,
) -> std::io::Result<()> {
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
    writeln!(
        buf,
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
    )?;
    let mut serializer = V2DeflateSerializer::new();
    {
        let mut writer = IntervalLogWriterBuilder::new()
            .begin_log_with(&mut buf, &mut serializer)
            .map_err(std::io::Error::other)?;
        for (i, h) in intervals.iter().enumerate() {
            writer
                .write_histogram(
                    h,
                    Duration::from_secs(i as u64),
                    Duration::from_secs(1),
                    None,
                )
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        }
    }
    crate::file::write_atomically(path, &buf)
}

/// Read a log: each interval's absolute start (whole seconds since the epoch) and histogram. The
/// error names the file.
pub fn read(path: &Path) -> Result<Vec<(u64, Histogram<u64>)>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut start = Duration::ZERO;
    let mut out = Vec::new();
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
                out.push(((start + h.start_timestamp()).as_secs(), hist));
            }
        }
    }
    if out.is_empty() {
        return Err(format!("{}: no interval histograms in it", path.display()));
    }
    Ok(out)
}

/// The whole measured histogram of one log: its intervals added up.
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

    #[test]
    fn a_log_reads_back_with_its_intervals_at_their_wall_clock_seconds() {
        let dir = std::env::temp_dir().join(format!("schema-hlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.hlog");
        let mut a = new_histogram();
        let mut b = new_histogram();
        for v in [10, 20, 30] {
            a.record(v).unwrap();
        }
        b.record(5_000).unwrap();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        write(&path, &[&a, &b], start).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!((back[0].0, back[0].1.len()), (1_000_000, 3));
        assert_eq!((back[1].0, back[1].1.max()), (1_000_001, b.max()));
        assert_eq!(total(&path).unwrap().len(), 4);
        std::fs::write(&path, b"not a log\n").unwrap();
        assert!(read(&path).unwrap_err().contains("run.hlog"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

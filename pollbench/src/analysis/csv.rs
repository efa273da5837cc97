//! summary.csv: summary.json's cells as a table for a spreadsheet or a data frame, one row per
//! cell and, for every figure, its median and interval in three columns (`msgs_per_s`,
//! `msgs_per_s_lo`, `msgs_per_s_hi`, ...). An empty field is a null (a figure the cell does not
//! have); text is quoted where it holds a comma, a quote or a line break (RFC 4180), and numbers
//! are written in full, as they read back.

use std::fmt::Write as _;
use std::path::Path;

use pollbench_schema::summary::{CellSummary, Summary};

/// The columns before the figures.
const LEADING: [&str; 10] = [
    "id",
    "sweep",
    "column",
    "backend",
    "row",
    "status",
    "reason",
    "rounds",
    "confidence",
    "server_cost_over",
];

/// summary.csv of `summary`: a header line, then a line per cell, in the summary's order.
pub fn summary_csv(summary: &Summary) -> String {
    let mut header: Vec<String> = LEADING.iter().map(|c| c.to_string()).collect();
    for name in CellSummary::FIGURES {
        header.extend([name.to_string(), format!("{name}_lo"), format!("{name}_hi")]);
    }
    let mut out = String::new();
    line(&mut out, header.iter().map(String::as_str));
    for c in &summary.cells {
        let fields = row(c);
        line(&mut out, fields.iter().map(String::as_str));
    }
    out
}

/// A cell's fields, in the header's order.
fn row(c: &CellSummary) -> Vec<String> {
    let figures = c.figures();
    // Every figure a cell has comes from the same rounds: one confidence.
    let confidence = figures.iter().find_map(|(_, e)| e.map(|e| e.confidence));
    let mut fields = vec![
        c.id.clone(),
        c.sweep.clone(),
        c.column.clone(),
        c.backend.clone(),
        c.row.to_string(),
        c.status.to_string(),
        c.reason.clone().unwrap_or_default(),
        c.rounds.to_string(),
        number(confidence),
        c.server_cost_over.clone().unwrap_or_default(),
    ];
    for (_, e) in figures {
        fields.extend([
            number(e.map(|e| e.median)),
            number(e.map(|e| e.lo)),
            number(e.map(|e| e.hi)),
        ]);
    }
    fields
}

/// A number in full (the shortest text that reads back as the same f64); empty for none.
fn number(value: Option<f64>) -> String {
    value
        .filter(|v| v.is_finite())
        .map_or(String::new(), |v| v.to_string())
}

/// Append one record: the fields, quoted where they must be, separated by commas, and a newline.
fn line<'a>(out: &mut String, fields: impl Iterator<Item = &'a str>) {
    for (i, field) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if field.contains([',', '"', '\n', '\r']) {
            let _ = write!(out, "\"{}\"", field.replace('"', "\"\""));
        } else {
            out.push_str(field);
        }
    }
    out.push('\n');
}

/// Write summary.csv of run directory `dir`, atomically (a reader finds the old file or the new).
pub fn write(dir: &Path, summary: &Summary) -> Result<(), String> {
    let path = dir.join("summary.csv");
    pollbench_schema::file::write_atomically(&path, summary_csv(summary).as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::summary::tests::cell;
    use pollbench_schema::results::CellStatus;
    use pollbench_schema::summary::Estimate;

    /// The records of a CSV text, each its fields, read as RFC 4180 says (quoted fields, quotes
    /// doubled inside them).
    fn records(text: &str) -> Vec<Vec<String>> {
        let mut records = Vec::new();
        let (mut record, mut field) = (Vec::new(), String::new());
        let mut chars = text.chars().peekable();
        let mut quoted = false;
        while let Some(ch) = chars.next() {
            match (quoted, ch) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                (true, '"') => quoted = false,
                (true, ch) => field.push(ch),
                (false, '"') if field.is_empty() => quoted = true,
                (false, ',') => record.push(std::mem::take(&mut field)),
                (false, '\n') => {
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                (false, ch) => field.push(ch),
            }
        }
        assert!(field.is_empty() && record.is_empty(), "ends with a newline");
        records
    }

    fn summary(cells: Vec<CellSummary>) -> Summary {
        Summary {
            schema: pollbench_schema::summary::SCHEMA.into(),
            method: String::new(),
            cells,
            verdicts: Vec::new(),
            pairs_judged: Vec::new(),
        }
    }

    /// Labels and reasons with spaces, commas, quotes and line breaks read back as they were;
    /// a figure a cell lacks is three empty fields; numbers are written in full.
    #[test]
    fn labels_with_commas_and_quotes_read_back_and_a_null_is_empty() {
        let at = |median: f64, lo: f64, hi: f64| {
            Some(Estimate {
                median,
                lo,
                hi,
                confidence: 0.96875,
            })
        };
        let ok = CellSummary {
            msgs_per_s: at(20_001.333333333332, 19_000.0, 21_000.5),
            p99_us: at(81.0, 75.0, 0.1 + 0.2),
            server_cost_over: Some("measured window".into()),
            ..cell("s-epoll-c10", "s", r#"epoll "fast", edge"#, 10)
        };
        let failed = CellSummary {
            status: CellStatus::Failed,
            reason: Some("load-gen: \"connect\" refused,\ntwice".into()),
            rounds: 0,
            ..cell("s-poll-c10", "s", "poll 4KiB", 10)
        };
        let text = summary_csv(&summary(vec![ok.clone(), failed]));
        let rows = records(&text);
        assert_eq!(rows.len(), 3, "{text}");
        let header = &rows[0];
        assert_eq!(
            header[..13].join(","),
            "id,sweep,column,backend,row,status,reason,rounds,confidence,server_cost_over,\
             msgs_per_s,msgs_per_s_lo,msgs_per_s_hi"
        );
        assert_eq!(header.len(), LEADING.len() + 3 * ok.figures().len());
        assert!(rows.iter().all(|r| r.len() == header.len()), "{text}");
        let field = |row: &[String], name: &str| {
            row[header.iter().position(|h| h == name).unwrap()].clone()
        };
        assert_eq!(field(&rows[1], "column"), r#"epoll "fast", edge"#);
        assert_eq!(field(&rows[1], "msgs_per_s"), "20001.333333333332");
        assert_eq!(field(&rows[1], "p99_us_hi"), "0.30000000000000004");
        assert_eq!(field(&rows[1], "confidence"), "0.96875");
        assert_eq!(field(&rows[1], "server_cost_over"), "measured window");
        assert_eq!(field(&rows[1], "p50_us"), "");
        assert_eq!(
            field(&rows[2], "reason"),
            "load-gen: \"connect\" refused,\ntwice"
        );
        assert_eq!(field(&rows[2], "status"), "failed");
        assert_eq!(field(&rows[2], "rounds"), "0");
        assert_eq!(field(&rows[2], "msgs_per_s_lo"), "");
        assert_eq!(field(&rows[2], "confidence"), "");
        // As written: quoted only where needed, quotes doubled.
        assert!(
            text.lines().nth(1).unwrap().starts_with(
                r#"s-epoll-c10,s,"epoll ""fast"", edge",epoll,10,ok,,6,0.96875,measured window,20001.333333333332,19000,21000.5,"#
            ),
            "{text}"
        );
        // Without cells: the header alone, the same one.
        let empty = summary_csv(&summary(Vec::new()));
        assert_eq!(empty, format!("{}\n", text.lines().next().unwrap()));
    }
}

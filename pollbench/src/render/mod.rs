//! What a reader sees: report.md and its sections (`report`), and the SVG charts (`sweep_charts` lays
//! out a sweep's, `charts` draws them).

pub mod charts;
pub mod report;
pub mod sweep_charts;

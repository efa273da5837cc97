//! What a run's data say: intervals and paired judgements (`stats`), summary.json (`summary`), its
//! verdicts (`verdicts`) and summary.csv (`csv`), two runs
//! compared cell by cell (`compare`), and repeated runs tallied (`calibration`).

pub mod calibration;
pub mod compare;
pub mod csv;
pub mod stats;
pub mod summary;
pub mod verdicts;

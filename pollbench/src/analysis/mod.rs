//! What a run's data say: intervals and paired judgements (`stats`), summary.json (`summary`) and its
//! verdicts (`verdicts`), and two runs
//! compared cell by cell (`compare`).

pub mod compare;
pub mod stats;
pub mod summary;
pub mod verdicts;

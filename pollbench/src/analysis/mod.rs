//! What a run's data say: intervals and verdicts (`stats`), summary.json (`summary`), and two runs
//! compared cell by cell (`compare`).

pub mod compare;
pub mod stats;
pub mod summary;

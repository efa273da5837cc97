//! Running a suite: the suite file and the cells it expands to, the run's directory and rounds, one cell's
//! processes and outcome, the binaries it runs, and what it records of the machine.

pub mod binaries;
pub mod cell;
pub mod clients;
pub mod disturbance;
pub mod external;
pub mod machine;
pub mod process;
pub mod runner;
pub mod suite;

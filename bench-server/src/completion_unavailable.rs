//! `--backend io_uring_completion` where there is no io_uring (every system but Linux): the
//! backend is listed, and refused with the reason, as any backend this machine lacks.

use std::io;

use crate::cli::Config;
use crate::running::Running;

/// Why completion mode cannot run here, in the words `--capabilities` and a refused start use.
fn reason() -> String {
    format!(
        "--backend io_uring_completion is not available here: io_uring is Linux's, and this is {}",
        std::env::consts::OS
    )
}

/// Never a ring setup here: the one-line reason.
pub fn probe(_fixed_files: bool, _batch: bool) -> Result<Vec<String>, String> {
    Err(reason())
}

/// Unreachable through the command line (its check refuses the backend first); an error all the
/// same.
pub fn start(_cfg: &Config) -> io::Result<Running> {
    Err(io::Error::new(io::ErrorKind::Unsupported, reason()))
}

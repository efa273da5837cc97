//! This machine's answers to the command-line check ([`Probes`]): what a poller backend can do
//! here, and what a completion ring gets here.

use poller::BackendKind;

use crate::cli::{Args, Config, Probes};

/// The backend's capabilities, or why it cannot run here.
pub fn poller(kind: BackendKind) -> Result<poller::Capabilities, String> {
    kind.capabilities()
        .map_err(|e| format!("--backend {kind} is not available here: {e}"))
}

/// This machine's probes: each asks the kernel when called.
pub fn here() -> Probes<'static> {
    Probes {
        poller: &poller,
        completion: &crate::completion_loop::probe,
    }
}

impl Args {
    /// Check the combination on this machine; the error is the one line printed before exiting
    /// with status 2.
    pub fn into_config(self) -> Result<Config, String> {
        self.into_config_with(&here())
    }
}

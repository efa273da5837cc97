//! The suite runner's child processes (bench-server, `load-gen run`) are
//! [`pollbench_common::process::Running`]: drained while they run, waited for with a deadline,
//! killed on drop. Here they are also killed on SIGINT/SIGTERM/SIGHUP to the runner and from the panic
//! hook (which runs even with `panic = "abort"`, where no destructor does; it also deletes the
//! network namespaces the process made).

use std::sync::Once;

pub use pollbench_common::process::{interrupted, Running, WaitEnd};

/// Install the SIGINT/SIGTERM flag and the panic hook that kills every child. Once per process.
pub fn install_cleanup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SIGHUP too: an external server runs in a process group of its own, which a closing
        // terminal does not hang up, so the runner must stop it.
        for signal in [
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ] {
            let _ = signal_hook::flag::register(signal, interrupted().clone());
        }
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            pollbench_common::process::kill_all();
            crate::place::netns::remove_leftovers();
            default(info);
        }));
    });
}

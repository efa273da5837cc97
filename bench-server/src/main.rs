//! Placeholder: the bench-server binary is not written yet (see the project's open issues).

fn main() {
    eprintln!("bench-server: not implemented yet; only the poller crate exists so far");
    std::process::exit(2);
}

//! Placeholder: the load-gen binary is not written yet (see the project's open issues).

fn main() {
    eprintln!("load-gen: not implemented yet; only the poller crate exists so far");
    std::process::exit(2);
}

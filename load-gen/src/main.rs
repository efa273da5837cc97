//! load-gen: drives thousands of connections against an echo server, verifies every echoed byte,
//! and records latency in HdrHistograms, closed loop or open loop. See `load-gen run --help`.

mod cli;
mod connect;
mod measure;
mod merge;
mod progress;
mod results;
mod run;
mod stream;
mod worker;

use cli::{Cli, Command, MergeArgs};

fn main() {
    let cli: Cli = pollbench_common::parse_args_or_exit("load-gen");
    let code = match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Merge(args) => run_merge(args),
    };
    std::process::exit(code);
}

fn run_merge(args: MergeArgs) -> i32 {
    match merge::merge(&args.files) {
        Err(e) => {
            eprintln!("load-gen: {e}");
            1
        }
        Ok(m) => {
            print!("{}", merge::summary(&m));
            if let Some(note) = &m.note {
                eprintln!("load-gen: {note}");
            }
            if let Some(path) = &args.json {
                if let Err(e) = pollbench_schema::file::write_json_atomically(path, &m) {
                    eprintln!("load-gen: cannot write {}: {e}", path.display());
                    return 1;
                }
            }
            0
        }
    }
}

//! The `loadgen` binary: parses the command line and runs the chosen mode.
//! Exit status: 0 done, 1 a run got no response at all, 2 bad usage or setup.

use clap::Parser;
use loadgen::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    loadgen::sys::install_interrupt_handler();
    let result = match &cli.command {
        Command::Worker => loadgen::procs::child_main().map(|_| 0),
        command => {
            // The soft open-file limit is a convention; the hard one is the ceiling.
            loadgen::limits::raise_nofile();
            match command {
                Command::Run(a) => loadgen::run::main(a),
                Command::Search(a) => loadgen::search::main(a),
                Command::Compare(a) => loadgen::compare::main(a),
                Command::Hold(a) => loadgen::hold::main(a),
                Command::Worker => unreachable!(),
            }
        }
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    }
}

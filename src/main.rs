//! The `quorumlog` command: cluster setup, running a node, and operating a cluster.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = quorumlog::cli::Cli::parse();
    match quorumlog::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quorumlog: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

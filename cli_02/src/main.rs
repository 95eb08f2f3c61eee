//! `cli_02`: One HTTP/1.1 exchange with the pp API over a raw TCP stream, written by hand.
//!
//! Only its command line exists so far: it describes itself and exits.

use clap::{CommandFactory, Parser};

/// One HTTP/1.1 exchange with the pp API over a raw TCP stream, written by hand.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> std::process::ExitCode {
    Cli::parse();
    match Cli::command().print_help() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cli_02: cannot write the help text: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}

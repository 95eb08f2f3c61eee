//! `pp_backend_api`: The pp REST API over PostgreSQL.
//!
//! Only its command line exists so far: it describes itself and exits.

use clap::{CommandFactory, Parser};

/// The pp REST API over PostgreSQL.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> std::process::ExitCode {
    Cli::parse();
    match Cli::command().print_help() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pp_backend_api: cannot write the help text: {error}");
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

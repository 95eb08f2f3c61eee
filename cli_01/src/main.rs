//! `cli_01`: Queries and drives pp over its HTTP API or straight from PostgreSQL.
//!
//! Only its command line exists so far: it describes itself and exits.

use clap::{CommandFactory, Parser};

/// Queries and drives pp over its HTTP API or straight from PostgreSQL.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> std::process::ExitCode {
    Cli::parse();
    match Cli::command().print_help() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cli_01: cannot write the help text: {error}");
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

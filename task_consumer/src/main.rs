//! `task_consumer`: Turns pp work demands from RabbitMQ into computed, event-logged work, and sweeps API-created work.
//!
//! Only its command line exists so far: it describes itself and exits.

use clap::{CommandFactory, Parser};

/// Turns pp work demands from RabbitMQ into computed, event-logged work, and sweeps API-created work.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> std::process::ExitCode {
    Cli::parse();
    match Cli::command().print_help() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("task_consumer: cannot write the help text: {error}");
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

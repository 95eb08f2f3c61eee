//! `task_producer`: Publishes pp work demands to RabbitMQ, on a schedule or in a burst.
//!
//! Only its command line exists so far: it describes itself and exits.

use clap::{CommandFactory, Parser};

/// Publishes pp work demands to RabbitMQ, on a schedule or in a burst.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> std::process::ExitCode {
    Cli::parse();
    match Cli::command().print_help() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("task_producer: cannot write the help text: {error}");
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

//! `task_consumer`: turns pp work demands from RabbitMQ into computed, event-logged work, and
//! sweeps API-created work. Runs until SIGINT or SIGTERM, then finishes and acks what it took.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use task_consumer::settings::Settings;

/// Turns pp work demands from RabbitMQ into computed, event-logged work, and sweeps API-created
/// work.
///
/// Example: task_consumer run --prefetch 512 --workers 4 --sweep-every 5s
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume demands and sweep until SIGINT/SIGTERM (a second signal stops at once).
    ///
    /// Example: task_consumer run --queue pp_work_queue --metrics-addr 127.0.0.1:9187
    Run(Box<Settings>),
}

#[tokio::main]
async fn main() -> ExitCode {
    pp_lib::logging::init();
    if let Err(error) = pp_lib::config::load_dotenv() {
        eprintln!("task_consumer: error: {error}");
        return ExitCode::FAILURE;
    }
    let Command::Run(settings) = Cli::parse().command;
    let shutdown = pp_lib::shutdown::on_signals();
    let outcome = match task_consumer::start(*settings, shutdown).await {
        Ok(running) => running.stopped().await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("task_consumer: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn settings_parse_and_bad_values_are_refused() {
        let cli = Cli::try_parse_from([
            "task_consumer",
            "run",
            "--prefetch",
            "10",
            "--batch-size",
            "5",
            "--metrics-addr",
            "off",
            "--sweep-every",
            "0",
        ])
        .expect("valid flags");
        let Command::Run(settings) = cli.command;
        assert_eq!(settings.consumer.prefetch, 10);
        assert_eq!(settings.consumer.batch_size, 5);
        assert_eq!(settings.metrics_addr.0, None);
        assert!(settings.sweeper.every.is_zero());
        for bad in [
            vec!["task_consumer", "run", "--batch-size", "0"],
            vec!["task_consumer", "run", "--metrics-addr", "nowhere"],
            vec!["task_consumer", "run", "--workers", "0"],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?}");
        }
    }
}

//! `task_producer`: publishes pp work demands to RabbitMQ, on a schedule (`run`, the default)
//! or all at once (`burst`). The work is in the library; here the settings are read, the
//! command runs until it ends or SIGINT/SIGTERM stops it, and its outcome becomes the exit code.

use std::process::ExitCode;

use clap::Parser;
use task_producer::burst::{self, BurstOutcome};
use task_producer::settings::{Cli, Command};

/// Exit code when the broker could not be reached at all.
const EXIT_UNREACHABLE: u8 = 3;

#[tokio::main]
async fn main() -> ExitCode {
    pp_lib::logging::init();
    if let Err(error) = pp_lib::config::load_dotenv() {
        eprintln!("task_producer: error: {error}");
        return ExitCode::FAILURE;
    }
    let command = Cli::parse()
        .into_command()
        .unwrap_or_else(|error| error.exit());
    let shutdown = pp_lib::shutdown::on_signals();
    match command {
        Command::Run(settings) => {
            match task_producer::schedule::run_until_stopped(settings, shutdown).await {
                Ok(_) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("task_producer: error: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Burst(settings) => match burst::publish_burst(settings, shutdown).await {
            BurstOutcome::Unreachable(error) => {
                eprintln!("task_producer: error: {error}");
                ExitCode::from(EXIT_UNREACHABLE)
            }
            BurstOutcome::Complete(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            BurstOutcome::Interrupted(report) => {
                println!("{report}");
                eprintln!("task_producer: error: interrupted before every demand was published");
                ExitCode::FAILURE
            }
            BurstOutcome::Failed(report, error) => {
                println!("{report}");
                eprintln!("task_producer: error: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

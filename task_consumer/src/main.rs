//! `task_consumer`: turns pp work demands from RabbitMQ into computed, event-logged work, and
//! sweeps API-created work. `run` (the default) runs until SIGINT or SIGTERM, then finishes and
//! acks what it took; `sweep` sweeps once and prints a summary line.

use std::process::ExitCode;

use clap::Parser;
use task_consumer::settings::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    pp_lib::logging::init();
    if let Err(error) = pp_lib::config::load_dotenv() {
        eprintln!("task_consumer: error: {error}");
        return ExitCode::FAILURE;
    }
    let command = Cli::parse()
        .into_command()
        .unwrap_or_else(|error| error.exit());
    let shutdown = pp_lib::shutdown::on_signals();
    let outcome = match command {
        Command::Run(settings) => match task_consumer::start(*settings, shutdown).await {
            Ok(running) => running.stopped().await,
            Err(error) => Err(error),
        },
        Command::Sweep(settings) => task_consumer::sweep_once(*settings, shutdown)
            .await
            .map(|report| println!("{report}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("task_consumer: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

//! `pp_backend_api`: the pp REST API. Reads its settings, builds the server, serves until SIGINT
//! or SIGTERM, then finishes the requests in flight.

use std::process::ExitCode;

use clap::Parser;
use pp_backend_api::settings::Settings;
use pp_backend_api::startup::{Application, shutdown_signal};

#[tokio::main]
async fn main() -> ExitCode {
    pp_lib::logging::init();
    if let Err(error) = pp_lib::config::load_dotenv() {
        eprintln!("pp_backend_api: error: {error}");
        return ExitCode::FAILURE;
    }
    let settings = Settings::parse();
    let outcome = match Application::build(settings).await {
        Ok(application) => application.run_until_stopped(shutdown_signal()).await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("pp_backend_api: {error:#}");
            eprintln!("pp_backend_api: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

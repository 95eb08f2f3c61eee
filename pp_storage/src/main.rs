//! `pp_storage`: creates, migrates, inspects, verifies and resets pp's PostgreSQL database, and
//! checks that the services pp runs on answer. What each command does is in
//! `pp_storage::commands`.

use std::process::ExitCode;

use clap::Parser;
use pp_lib::config::load_dotenv;
use pp_storage::cli::Cli;

fn main() -> ExitCode {
    pp_lib::logging::init();
    match load_dotenv()
        .map_err(anyhow::Error::from)
        .and_then(|()| pp_storage::commands::run(Cli::parse()))
    {
        Ok(code) => code,
        Err(error) => {
            eprintln!("pp_storage: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

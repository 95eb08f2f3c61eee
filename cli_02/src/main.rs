//! `cli_02`: one HTTP/1.1 exchange with the pp API over a raw TCP stream, written by hand.
//!
//! The work is in the library; here the arguments are parsed (usage errors exit 2), the exchange
//! is run, and its outcome becomes the exit code listed in `--help`.

use std::{io::Write, process::ExitCode};

use clap::Parser;
use cli_02::{Cli, error::exit_code_for_status};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    match cli_02::run(&cli, &mut out, &mut err) {
        Ok(status) => ExitCode::from(exit_code_for_status(status)),
        Err(error) => {
            // Nothing is left to tell if stderr itself is gone.
            let _ = writeln!(err, "cli_02: error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

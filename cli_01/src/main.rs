//! `cli_01`: queries and drives pp over its HTTP API or straight from PostgreSQL.
//!
//! The work is in the library; here a `.env` is read, the arguments are parsed (usage errors exit
//! 2), the command is run, and its outcome becomes the exit code listed in `--help`.

use std::io::{ErrorKind, Write};
use std::process::ExitCode;

use clap::Parser;
use cli_01::Cli;
use cli_01::error::EXIT_FAILURE;
use pp_lib::error::redact_secrets;

fn main() -> ExitCode {
    // Nothing is left to tell if stderr itself is gone: its write errors are ignored.
    let mut err = std::io::stderr().lock();
    if let Err(error) = pp_lib::config::load_dotenv() {
        let _ = writeln!(err, "cli_01: error: {}", redact_secrets(&error.to_string()));
        return ExitCode::from(EXIT_FAILURE);
    }
    let cli = Cli::parse();
    match cli_01::run(&cli, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`cli_01 search api- | head -1`): stop quietly, as Unix tools do.
        Err(cli_01::error::Error::Output(error)) if error.kind() == ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(error) => {
            let _ = writeln!(err, "cli_01: error: {}", error.one_line());
            ExitCode::from(error.exit_code())
        }
    }
}

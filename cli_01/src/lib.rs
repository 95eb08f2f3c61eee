//! cli_01: queries and drives pp over its HTTP API or straight from PostgreSQL, with the same
//! answers either way.
//!
//! A short tour, in the order a command runs ([`run`] runs one from start to end):
//!
//! - [`cli`]: the command line (clap derive, the shared settings of pp_lib flattened in); every
//!   value is checked there, so bad usage exits 2 before anything is asked.
//! - [`backend`]: [`backend::Via`], the [`backend::Backend`] trait and its two implementations:
//!   `http` (reqwest, each call bounded by `--timeout`) and `db` (pp_lib's queries, the API's
//!   own). Both speak pp_lib's wire contract.
//! - [`output`]: [`output::OutputFormat`]; the answer as the API's JSON, or as an aligned table.
//! - [`error`]: [`error::Error`], one line on stderr, and the exit code of every outcome.
//!
//! The arrows run one way: `run` uses the three; `cli` names `Via` and `OutputFormat` as the
//! types of its flags; `backend` and `output` know nothing of the command line.

pub mod backend;
pub mod cli;
pub mod error;
pub mod output;

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;
use pp_lib::contract::DemandProgress;

pub use crate::cli::Cli;
use crate::cli::{Command, Query};
use crate::error::Error;
use crate::output::{Answer, OutputFormat};

/// Runs the command and prints its answer on `out`.
pub fn run(cli: &Cli, out: &mut impl Write) -> Result<(), Error> {
    let query = match &cli.command {
        Command::Completions { shell } => {
            return write_completions(*shell, out).map_err(Error::Output);
        }
        Command::Query(query) => query,
    };
    let format = cli.output.unwrap_or_else(OutputFormat::for_stdout);
    let mut backend = backend::connect(cli.via, cli.target())?;
    let answer = match query {
        Query::Get { id } => Answer::Work(backend.get_work(*id)?),
        Query::Search(search) => Answer::Works(backend.search_works(&search.query())?),
        Query::Create { add_up_to } => Answer::Work(backend.create_work(*add_up_to)?),
        Query::Demand { add_up_to } => Answer::Demand(backend.create_demand(*add_up_to)?),
        Query::Follow { message_id, wait } => match backend.follow_demand(*message_id, *wait)? {
            DemandProgress::Recorded(work) => Answer::Work(work),
            DemandProgress::Waiting(status) => Answer::DemandStatus(status),
        },
        Query::Events { id } => Answer::Events(backend.list_events(*id)?),
        Query::Stats => Answer::Stats(backend.read_stats()?),
    };
    output::write_answer(out, &answer, format).map_err(Error::Output)
}

/// Writes the completion script. It is built in memory first: clap_complete panics when its
/// writer fails, and a closed stdout must be an error, not a panic.
fn write_completions(shell: Shell, out: &mut impl Write) -> std::io::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "cli_01", &mut script);
    out.write_all(&script)?;
    out.flush()
}

//! cli_01: queries and drives pp over its HTTP API or straight from PostgreSQL, with the same
//! answers either way.
//!
//! A short tour, in the order a command runs:
//!
//! - [`cli`]: the command line (clap derive, the shared settings of pp_lib flattened in); every
//!   value is checked there, so bad usage exits 2 before anything is asked. [`cli::run`] runs a
//!   command from start to end.
//! - [`backend`]: the [`backend::Backend`] trait and its two implementations: `http` (reqwest,
//!   each call bounded by `--timeout`) and `db` (pp_lib's queries, the API's own).
//! - [`output`]: the answer as the API's JSON, or as an aligned table.
//! - [`error`]: [`error::Error`], one line on stderr, and the exit code of every outcome.

pub mod backend;
pub mod cli;
pub mod error;
pub mod output;

pub use cli::{Cli, run};

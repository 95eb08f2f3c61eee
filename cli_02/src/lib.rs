//! cli_02: one HTTP/1.1 exchange over a raw `TcpStream`, written by hand to show the protocol.
//!
//! A short tour, in the order an exchange runs:
//!
//! - [`cli`]: the command line; it validates the method, target and headers, so bad usage exits 2
//!   before a byte is sent.
//! - [`request`]: builds the exact request bytes (pure).
//! - [`client`]: the exchange over TCP: resolve, connect, write, then "parse if complete, else
//!   read more", every step under one deadline.
//! - [`response`]: the parser, a pure function over the bytes received so far, with every limit
//!   a named const.
//! - [`output`]: prints the status line and the body (JSON re-indented), or with `--raw` the
//!   bytes as they went over the wire.
//! - [`error`]: [`error::Error`], one line on stderr, and the exit code of every outcome.

pub mod cli;
pub mod client;
pub mod error;
pub mod output;
pub mod request;
pub mod response;

pub use cli::{Cli, run};

//! What can go wrong in an exchange, as one line for stderr and an exit code for scripts.
//!
//! Usage errors never get here: clap reports them and exits 2 before anything is sent. The
//! exit codes are listed once, in [`EXIT_STATUS`], which `--help` shows.

use std::{fmt, io, time::Duration};

use crate::response::ResponseError;

/// The exit codes, as `--help` shows them.
pub const EXIT_STATUS: &str = "\
Exit status:
  0  the response status is below 400 (1xx, 2xx, 3xx)
  1  the output could not be written
  2  usage error (bad flag, method, path or header)
  3  connection failure (name not resolved, refused, unreachable, reset)
  4  the response status is 4xx
  5  the response status is 5xx
  6  timed out (resolving, connecting, sending, or waiting for the response)
  7  malformed response (the reason is printed)";

/// The exit code for a response: scripts can tell client errors from server errors.
pub fn exit_code_for_status(status: u16) -> u8 {
    match status {
        ..400 => 0,
        400..500 => 4,
        _ => 5,
    }
}

/// Where in the exchange something went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Resolving,
    Connecting,
    Sending,
    /// No byte of the response yet: the server may be hung, or not an HTTP server at all.
    Waiting,
    Reading,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Resolving => "resolving the address",
            Self::Connecting => "connecting",
            Self::Sending => "sending the request",
            Self::Waiting => "waiting for the response",
            Self::Reading => "reading the response",
        })
    }
}

/// An exchange that did not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot resolve {addr}: {source}")]
    Resolve { addr: String, source: io::Error },
    #[error("{addr} resolves to no address")]
    NoAddress { addr: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("timed out after {timeout:?} {stage}")]
    Timeout { stage: Stage, timeout: Duration },
    /// Distinct from a clean close: the peer aborted the connection.
    #[error("connection reset by the server while {stage}")]
    Reset { stage: Stage },
    #[error("connection failed while {stage}: {source}")]
    Io { stage: Stage, source: io::Error },
    #[error("malformed response: {0}")]
    Malformed(#[from] ResponseError),
    #[error("cannot write the output: {0}")]
    Output(#[source] io::Error),
}

impl Error {
    /// The process exit code for this error (see [`EXIT_STATUS`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Output(_) => 1,
            Self::Resolve { .. }
            | Self::NoAddress { .. }
            | Self::Connect { .. }
            | Self::Reset { .. }
            | Self::Io { .. } => 3,
            Self::Timeout { .. } => 6,
            Self::Malformed(_) => 7,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_their_class() {
        let cases = [
            (100, 0),
            (200, 0),
            (204, 0),
            (304, 0),
            (399, 0),
            (400, 4),
            (404, 4),
            (499, 4),
            (500, 5),
            (599, 5),
        ];
        for (status, code) in cases {
            assert_eq!(exit_code_for_status(status), code, "status {status}");
        }
    }

    #[test]
    fn a_timeout_says_what_it_was_waiting_for() {
        let error = Error::Timeout {
            stage: Stage::Waiting,
            timeout: Duration::from_millis(500),
        };

        assert_eq!(
            error.to_string(),
            "timed out after 500ms waiting for the response"
        );
        assert_eq!(error.exit_code(), 6);
    }
}

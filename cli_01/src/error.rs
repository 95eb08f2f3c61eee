//! What can go wrong, as one line for stderr and an exit code for scripts.
//!
//! Usage errors never get here: clap reports them and exits 2 before anything is asked. Both
//! ways of asking (HTTP and the database) map their failures onto the same few codes, so a script
//! can tell "no such work" (4) from "nothing answers" (3) whichever way it went. The codes are
//! listed once, in [`EXIT_STATUS`], which `--help` shows.

use std::io;

use pp_lib::error::redact_secrets;

/// Anything else: a query that failed, an answer that made no sense, output that could not be
/// written.
pub const EXIT_FAILURE: u8 = 1;
/// Bad usage: clap's own code, kept for every usage error.
pub const EXIT_USAGE: u8 = 2;
/// The API or the database could not be reached (refused, timed out, or the API's database is
/// down).
pub const EXIT_UNREACHABLE: u8 = 3;
/// The work asked for does not exist.
pub const EXIT_NOT_FOUND: u8 = 4;

/// The exit codes, as `--help` shows them.
pub const EXIT_STATUS: &str = "\
Exit status:
  0  done; the answer is on stdout
  1  any other failure (the reason is printed)
  2  usage error (bad flag or value)
  3  the API or the database cannot be reached (refused, timed out, or the API's database is down)
  4  no work with that id";

/// A command that did not produce its answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The work asked for does not exist; the text is the API's (and the same over the database).
    #[error("{0}")]
    NotFound(String),
    /// Nothing answered at the API's address, or not in time. The URL is already redacted.
    #[error("cannot reach the API at {url}: {reason}")]
    ApiUnreachable { url: String, reason: String },
    /// The API answered 503: its database is down. The URL is already redacted.
    #[error("the API at {url} cannot serve now: {message}")]
    ApiUnavailable { url: String, message: String },
    /// The API refused the request or failed (any other status than 2xx, 404 and 503).
    #[error("the API answered {status}: {message}")]
    Api { status: u16, message: String },
    /// The API answered 2xx with a body that is not what the route documents.
    #[error("unexpected answer from the API: {0}")]
    BadAnswer(String),
    /// The API key cannot be sent (its text is never shown).
    #[error("the API key (--api-key, PP_API_KEY) must be printable ASCII without spaces")]
    BadApiKey,
    /// The HTTP exchange failed in a way that is not about reaching the server.
    #[error("HTTP request failed: {0}")]
    Http(String),
    /// Straight from the database: connecting or a query failed.
    #[error(transparent)]
    Database(#[from] pp_lib::Error),
    #[error("cannot write the output: {0}")]
    Output(#[source] io::Error),
}

impl Error {
    /// The process exit code for this error (see [`EXIT_STATUS`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NotFound(_) => EXIT_NOT_FOUND,
            Error::Database(pp_lib::Error::NotFound { .. }) => EXIT_NOT_FOUND,
            Error::ApiUnreachable { .. } | Error::ApiUnavailable { .. } => EXIT_UNREACHABLE,
            Error::BadApiKey => EXIT_USAGE,
            Error::Database(pp_lib::Error::Connect { .. } | pp_lib::Error::Pool(_)) => {
                EXIT_UNREACHABLE
            }
            Error::Database(pp_lib::Error::Database(error)) if is_connection_lost(error) => {
                EXIT_UNREACHABLE
            }
            Error::Api { .. }
            | Error::BadAnswer(_)
            | Error::Http(_)
            | Error::Database(_)
            | Error::Output(_) => EXIT_FAILURE,
        }
    }

    /// The message for stderr: one line, with every password in it shown as `***`.
    pub fn one_line(&self) -> String {
        let text = redact_secrets(&self.to_string());
        text.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Error::Database(pp_lib::Error::from(error))
    }
}

/// True when a query failed because the database went away (a restart, a dropped connection),
/// not because of the query.
fn is_connection_lost(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error as Diesel};
    matches!(
        error,
        Diesel::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _
        )
    )
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorKind, Error as Diesel};

    use super::*;

    fn diesel_error(kind: DatabaseErrorKind) -> Error {
        Error::from(Diesel::DatabaseError(kind, Box::new("gone".to_owned())))
    }

    #[test]
    fn each_kind_of_failure_has_its_exit_code() {
        let cases = [
            (Error::NotFound("no work with id 7".into()), 4),
            (
                Error::Database(pp_lib::Error::NotFound {
                    what: "work",
                    id: "7".to_owned(),
                }),
                4,
            ),
            (
                Error::ApiUnreachable {
                    url: "http://127.0.0.1:1".into(),
                    reason: "refused".into(),
                },
                3,
            ),
            (
                Error::ApiUnavailable {
                    url: "http://127.0.0.1:3000".into(),
                    message: "database unavailable, retry later".into(),
                },
                3,
            ),
            (
                Error::Database(pp_lib::Error::connect("postgres://h/db", "refused")),
                3,
            ),
            (Error::Database(pp_lib::Error::Pool("timed out".into())), 3),
            (diesel_error(DatabaseErrorKind::ClosedConnection), 3),
            (diesel_error(DatabaseErrorKind::UniqueViolation), 1),
            (Error::from(Diesel::NotFound), 1),
            (
                Error::Api {
                    status: 400,
                    message: "bad".into(),
                },
                1,
            ),
            (Error::BadAnswer("not JSON".into()), 1),
            (Error::Http("builder".into()), 1),
            (Error::Output(io::ErrorKind::BrokenPipe.into()), 1),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error:?}");
        }
        assert_eq!(EXIT_USAGE, 2, "clap's code for usage errors");
    }

    #[test]
    fn messages_are_one_line_without_passwords() {
        let error = Error::Database(pp_lib::Error::connect(
            "postgres://pp:topsecret@db/pp",
            "connection refused\n\tIs the server running on that host?",
        ));
        let api = Error::ApiUnreachable {
            url: "http://u:hunter2@api".into(),
            reason: "error sending request for url (http://u:hunter2@api/work/7)\ncaused by".into(),
        };

        for (error, secret) in [(error, "topsecret"), (api, "hunter2")] {
            let line = error.one_line();
            assert_eq!(line.lines().count(), 1, "{line}");
            assert!(!line.contains(secret), "{line}");
            assert!(line.contains(":***@"), "{line}");
        }
    }

    #[test]
    fn the_help_lists_every_exit_code() {
        for code in [EXIT_FAILURE, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_NOT_FOUND] {
            assert!(
                EXIT_STATUS.contains(&format!("\n  {code}  ")),
                "{code} in {EXIT_STATUS}"
            );
        }
    }
}

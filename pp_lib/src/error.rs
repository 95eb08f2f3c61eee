//! The library's errors, and the error policy of the whole workspace.
//!
//! Policy:
//!
//! - The library returns typed errors: [`Error`] for anything that touches configuration, the
//!   database or input, [`InputError`] for input that can never succeed (it is what a 400 answer or
//!   a dead-lettered message reports). Queries return Diesel's `QueryResult` and callers lift it
//!   with `?` into [`Error`].
//! - Binaries use `anyhow` and add `.context("failed to …")` where they handle an error; the API
//!   maps [`Error`] onto HTTP statuses (input → 4xx, not found → 404, the rest → an opaque 500).
//! - A failure is logged once, where it is handled, never where it is passed on.
//! - No message carries a secret: every text that comes from a connection attempt goes through
//!   [`redact_secrets`], so a password in a URL or in `password=` is shown as `***`.

use std::fmt;

/// Input that can never be processed, however often it is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("add_up_to must be zero or more, got {0}")]
    NegativeAddUpTo(i64),
    #[error("add_up_to must be at most {max}, got {0}", max = i32::MAX)]
    AddUpToTooLarge(String),
    #[error("malformed work demand: {0}")]
    MalformedDemand(String),
    /// A request that breaks the API's contract (a body, a path or a query parameter); the text
    /// says which part and why.
    #[error("{0}")]
    Request(String),
}

/// Every error the library returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is missing or does not parse.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Input that can never succeed.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A row that was asked for by its key does not exist.
    #[error("no {what} with id {id}")]
    NotFound { what: &'static str, id: String },
    /// The database could not be reached. Both fields are already redacted.
    #[error("cannot connect to PostgreSQL at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The pool gave no connection in time. The text is already redacted.
    #[error("no database connection available: {0}")]
    Pool(String),
    /// Concurrent writers kept a row changing under us; trying again later will pass.
    #[error("{0}")]
    Contention(String),
    /// RabbitMQ could not be reached, or dropped the connection. The text is already redacted.
    #[error("RabbitMQ: {0}")]
    Broker(String),
    /// A query failed.
    #[error("database query failed: {0}")]
    Database(#[from] diesel::result::Error),
    /// A task panicked or was cancelled: a bug, reported instead of taking its caller down.
    #[error("internal error: {0}")]
    Bug(String),
}

impl Error {
    /// Builds a [`Error::Connect`] with the password taken out of the URL and of the reason.
    pub fn connect(url: &str, reason: impl fmt::Display) -> Self {
        Error::Connect {
            url: redact_secrets(url),
            reason: one_line(&redact_secrets(&reason.to_string())),
        }
    }

    /// True for failures that may pass if tried again later (the database restarting, a pool
    /// exhausted, a deadlock or a timeout), false for input, configuration, missing rows and
    /// statements the database refuses for what they carry (a constraint, a data exception).
    pub fn is_transient(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error as Diesel};
        match self {
            Error::Connect { .. } | Error::Pool(_) | Error::Contention(_) | Error::Broker(_) => {
                true
            }
            Error::Database(Diesel::DatabaseError(kind, info)) => {
                // A read-only transaction is a primary that was demoted (a failover in
                // progress): the next connection reaches the new one.
                matches!(
                    kind,
                    DatabaseErrorKind::ClosedConnection
                        | DatabaseErrorKind::SerializationFailure
                        | DatabaseErrorKind::UnableToSendCommand
                        | DatabaseErrorKind::ReadOnlyTransaction
                ) || is_transient_message(info.message())
            }
            Error::Database(Diesel::BrokenTransactionManager) => true,
            Error::Config(_)
            | Error::Input(_)
            | Error::NotFound { .. }
            | Error::Database(_)
            | Error::Bug(_) => false,
        }
    }
}

/// The start of PostgreSQL's messages for failures that say nothing about the statement's
/// input: a timeout or a cancellation (57014, 55P03), a deadlock (40P01), the server going away
/// (57P01–57P03) or running out of memory or disk (53xxx). Diesel does not expose the SQLSTATE
/// of these (it reports them as `Unknown`), so the message tells.
const TRANSIENT_MESSAGES: [&str; 9] = [
    "canceling statement due to",
    "deadlock detected",
    "could not obtain lock",
    "terminating connection",
    "the database system is",
    "out of memory",
    "could not extend file",
    "could not write to file",
    "could not write block",
];

fn is_transient_message(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    TRANSIENT_MESSAGES
        .iter()
        .any(|start| message.starts_with(start))
}

impl Error {
    /// Builds a [`Error::Broker`] from what went wrong, without secrets, on one line.
    pub fn broker(what: impl fmt::Display) -> Self {
        Error::Broker(one_line(&redact_secrets(&what.to_string())))
    }
}

impl From<diesel::r2d2::PoolError> for Error {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        Error::Pool(redact_secrets(&error.to_string()))
    }
}

/// Joins a multi-line message (libpq writes hints on their own lines) into one line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Replaces every password in `text` with `***`: the one in `scheme://user:password@host` URLs,
/// and the value of `password=` (libpq's keyword form and URL query parameters).
pub fn redact_secrets(text: &str) -> String {
    let text = redact_url_passwords(text);
    redact_password_parameters(&text)
}

fn redact_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let authority_start = scheme_end + 3;
        out.push_str(&rest[..authority_start]);
        rest = &rest[authority_start..];
        let authority_len = rest
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"')
            .unwrap_or(rest.len());
        let authority = &rest[..authority_len];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &rest[authority_len..];
    }
    out.push_str(rest);
    out
}

fn redact_password_parameters(text: &str) -> String {
    const KEY: &str = "password=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = find_ascii_case_insensitive(rest, KEY) {
        let value_start = found + KEY.len();
        out.push_str(&rest[..value_start]);
        out.push_str("***");
        let value = &rest[value_start..];
        let value_len = if let Some(quoted) = value.strip_prefix('\'') {
            quoted.find('\'').map_or(value.len(), |end| end + 2)
        } else {
            value
                .find(|c: char| c == '&' || c == '#' || c.is_whitespace() || c == '"')
                .unwrap_or(value.len())
        };
        rest = &value[value_len..];
    }
    out.push_str(rest);
    out
}

fn find_ascii_case_insensitive(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_everywhere() {
        let cases = [
            (
                "postgres://pp:s3cret@db:5432/pp",
                "postgres://pp:***@db:5432/pp",
            ),
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            (
                "failed: postgres://u:p@ss@h/db and redis://:pw@r:6379",
                "failed: postgres://u:***@h/db and redis://:***@r:6379",
            ),
            (
                "postgres://u@h/db?sslmode=require&password=hunter2&x=1",
                "postgres://u@h/db?sslmode=require&password=***&x=1",
            ),
            (
                "host=h user=u password='a b c' dbname=d",
                "host=h user=u password=*** dbname=d",
            ),
            ("PASSWORD=x", "PASSWORD=***"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_secrets(input), expected, "redacting {input:?}");
        }
    }

    #[test]
    fn text_without_secrets_is_unchanged() {
        for input in [
            "postgres://postgres@127.0.0.1:5432/personalproject",
            "http://127.0.0.1:3000/work/7",
            "connection refused",
            "",
            "://",
        ] {
            assert_eq!(redact_secrets(input), input, "redacting {input:?}");
        }
    }

    #[test]
    fn failures_that_may_pass_are_told_from_those_that_never_will() {
        use diesel::result::{DatabaseErrorKind as Kind, Error as Diesel};
        let database = |kind: Kind, message: &str| {
            Error::Database(Diesel::DatabaseError(kind, Box::new(message.to_owned())))
        };
        let transient = [
            database(Kind::ClosedConnection, "server closed the connection"),
            database(Kind::SerializationFailure, "could not serialize access"),
            database(
                Kind::ReadOnlyTransaction,
                "cannot execute INSERT in a read-only transaction",
            ),
            database(Kind::Unknown, "deadlock detected"),
            database(
                Kind::Unknown,
                "canceling statement due to statement timeout",
            ),
            database(Kind::Unknown, "canceling statement due to lock timeout"),
            database(
                Kind::Unknown,
                "terminating connection due to administrator command",
            ),
            database(
                Kind::Unknown,
                "could not extend file \"base/1/2\": No space left on device",
            ),
            Error::Pool("timed out waiting for connection".to_owned()),
            Error::broker("connection reset"),
        ];
        for error in &transient {
            assert!(error.is_transient(), "{error} may pass");
        }
        let permanent = [
            database(Kind::CheckViolation, "violates check constraint"),
            database(Kind::UniqueViolation, "duplicate key value"),
            database(Kind::NotNullViolation, "null value in column"),
            database(Kind::Unknown, "integer out of range"),
            database(Kind::Unknown, "add_up_to 4242 is refused"),
            Error::Input(InputError::NegativeAddUpTo(-1)),
        ];
        for error in &permanent {
            assert!(!error.is_transient(), "{error} never passes");
        }
    }

    #[test]
    fn connect_errors_never_show_the_password() {
        let error = Error::connect(
            "postgres://pp:topsecret@db/pp",
            "connection to postgres://pp:topsecret@db/pp refused",
        );
        let message = error.to_string();
        assert!(!message.contains("topsecret"), "{message}");
        assert!(message.contains("postgres://pp:***@db/pp"), "{message}");
    }
}

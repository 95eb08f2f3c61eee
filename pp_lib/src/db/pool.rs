//! The connection pool (r2d2 through Diesel) and single connections, with bounded waits.
//!
//! Every connection, pooled or not, is opened with libpq's `connect_timeout`, so an unreachable
//! server fails in bounded time instead of hanging, and gets the configured `statement_timeout`,
//! so a runaway query cannot hold a connection forever.
//!
//! Connections are not pinged at checkout (that would double the round trips of a small
//! query). Instead [`with_connection`] watches the errors: a connection the server closed
//! (a restart, a failover, a terminated backend) is marked broken, and the pool drops it when it
//! comes back instead of lending it again. After a database restart, each pooled connection
//! fails at most one unit of work, with a transient error the caller may retry.

use std::time::Duration;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, HandleError, Pool, PooledConnection};

use crate::config::{DatabaseConfig, SecretUrl};
use crate::error::{Error, redact_secrets};

pub type PgPool = Pool<ConnectionManager<PgConnection>>;
pub type PooledPg = PooledConnection<ConnectionManager<PgConnection>>;

/// Idle connections above the minimum are closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Connections are renewed after this long, so server-side state never grows without bound.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// Builds the pool and waits (at most `connect_timeout`) for its first connection, so a wrong URL
/// or a stopped server is reported at start-up, not at the first request.
pub fn build_pool(config: &DatabaseConfig) -> Result<PgPool, Error> {
    pool_builder(config)
        .build(manager(config))
        .map_err(|error| Error::connect(config.url.expose(), error))
}

/// Builds the pool without connecting: for servers that must start, and report themselves not
/// ready, while the database is still down.
pub fn build_pool_lazy(config: &DatabaseConfig) -> PgPool {
    pool_builder(config).build_unchecked(manager(config))
}

/// Opens one connection, outside any pool (migrations, administration).
pub fn establish(url: &SecretUrl, connect_timeout: Duration) -> Result<PgConnection, Error> {
    let target = libpq_target(url.expose(), connect_timeout);
    PgConnection::establish(&target).map_err(|error| Error::connect(url.expose(), error))
}

/// Runs `work` with a connection from `pool`. When it fails because the server closed the
/// connection, the connection is marked broken so the pool discards it rather than lending it
/// out again. Use it for every unit of work on a pool.
pub fn with_connection<T>(
    pool: &PgPool,
    work: impl FnOnce(&mut PgConnection) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut conn = pool.get()?;
    let outcome = work(&mut conn);
    if let Err(Error::Database(error)) = &outcome {
        discard_if_closed(&mut conn, error);
    }
    outcome
}

/// Marks `conn` broken when `error` says the server closed it; r2d2 drops broken connections
/// when they are returned.
pub fn discard_if_closed(conn: &mut PgConnection, error: &diesel::result::Error) {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    use diesel::result::{DatabaseErrorKind, Error as Diesel};
    if let Diesel::DatabaseError(
        DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
        _,
    ) = error
    {
        // Diesel's pool integration treats a connection whose transaction state is in error as
        // broken; that is the one lever it gives to retire a connection.
        AnsiTransactionManager::transaction_manager_status_mut(conn).set_in_error();
    }
}

/// Asks the server for the smallest answer: true liveness of a connection.
pub fn ping(conn: &mut PgConnection) -> diesel::QueryResult<()> {
    conn.batch_execute("select 1")
}

fn manager(config: &DatabaseConfig) -> ConnectionManager<PgConnection> {
    ConnectionManager::new(libpq_target(config.url.expose(), config.connect_timeout))
}

fn pool_builder(config: &DatabaseConfig) -> diesel::r2d2::Builder<ConnectionManager<PgConnection>> {
    Pool::builder()
        .max_size(config.pool_size.max(1))
        // Connections are opened as they are needed; one is kept warm.
        .min_idle(Some(1))
        .connection_timeout(config.connect_timeout)
        .idle_timeout(Some(IDLE_TIMEOUT))
        .max_lifetime(Some(MAX_LIFETIME))
        // No ping per checkout: closed connections are found by with_connection instead.
        .test_on_check_out(false)
        .connection_customizer(Box::new(SessionSettings {
            statement_timeout: config.statement_timeout,
        }))
        .error_handler(Box::new(RedactingErrorHandler))
}

/// The connection string libpq gets for `url`: what the URL sets is kept; what it leaves out
/// comes from [`libpq_defaults`], unless a `PG…` environment variable sets it.
fn libpq_target(url: &str, timeout: Duration) -> String {
    with_defaults(url, timeout, |variable| {
        std::env::var_os(variable).is_some()
    })
}

/// [`libpq_target`], with `in_environment` telling whether an environment variable is set.
fn with_defaults(url: &str, timeout: Duration, in_environment: impl Fn(&str) -> bool) -> String {
    let mut url = url.to_owned();
    for (key, value) in libpq_defaults(&url, timeout) {
        let set_by_environment = LIBPQ_ENVIRONMENT
            .iter()
            .any(|(param, variable)| *param == key && in_environment(variable));
        if !has_param(&url, key) && !set_by_environment {
            let separator = if url.contains('?') { '&' } else { '?' };
            url = format!("{url}{separator}{key}={value}");
        }
    }
    url
}

/// The parameters pp gives libpq when the URL leaves them out:
/// - `connect_timeout` (whole seconds, at least 1), and TCP keepalives with a
///   `tcp_user_timeout`, so a server that silently stops answering fails a query in bounded
///   time instead of hanging it;
/// - `gssencmode=disable`: libpq's default tries Kerberos encryption first, which costs every
///   connection a credential lookup, and Kerberos' library tears its locks down when the
///   process exits, aborting a thread that is still opening a connection then;
/// - `sslmode=disable` for a server on this machine (a loopback address, `localhost`, or a
///   Unix socket), where TLS protects nothing: libpq's default `prefer` would spend a
///   handshake on every connection, and OpenSSL frees its state when the process exits, so a
///   pool still opening a connection in the background crashes the exit (seen: one exit in
///   four, with two threads connecting). A server elsewhere keeps libpq's default (the URL
///   should ask for `sslmode=verify-full`).
fn libpq_defaults(url: &str, timeout: Duration) -> Vec<(&'static str, String)> {
    let mut defaults = vec![
        ("connect_timeout", timeout.as_secs().max(1).to_string()),
        ("keepalives_idle", "30".to_owned()),
        ("tcp_user_timeout", "60000".to_owned()),
        ("gssencmode", "disable".to_owned()),
    ];
    if on_this_machine(url) {
        defaults.push(("sslmode", "disable".to_owned()));
    }
    defaults
}

/// The environment variables libpq reads for the parameters of [`libpq_defaults`].
const LIBPQ_ENVIRONMENT: [(&str, &str); 3] = [
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("gssencmode", "PGGSSENCMODE"),
    ("sslmode", "PGSSLMODE"),
];

/// Whether the URL's query sets `key`.
fn has_param(url: &str, key: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some(key))
    })
}

/// Whether `url` names a server on this machine: a loopback address, `localhost`, or none (a
/// Unix socket). A `host` or `hostaddr` in the query may name another: then it does not.
fn on_this_machine(url: &str) -> bool {
    if has_param(url, "host") || has_param(url, "hostaddr") {
        return false;
    }
    match url
        .parse::<SecretUrl>()
        .and_then(|url| url.host_and_port(5432))
    {
        Ok((host, _)) => {
            host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|address| address.is_loopback())
        }
        Err(_) => false,
    }
}

/// Session settings applied to every new pooled connection.
#[derive(Debug)]
struct SessionSettings {
    statement_timeout: Duration,
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for SessionSettings {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        let millis = self.statement_timeout.as_millis();
        conn.batch_execute(&format!("set statement_timeout = {millis}"))
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// r2d2 reports failed connection attempts made in the background here: log them once each,
/// without secrets. (r2d2's default handler logs the raw text.)
#[derive(Debug)]
struct RedactingErrorHandler;

impl HandleError<diesel::r2d2::Error> for RedactingErrorHandler {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        log::warn!(
            "database connection attempt failed: {}",
            redact_secrets(&error.to_string())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The target with no `PG…` variable set.
    fn target(url: &str, timeout: Duration) -> String {
        with_defaults(url, timeout, |_| false)
    }

    #[test]
    fn timeouts_are_added_once() {
        const REST: &str = "keepalives_idle=30&tcp_user_timeout=60000&gssencmode=disable";
        let second = Duration::from_secs(1);
        assert_eq!(
            target("postgres://h/db", Duration::from_secs(5)),
            format!("postgres://h/db?connect_timeout=5&{REST}")
        );
        assert_eq!(
            target("postgres://h/db?sslmode=require", second),
            format!("postgres://h/db?sslmode=require&connect_timeout=1&{REST}")
        );
        assert_eq!(
            target("postgres://h/db?connect_timeout=9", second),
            format!("postgres://h/db?connect_timeout=9&{REST}")
        );
        assert_eq!(
            target("postgres://h/db", Duration::from_millis(10)),
            format!("postgres://h/db?connect_timeout=1&{REST}")
        );
    }

    #[test]
    fn a_server_on_this_machine_is_reached_without_tls_unless_the_url_asks() {
        let second = Duration::from_secs(1);
        for url in [
            "postgres://pp:pw@127.0.0.1:5432/db",
            "postgres://localhost/db",
            "postgres://LOCALHOST:5433/db",
            "postgres://[::1]:5432/db",
            "postgres://127.0.0.2/db",
            "postgres:///db",
        ] {
            assert!(target(url, second).ends_with("&sslmode=disable"), "{url}");
        }
        for url in [
            "postgres://db.example/db",
            "postgres://10.0.0.7/db",
            "postgres://[2001:db8::1]/db",
            "postgres://127.0.0.1/db?sslmode=require",
            "postgres://127.0.0.1/db?host=db.example",
            "postgres://localhost/db?hostaddr=10.0.0.7",
        ] {
            let target = target(url, second);
            assert_eq!(
                target.matches("sslmode=").count(),
                url.matches("sslmode=").count(),
                "{url}"
            );
        }
    }

    #[test]
    fn what_the_environment_sets_is_left_to_libpq() {
        let target = with_defaults("postgres://127.0.0.1/db", Duration::from_secs(3), |name| {
            ["PGSSLMODE", "PGGSSENCMODE", "PGCONNECT_TIMEOUT"].contains(&name)
        });
        assert_eq!(
            target,
            "postgres://127.0.0.1/db?keepalives_idle=30&tcp_user_timeout=60000"
        );
    }

    #[test]
    fn a_parameter_is_found_by_its_whole_name() {
        assert!(has_param("postgres://h/db?a=1&sslmode=disable", "sslmode"));
        assert!(!has_param("postgres://h/db?xsslmode=1", "sslmode"));
        assert!(!has_param("postgres://h/sslmode=1", "sslmode"));
    }
}

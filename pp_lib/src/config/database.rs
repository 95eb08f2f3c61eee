//! PostgreSQL: where it is, and how the pool treats it.

use std::time::Duration;

use crate::config::{
    MAX_CONNECT_TIMEOUT, MAX_STATEMENT_TIMEOUT, SecretUrl, defaults, duration_within,
};

/// The database every binary uses unless told otherwise: the one `make setup` creates.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/personalproject";

pub(crate) fn parse_connect_timeout(text: &str) -> Result<Duration, String> {
    duration_within(text, Duration::from_millis(1), MAX_CONNECT_TIMEOUT)
}

pub(crate) fn parse_statement_timeout(text: &str) -> Result<Duration, String> {
    duration_within(text, Duration::ZERO, MAX_STATEMENT_TIMEOUT)
}

/// A pool as large as the machine can keep busy: a few connections per core.
pub fn default_pool_size() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    u32::try_from(cores.saturating_mul(4))
        .unwrap_or(u32::MAX)
        .clamp(4, 64)
}

/// PostgreSQL: where it is and how the pool treats it.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseConfig {
    /// PostgreSQL URL, e.g. postgres://user:password@host:5432/database.
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        hide_env_values = true
    )]
    pub url: SecretUrl,
    /// Most connections the pool opens (default: four per core, at least 4).
    #[arg(long = "db-pool-size", env = "PP_DB_POOL_SIZE", default_value_t = default_pool_size(),
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub pool_size: u32,
    /// How long to wait for a connection, new or pooled, before failing (e.g. 5s, 500ms).
    #[arg(
        long = "db-connect-timeout",
        env = "PP_DB_CONNECT_TIMEOUT",
        default_value = "5s",
        value_parser = parse_connect_timeout
    )]
    pub connect_timeout: Duration,
    /// Longest a single SQL statement may run before PostgreSQL cancels it (0 = no limit; at
    /// most 24d20h31m23s647ms, PostgreSQL's own limit).
    #[arg(
        long = "db-statement-timeout",
        env = "PP_DB_STATEMENT_TIMEOUT",
        default_value = "30s",
        value_parser = parse_statement_timeout
    )]
    pub statement_timeout: Duration,
}

impl DatabaseConfig {
    /// Settings for `url` with every other value at its default.
    pub fn for_url(url: SecretUrl) -> Self {
        DatabaseConfig { url, ..defaults() }
    }
}

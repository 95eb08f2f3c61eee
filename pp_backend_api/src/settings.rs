//! The API server's settings: flags, else environment variables, else these defaults.

use std::time::Duration;

use clap::Parser;
use pp_lib::config::{CacheConfig, DatabaseConfig, HttpConfig, RedisConfig, parse_duration};

use crate::dashboard::DashboardConfig;
use crate::rate_limit::RateLimitConfig;
use crate::relay::RelayConfig;

/// Largest request body accepted by default: a work request is a few dozen bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;

/// One worker per core: the handlers do no blocking work themselves.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The pp REST API over PostgreSQL.
///
/// Example: pp_backend_api --http-addr 127.0.0.1:3000
#[derive(Debug, Clone, Parser)]
#[command(name = "pp_backend_api", version)]
pub struct Settings {
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// HTTP worker threads (default: one per core).
    #[arg(long = "http-workers", env = "PP_HTTP_WORKERS", default_value_t = default_workers())]
    pub workers: usize,
    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long = "http-max-body", env = "PP_HTTP_MAX_BODY", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// On SIGINT or SIGTERM, how long requests in flight may take to finish.
    #[arg(
        long = "http-shutdown-timeout",
        env = "PP_HTTP_SHUTDOWN_TIMEOUT",
        default_value = "30s",
        value_parser = parse_duration
    )]
    pub shutdown_timeout: Duration,
    /// How long an Idempotency-Key of POST /work is remembered.
    #[arg(
        long = "idempotency-ttl",
        env = "PP_IDEMPOTENCY_TTL",
        default_value = "24h",
        value_parser = parse_duration
    )]
    pub idempotency_ttl: Duration,
    #[command(flatten)]
    pub relay: RelayConfig,
    #[command(flatten)]
    pub redis: RedisConfig,
    #[command(flatten)]
    pub cache: CacheConfig,
    #[command(flatten)]
    pub rate_limit: RateLimitConfig,
    #[command(flatten)]
    pub dashboard: DashboardConfig,
}

impl Settings {
    /// A server on a free port of 127.0.0.1 over `database`, every other setting at its
    /// default: no outbox relay, no Redis, no rate limit. Tests start from here.
    pub fn local(database: DatabaseConfig) -> Self {
        Settings {
            http: HttpConfig {
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            },
            database,
            workers: default_workers(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            shutdown_timeout: Duration::from_secs(5),
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
            relay: RelayConfig::off(),
            redis: RedisConfig::default(),
            cache: CacheConfig::default(),
            rate_limit: RateLimitConfig::off(),
            dashboard: DashboardConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        Settings::command().debug_assert();
    }
}

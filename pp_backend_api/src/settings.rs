//! The API server's settings: flags, else environment variables, else these defaults.

use std::time::Duration;

use clap::Parser;
use pp_lib::config::{
    CacheConfig, DatabaseConfig, HttpConfig, RedisConfig, duration_setting,
    positive_duration_setting,
};

use crate::auth::AuthConfig;
use crate::dashboard::DashboardConfig;
use crate::janitor::RetentionConfig;
use crate::origin::OriginConfig;
use crate::rate_limit::RateLimitConfig;
use crate::relay::RelayConfig;
use crate::waiters::WaitConfig;

/// Largest request body accepted by default: a work request is a few dozen bytes.
pub const DEFAULT_MAX_BODY_BYTES: u32 = 16 * 1024;

/// One worker per core: the handlers do no blocking work themselves.
pub fn default_workers() -> u16 {
    std::thread::available_parallelism()
        .map_or(2, |n| u16::try_from(n.get()).unwrap_or(u16::MAX))
        .clamp(1, 1024)
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
    #[arg(long = "http-workers", env = "PP_HTTP_WORKERS", default_value_t = default_workers(),
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: u16,
    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long = "http-max-body", env = "PP_HTTP_MAX_BODY", default_value_t = DEFAULT_MAX_BODY_BYTES,
          value_parser = clap::value_parser!(u32).range(1..=(64 << 20)))]
    pub max_body_bytes: u32,
    /// On SIGINT or SIGTERM, how long requests in flight may take to finish.
    #[arg(
        long = "http-shutdown-timeout",
        env = "PP_HTTP_SHUTDOWN_TIMEOUT",
        default_value = "30s",
        value_parser = duration_setting
    )]
    pub shutdown_timeout: Duration,
    /// Longest a request waits for a database thread or connection; past it, it is answered 503
    /// with Retry-After and never run (load shedding).
    #[arg(
        long = "http-deadline",
        env = "PP_HTTP_DEADLINE",
        default_value = "2s",
        value_parser = positive_duration_setting
    )]
    pub deadline: Duration,
    /// How long an Idempotency-Key of POST /work is remembered.
    #[arg(
        long = "idempotency-ttl",
        env = "PP_IDEMPOTENCY_TTL",
        default_value = "24h",
        value_parser = duration_setting
    )]
    pub idempotency_ttl: Duration,
    #[command(flatten)]
    pub relay: RelayConfig,
    #[command(flatten)]
    pub retention: RetentionConfig,
    #[command(flatten)]
    pub redis: RedisConfig,
    #[command(flatten)]
    pub cache: CacheConfig,
    #[command(flatten)]
    pub rate_limit: RateLimitConfig,
    #[command(flatten)]
    pub origin: OriginConfig,
    #[command(flatten)]
    pub dashboard: DashboardConfig,
    #[command(flatten)]
    pub auth: AuthConfig,
    #[command(flatten)]
    pub wait: WaitConfig,
}

impl Settings {
    /// A server on a free port of 127.0.0.1 over `database`, with no outbox relay and every
    /// other setting at its default (no Redis, no rate limit). Tests start from here.
    pub fn local(database: DatabaseConfig) -> Self {
        Settings {
            http: HttpConfig {
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            },
            database,
            relay: RelayConfig::off(),
            ..pp_lib::config::defaults()
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

    #[test]
    fn local_settings_are_the_flags_defaults_on_a_free_port_without_a_relay() {
        let database = DatabaseConfig::for_url("postgres://h/db".parse().expect("a URL"));

        let local = Settings::local(database);

        assert_eq!(local.http.addr.port(), 0);
        assert!(!local.relay.enabled);
        assert_eq!(local.deadline, Duration::from_secs(2));
        assert_eq!(local.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(local.idempotency_ttl, Duration::from_secs(24 * 3_600));
        assert_eq!(local.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(
            local.dashboard.sweep_window.duration,
            Duration::from_secs(6 * 3_600)
        );
        assert_eq!(local.retention.outbox, Duration::from_secs(24 * 3_600));
        assert!(local.rate_limit.quota().is_none());
        assert_eq!(local.redis.url, None);
    }
}

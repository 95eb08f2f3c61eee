//! Redis beside PostgreSQL: where it is, and how long cached works live. Optional: without
//! `REDIS_URL` there is no cache and no rate limit.

use std::time::Duration;

use crate::config::{SecretUrl, defaults, duration_within};

/// The local Redis that `make setup` starts and the tests use. The binaries use Redis only when
/// `REDIS_URL` is set.
pub const DEFAULT_LOCAL_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Redis: optional; without it there is no cache and no rate limit.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisConfig {
    /// Redis URL, e.g. redis://127.0.0.1:6379/0 (unset: no cache, no rate limit).
    #[arg(
        id = "redis_url",
        long = "redis-url",
        env = "REDIS_URL",
        hide_env_values = true
    )]
    pub url: Option<SecretUrl>,
    /// Text every Redis key starts with, so deployments (or tests) can share one Redis.
    #[arg(long = "redis-prefix", env = "PP_REDIS_PREFIX", default_value = "pp", value_parser = parse_redis_prefix)]
    pub prefix: String,
    /// Longest wait for one Redis call; past it the request is answered without Redis.
    #[arg(long = "redis-timeout", env = "PP_REDIS_TIMEOUT", default_value = "50ms", value_parser = parse_redis_timeout)]
    pub timeout: Duration,
    /// After repeated Redis failures, how long to answer without trying it before probing again.
    #[arg(long = "redis-breaker-pause", env = "PP_REDIS_BREAKER_PAUSE", default_value = "5s", value_parser = parse_breaker_pause)]
    pub breaker_pause: Duration,
}

/// How long cached works live (used only with Redis).
#[derive(Debug, Clone, clap::Args)]
pub struct CacheConfig {
    /// Time to live of a done work in Redis (a done work never changes).
    #[arg(long = "cache-ttl", env = "PP_CACHE_TTL", default_value = "1h", value_parser = parse_cache_ttl)]
    pub ttl: Duration,
    /// Time to live of a pending work: the longest a cached work can be stale if Redis misses
    /// the update that finishes it.
    #[arg(long = "cache-pending-ttl", env = "PP_CACHE_PENDING_TTL", default_value = "2s", value_parser = parse_cache_ttl)]
    pub pending_ttl: Duration,
    /// Done works each process also keeps in memory: the ones read last (up to twice as many
    /// are held while older ones age out; 0: none).
    #[arg(long = "cache-memory-works", env = "PP_CACHE_MEMORY_WORKS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
    pub memory_works: u32,
}

impl CacheConfig {
    /// The work cache's settings.
    #[cfg(feature = "cache")]
    pub fn work_cache_settings(&self) -> crate::cache::WorkCacheSettings {
        crate::cache::WorkCacheSettings {
            ttl: self.ttl,
            pending_ttl: self.pending_ttl,
            local_capacity: self.memory_works as usize,
        }
    }
}

fn parse_redis_prefix(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 64 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be 1 to 64 printable ASCII characters without spaces".to_owned());
    }
    Ok(text.to_owned())
}

fn parse_redis_timeout(text: &str) -> Result<Duration, String> {
    duration_within(text, Duration::from_millis(1), Duration::from_secs(60))
}

fn parse_breaker_pause(text: &str) -> Result<Duration, String> {
    duration_within(text, Duration::from_millis(1), Duration::from_secs(3_600))
}

fn parse_cache_ttl(text: &str) -> Result<Duration, String> {
    duration_within(
        text,
        Duration::from_millis(1),
        Duration::from_secs(30 * 86_400),
    )
}

impl Default for RedisConfig {
    /// No Redis; the other values at their defaults.
    fn default() -> Self {
        defaults()
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        defaults()
    }
}

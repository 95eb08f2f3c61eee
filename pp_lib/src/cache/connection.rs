//! The process's one Redis connection, guarded so that Redis can only ever make things faster,
//! never slower or broken.
//!
//! [`Redis::start`] returns at once; a background task connects (with backoff, for as long as it
//! takes) a redis-rs [`ConnectionManager`]: one multiplexed connection that every task shares and
//! that reconnects by itself. Every call ([`Redis::call`]) is bounded by a timeout and goes through
//! a [`Breaker`]; a call that fails, times out, or is skipped because Redis is down answers
//! `None`, and the caller does what it would do without Redis. An outage is logged once when it
//! starts and once when it ends.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::cache::breaker::{Breaker, Transition};
use crate::config::{RedisConfig, SecretUrl};
use crate::error::{Error, redact_secrets};

/// Longest wait for one connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Waits between connection attempts while Redis cannot be reached at all.
const CONNECT_RETRY_MIN: Duration = Duration::from_millis(200);
const CONNECT_RETRY_MAX: Duration = Duration::from_secs(10);

/// What the Redis calls did, for `/metrics`.
#[derive(Debug, Clone)]
pub struct RedisMetrics {
    /// Calls that failed or timed out, by what they were for (`cache`, `rate_limit`).
    pub errors: IntCounterVec,
    /// Calls not made because the breaker was open.
    pub skipped: IntCounterVec,
    /// 1 while the breaker is open (Redis treated as down), else 0.
    pub breaker_open: IntGauge,
    /// 1 once connected (the connection then reconnects by itself).
    pub connected: IntGauge,
    /// Cache lookups answered from the process's memory (`cache_hits_total{tier="memory"}`).
    pub memory_hits: IntCounter,
    /// Cache lookups answered from Redis (`cache_hits_total{tier="redis"}`).
    pub redis_hits: IntCounter,
    /// Cache lookups that went to PostgreSQL.
    pub cache_misses: IntCounter,
}

impl RedisMetrics {
    /// The instruments, registered in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let errors = IntCounterVec::new(
            Opts::new(
                "redis_errors_total",
                "Redis calls that failed or timed out (answered without Redis)",
            ),
            &["use"],
        )?;
        let skipped = IntCounterVec::new(
            Opts::new(
                "redis_skipped_total",
                "Redis calls not made because the breaker was open",
            ),
            &["use"],
        )?;
        let breaker_open = IntGauge::new(
            "redis_breaker_open",
            "1 while Redis is treated as down and not called",
        )?;
        let connected = IntGauge::new("redis_connected", "1 once the Redis connection is up")?;
        let cache_hits = IntCounterVec::new(
            Opts::new(
                "cache_hits_total",
                "Work lookups answered from a cache, by where (memory, redis)",
            ),
            &["tier"],
        )?;
        let cache_misses =
            IntCounter::new("cache_misses_total", "Work lookups that went to PostgreSQL")?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(skipped.clone()))?;
        registry.register(Box::new(breaker_open.clone()))?;
        registry.register(Box::new(connected.clone()))?;
        registry.register(Box::new(cache_hits.clone()))?;
        registry.register(Box::new(cache_misses.clone()))?;
        Ok(RedisMetrics {
            errors,
            skipped,
            breaker_open,
            connected,
            // Resolved once: a lookup by label on every hit would cost a hash and a lock.
            memory_hits: cache_hits.with_label_values(&["memory"]),
            redis_hits: cache_hits.with_label_values(&["redis"]),
            cache_misses,
        })
    }

    /// Instruments that no registry reads (for processes without `/metrics` and for tests).
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("a new, empty registry takes every instrument")
    }
}

/// What a Redis call is for: labels its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Cache,
    RateLimit,
}

impl Use {
    fn label(self) -> &'static str {
        match self {
            Use::Cache => "cache",
            Use::RateLimit => "rate_limit",
        }
    }
}

/// A shared handle on the process's Redis connection (cheap to clone).
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    manager: OnceLock<ConnectionManager>,
    prefix: String,
    timeout: Duration,
    breaker: Mutex<Breaker>,
    metrics: RedisMetrics,
    url: SecretUrl,
}

impl Redis {
    /// Starts connecting to the configured Redis in the background and returns at once; `None`
    /// when no Redis is configured. Only a malformed URL is an error: an unreachable Redis is an
    /// outage, answered without Redis until it is back. Call from within a tokio runtime.
    pub fn start(config: &RedisConfig, metrics: RedisMetrics) -> Result<Option<Redis>, Error> {
        let Some(url) = &config.url else {
            return Ok(None);
        };
        let client = redis::Client::open(url.expose()).map_err(|error| {
            Error::Config(format!(
                "REDIS_URL {url} is not a Redis URL: {}",
                redact_secrets(&error.to_string())
            ))
        })?;
        let redis = Redis {
            inner: Arc::new(Inner {
                manager: OnceLock::new(),
                prefix: config.prefix.clone(),
                timeout: config.timeout,
                breaker: Mutex::new(Breaker::new(config.breaker_pause)),
                metrics,
                url: url.clone(),
            }),
        };
        tokio::spawn(connect(client, redis.inner.clone()));
        Ok(Some(redis))
    }

    /// The text every key of this deployment starts with.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The metrics this handle counts into.
    pub fn metrics(&self) -> &RedisMetrics {
        &self.inner.metrics
    }

    /// Whether Redis is being treated as down (not connected yet, or the breaker is open).
    pub fn is_degraded(&self) -> bool {
        self.inner.manager.get().is_none() || self.breaker().is_open()
    }

    /// Runs `call` on the shared connection within the timeout. `None` when it fails, times out,
    /// or is skipped because Redis is down: the caller then does without Redis.
    pub async fn call<T, F, Fut>(&self, purpose: Use, call: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let label = purpose.label();
        // Until the first connection is up (the connecting task reports why it is not), and
        // while the breaker is open, Redis is not asked.
        let manager = match self.inner.manager.get() {
            Some(manager) if self.breaker().allow(Instant::now()) => manager.clone(),
            _ => {
                self.inner.metrics.skipped.with_label_values(&[label]).inc();
                return None;
            }
        };
        let outcome = tokio::time::timeout(self.inner.timeout, call(manager))
            .await
            .map_err(|_| format!("no answer within {:?}", self.inner.timeout))
            .and_then(|answer| answer.map_err(|error| error.to_string()));
        let now = Instant::now();
        match outcome {
            Ok(value) => {
                let transition = self.breaker().succeeded(now);
                self.note(transition, None);
                Some(value)
            }
            Err(reason) => {
                self.inner.metrics.errors.with_label_values(&[label]).inc();
                let transition = self.breaker().failed(now);
                self.note(transition, Some(&reason));
                None
            }
        }
    }

    /// Waits until the first connection is up, at most `within`; true when it is.
    pub async fn wait_connected(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.inner.manager.get().is_none() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        // The breaker is plain data, valid after any panic that interrupted its holder.
        self.inner
            .breaker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Logs an outage's start or end and keeps the gauge in step.
    fn note(&self, transition: Option<Transition>, reason: Option<&str>) {
        match transition {
            Some(Transition::Opened) => {
                self.inner.metrics.breaker_open.set(1);
                log::warn!(
                    "Redis {} unavailable ({}): answering without it (cache off, rate limits open) until it is back",
                    self.inner.url,
                    redact_secrets(reason.unwrap_or("failed"))
                );
            }
            Some(Transition::Closed { outage }) => {
                self.inner.metrics.breaker_open.set(0);
                log::info!(
                    "Redis {} answers again after {:.1}s: cache and rate limits back on",
                    self.inner.url,
                    outage.as_secs_f64()
                );
            }
            None => {}
        }
    }
}

/// Connects the manager, retrying with backoff until it succeeds (once connected, redis-rs
/// reconnects it by itself).
async fn connect(client: redis::Client, inner: Arc<Inner>) {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(inner.timeout))
        .set_number_of_retries(2)
        .set_max_delay(CONNECT_RETRY_MAX);
    let mut wait = CONNECT_RETRY_MIN;
    let mut logged = false;
    loop {
        match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
            Ok(manager) => {
                if logged {
                    log::info!("connected to Redis {}", inner.url);
                } else {
                    log::debug!("connected to Redis {}", inner.url);
                }
                inner.metrics.connected.set(1);
                // Set once: this task is the only writer and returns right after.
                let _ = inner.manager.set(manager);
                return;
            }
            Err(error) => {
                if !logged {
                    log::warn!(
                        "cannot connect to Redis {} ({}): answering without it, trying again",
                        inner.url,
                        redact_secrets(&error.to_string())
                    );
                    logged = true;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(CONNECT_RETRY_MAX);
            }
        }
    }
}

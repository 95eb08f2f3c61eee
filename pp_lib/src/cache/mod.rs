//! Redis beside PostgreSQL: a read cache for works and rate limits shared by every replica.
//!
//! PostgreSQL stays the only source of truth; Redis only ever makes answers faster (the
//! [`WorkCache`]) or protects the service ([`RateLimiter`]). It never makes a request fail:
//! every call is bounded and guarded by a breaker ([`Redis`]), and without an answer from Redis
//! a lookup reads PostgreSQL and a rate limit lets the request through.

pub mod breaker;
pub mod connection;
pub mod local;
pub mod rate_limit;
pub mod single_flight;
pub mod works;
pub mod writes;

pub use connection::{Redis, RedisMetrics, Use};
pub use rate_limit::{Decision, Quota, RateLimiter, Verdict};
pub use single_flight::SingleFlight;
pub use works::{WorkCache, WorkCacheSettings, WorkJson, work_json};

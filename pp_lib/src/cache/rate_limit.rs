//! Rate limits shared by every API replica: one Redis key per client, one atomic script per
//! request.
//!
//! The algorithm is GCRA (the generic cell rate algorithm, as in ATM networks and
//! redis-cell): the key holds one number, the client's "theoretical arrival time" (TAT). Each
//! request moves it `1 / rate` later (from now, if it lies in the past); the request is allowed
//! while the TAT stays within `burst / rate` of now. That is a token bucket of `burst` tokens
//! refilled at `rate`, kept exactly in one integer per client: no counters per window (a fixed
//! window lets twice the limit through at its edges) and no sorted set of timestamps per client
//! (a sliding log costs memory in proportion to the limit). The script reads Redis's own clock,
//! so replicas whose clocks disagree still share one limit.

use std::time::Duration;

use redis::Script;

use crate::cache::connection::{Redis, Use};
use crate::config::Rate;

/// KEYS[1]: the client's key. ARGV[1]: microseconds per request (the emission interval).
/// ARGV[2]: the burst, in requests. Returns {allowed (0/1), remaining, microseconds until the
/// next request would be allowed (0 when allowed), microseconds until the burst is whole again}.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local capacity = interval * burst
if new_tat - now > capacity then
  return {0, 0, new_tat - now - capacity, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((capacity - (new_tat - now)) / interval), 0, new_tat - now}
";

/// The limit every client gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    pub rate: Rate,
    /// Requests a client may make at once before the rate applies.
    pub burst: u32,
}

impl Quota {
    /// Microseconds between two requests at the sustained rate (at least one).
    fn interval_micros(&self) -> u64 {
        let micros = 1_000_000.0 / self.rate.per_second();
        if micros.is_finite() && micros >= 1.0 {
            // Bounded above by Rate's own bounds; saturating for safety.
            micros.min(u64::MAX as f64) as u64
        } else {
            1
        }
    }

    /// Seconds for an empty burst to refill: the window the `RateLimit-Policy` header states.
    pub fn window_seconds(&self) -> u64 {
        let seconds = f64::from(self.burst) / self.rate.per_second();
        if seconds.is_finite() {
            seconds.ceil().clamp(1.0, u32::MAX as f64) as u64
        } else {
            u64::from(u32::MAX)
        }
    }
}

/// What the limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests still allowed at once after this one.
    pub remaining: u64,
    /// When refused: how long until a request would be allowed.
    pub retry_after: Duration,
    /// How long until the client's whole burst is available again.
    pub reset: Duration,
}

/// The answer when the limiter could not ask Redis: allowed (fail open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Decided(Decision),
    /// Redis did not answer: the request is let through.
    FailedOpen,
}

/// See the module documentation.
pub struct RateLimiter {
    redis: Redis,
    quota: Quota,
    script: Script,
}

impl RateLimiter {
    pub fn new(redis: Redis, quota: Quota) -> Self {
        RateLimiter {
            redis,
            quota,
            script: Script::new(GCRA),
        }
    }

    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Counts one request of `client` (an opaque, already hashed identity).
    pub async fn check(&self, client: &str) -> Verdict {
        let key = format!("{}:rate:{client}", self.redis.prefix());
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(key)
            .arg(self.quota.interval_micros())
            .arg(self.quota.burst.max(1));
        let answer: Option<(u8, u64, u64, u64)> = self
            .redis
            .call(Use::RateLimit, |mut conn| async move {
                invocation.invoke_async(&mut conn).await
            })
            .await;
        match answer {
            Some((allowed, remaining, retry_after, reset)) => Verdict::Decided(Decision {
                allowed: allowed == 1,
                remaining,
                retry_after: Duration::from_micros(retry_after),
                reset: Duration::from_micros(reset),
            }),
            None => Verdict::FailedOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_the_time_a_burst_takes_to_refill() {
        let quota = Quota {
            rate: "50/s".parse().expect("a rate"),
            burst: 100,
        };
        assert_eq!(quota.window_seconds(), 2);
        assert_eq!(quota.interval_micros(), 20_000);
        let slow = Quota {
            rate: "1/h".parse().expect("a rate"),
            burst: 1,
        };
        assert_eq!(slow.window_seconds(), 3600);
    }
}

//! Rate limits shared by every API replica: one Redis key per client, every request decided by
//! an atomic script in Redis — the requests that arrive together, by one run of it.
//!
//! The algorithm is GCRA (the generic cell rate algorithm, as in ATM networks and
//! redis-cell): the key holds one number, the client's "theoretical arrival time" (TAT). Each
//! request moves it `1 / rate` later (from now, if it lies in the past); the request is allowed
//! while the TAT stays within `burst / rate` of now. That is a token bucket of `burst` tokens
//! refilled at `rate`, kept exactly in one integer per client: no counters per window (a fixed
//! window lets twice the limit through at its edges) and no sorted set of timestamps per client
//! (a sliding log costs memory in proportion to the limit). The script reads Redis's own clock,
//! so replicas whose clocks disagree still share one limit.
//!
//! Asking Redis for every request would cost each one a round trip (about a quarter of the
//! API's throughput, measured). So a process takes a client's tokens from Redis a few at a time
//! — a lease — and spends them locally: tokens are taken from the shared budget before they are
//! spent, so no replica ever admits more than the quota allows. A lease starts at one token
//! (every request decided by Redis: exact for a light client) and doubles each time the client
//! spends it before it expires, up to a tenth of the burst; it lasts one second at most, and what
//! is left of it goes back to Redis with the client's next request. So a busy client costs Redis
//! a call per lease, a light one a call per request; a client can at most be refused a lease's
//! worth of tokens early, per replica, and spend a lease's worth late. A refusal is remembered
//! until its `Retry-After`: a client over its limit costs Redis nothing until then (no token can
//! appear sooner anywhere). A process sends Redis one script run at a time: the requests that
//! arrive meanwhile are decided by the next run, each in turn as if alone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::Script;
use tokio::sync::{mpsc, oneshot};

use crate::cache::connection::{Redis, Use};
use crate::config::Rate;

/// KEYS: one per lease asked for, in arrival order (the same client's key may come several
/// times). ARGV[1]: microseconds per request (the emission interval); ARGV[2]: the burst; then
/// two per key: the tokens wanted, and the unspent tokens of an expired lease given back first.
/// Returns four numbers per key: tokens granted (0 = refused; otherwise from 1 to the wanted
/// number, as many as the bucket holds), tokens remaining after the grant, microseconds until
/// one token would be granted (0 when granted), microseconds until the burst is whole again.
/// Each lease is decided as if alone, one after the other; each client's key is written once.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local capacity = interval * burst
local tats = {}
local out = {}
for i, key in ipairs(KEYS) do
  local want = tonumber(ARGV[1 + 2 * i])
  local give_back = tonumber(ARGV[2 + 2 * i])
  local tat = tats[key]
  if tat == nil then tat = tonumber(redis.call('GET', key)) or now end
  tat = tat - give_back * interval
  if tat < now then tat = now end
  local granted = math.floor((capacity - (tat - now)) / interval)
  if granted > want then granted = want end
  if granted >= 1 then
    tat = tat + granted * interval
    out[#out + 1] = granted
    out[#out + 1] = math.floor((capacity - (tat - now)) / interval)
    out[#out + 1] = 0
  else
    out[#out + 1] = 0
    out[#out + 1] = 0
    out[#out + 1] = tat + interval - now - capacity
  end
  out[#out + 1] = tat - now
  tats[key] = tat
end
for key, tat in pairs(tats) do
  if tat > now then
    redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  else
    redis.call('DEL', key)
  end
end
return out
";

/// The longest a lease lasts before its unspent tokens go back.
const LEASE_TTL: Duration = Duration::from_secs(1);

/// Clients whose leases a process remembers; past it, expired ones are forgotten (their unspent
/// tokens come back to the bucket as it refills).
const MAX_CLIENTS: usize = 10_000;

/// Most requests decided by one run of the script.
const MAX_BATCH: usize = 256;

/// Most requests waiting for a decision; past it (Redis far behind), requests fail open.
const MAX_WAITING: usize = 16_384;

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
    quota: Quota,
    prefix: String,
    /// The most tokens one lease takes: a tenth of the burst, at least one.
    most_per_lease: u64,
    /// By client (the Redis key is the prefix and the client: built only to ask Redis).
    leases: Mutex<HashMap<String, Lease>>,
    requests: mpsc::Sender<Pending>,
}

/// A client's tokens held by this process.
#[derive(Debug, Clone, Copy)]
struct Lease {
    /// Tokens left to spend.
    tokens: u64,
    /// Tokens the next lease asks for.
    size: u64,
    /// Until when the tokens may be spent.
    until: Instant,
    /// What Redis said was left of the burst when the lease was taken.
    remaining: u64,
    /// When the client's burst is whole again.
    whole_at: Instant,
    /// When refused: no token can be had before this.
    refused_until: Option<Instant>,
    /// A lease of `size` is being asked for: the requests that find the lease empty meanwhile
    /// ask for one token each, without growing the next lease.
    asking: bool,
}

/// A lease asked for, waiting for the script's answer.
struct Pending {
    key: String,
    want: u64,
    give_back: u64,
    reply: oneshot::Sender<Option<Grant>>,
}

/// What the script granted.
#[derive(Debug, Clone, Copy)]
struct Grant {
    granted: u64,
    remaining: u64,
    retry_after: Duration,
    reset: Duration,
}

impl RateLimiter {
    /// A limiter over `redis` whose leases are taken, in batches, by a task of its own on the
    /// current tokio runtime (it ends when the limiter is dropped).
    pub fn new(redis: Redis, quota: Quota) -> Self {
        let (requests, waiting) = mpsc::channel(MAX_WAITING);
        let prefix = redis.prefix().to_owned();
        tokio::spawn(decide_in_batches(redis, quota, waiting));
        RateLimiter {
            quota,
            prefix,
            most_per_lease: u64::from(quota.burst / 10).max(1),
            leases: Mutex::new(HashMap::new()),
            requests,
        }
    }

    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Counts one request of `client` (an opaque, already hashed identity): from the client's
    /// lease when it holds a token, else from a new lease taken in Redis.
    pub async fn check(&self, client: &str) -> Verdict {
        let now = Instant::now();
        let (want, give_back) = match self.spend_local(client, now) {
            Spent::Decided(decision) => return Verdict::Decided(decision),
            Spent::Ask { want, give_back } => (want, give_back),
        };
        let (reply, grant) = oneshot::channel();
        let pending = Pending {
            key: format!("{}:rate:{client}", self.prefix),
            want,
            give_back,
            reply,
        };
        if self.requests.try_send(pending).is_err() {
            // So many wait that Redis is far behind: open, as when it does not answer.
            return Verdict::FailedOpen;
        }
        match grant.await.ok().flatten() {
            Some(grant) => Verdict::Decided(self.take_grant(client, want, grant, Instant::now())),
            None => {
                if let Some(lease) = lock(&self.leases).get_mut(client) {
                    lease.asking = false;
                }
                Verdict::FailedOpen
            }
        }
    }

    /// Spends a token of the client's lease, or says what to ask Redis for.
    fn spend_local(&self, client: &str, now: Instant) -> Spent {
        let mut leases = lock(&self.leases);
        let Some(lease) = leases.get_mut(client) else {
            return Spent::Ask {
                want: 1,
                give_back: 0,
            };
        };
        if let Some(until) = lease.refused_until {
            if now < until {
                return Spent::Decided(Decision {
                    allowed: false,
                    remaining: 0,
                    retry_after: until - now,
                    reset: lease.whole_at.saturating_duration_since(now),
                });
            }
            lease.refused_until = None;
        }
        if lease.tokens > 0 && now < lease.until {
            lease.tokens -= 1;
            return Spent::Decided(Decision {
                allowed: true,
                remaining: self.remaining(lease.tokens + lease.remaining),
                retry_after: Duration::ZERO,
                reset: lease.whole_at.saturating_duration_since(now),
            });
        }
        if lease.asking {
            return Spent::Ask {
                want: 1,
                give_back: 0,
            };
        }
        // Spent in time: the client is busy, take more next time; expired unspent: fewer.
        let give_back = if now < lease.until { 0 } else { lease.tokens };
        lease.size = if give_back == 0 {
            (lease.size * 2).min(self.most_per_lease)
        } else {
            (lease.size / 2).max(1)
        };
        lease.tokens = 0;
        lease.asking = true;
        Spent::Ask {
            want: lease.size,
            give_back,
        }
    }

    /// What a client may still do at once, as the headers say it: never more than the burst
    /// (the lease's tokens and the bucket's may overlap while grants are merged).
    fn remaining(&self, tokens: u64) -> u64 {
        tokens.min(u64::from(self.quota.burst))
    }

    /// Keeps what Redis granted but the token this request spends, and decides the request.
    fn take_grant(&self, client: &str, want: u64, grant: Grant, now: Instant) -> Decision {
        let mut leases = lock(&self.leases);
        if leases.len() >= MAX_CLIENTS && !leases.contains_key(client) {
            leases.retain(|_, lease| {
                now < lease.until || lease.refused_until.is_some_and(|t| now < t)
            });
        }
        // A lease is asked for now and then: the client's name is copied only then.
        let lease = leases.entry(client.to_owned()).or_insert(Lease {
            tokens: 0,
            size: want,
            until: now,
            remaining: 0,
            whole_at: now,
            refused_until: None,
            asking: false,
        });
        lease.asking = false;
        lease.whole_at = now + grant.reset;
        lease.remaining = grant.remaining;
        if grant.granted == 0 {
            lease.refused_until = Some(now + grant.retry_after);
            return Decision {
                allowed: false,
                remaining: 0,
                retry_after: grant.retry_after,
                reset: grant.reset,
            };
        }
        // Leases asked for at once by several requests add up.
        lease.tokens += grant.granted - 1;
        lease.until = now + LEASE_TTL;
        Decision {
            allowed: true,
            remaining: self.remaining(lease.tokens + grant.remaining),
            retry_after: Duration::ZERO,
            reset: grant.reset,
        }
    }
}

/// What the local lease says of a request.
enum Spent {
    Decided(Decision),
    Ask { want: u64, give_back: u64 },
}

fn lock(
    leases: &Mutex<HashMap<String, Lease>>,
) -> std::sync::MutexGuard<'_, HashMap<String, Lease>> {
    // Plain data, valid after any panic that interrupted its holder.
    leases
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Takes what waits (at most [`MAX_BATCH`]), decides it with one run of the script, answers
/// each; until the limiter is dropped.
async fn decide_in_batches(redis: Redis, quota: Quota, mut waiting: mpsc::Receiver<Pending>) {
    let script = Script::new(GCRA);
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while waiting.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut invocation = script.prepare_invoke();
        invocation
            .arg(quota.interval_micros())
            .arg(quota.burst.max(1));
        for pending in &batch {
            invocation
                .key(&pending.key)
                .arg(pending.want)
                .arg(pending.give_back);
        }
        let answer: Option<Vec<u64>> = redis
            .call(Use::RateLimit, |mut conn| async move {
                invocation.invoke_async(&mut conn).await
            })
            .await;
        match answer.filter(|values| values.len() == 4 * batch.len()) {
            Some(values) => {
                for (pending, grant) in batch.drain(..).zip(values.chunks_exact(4)) {
                    let _ = pending.reply.send(Some(Grant {
                        granted: grant[0],
                        remaining: grant[1],
                        retry_after: Duration::from_micros(grant[2]),
                        reset: Duration::from_micros(grant[3]),
                    }));
                }
            }
            None => {
                for pending in batch.drain(..) {
                    let _ = pending.reply.send(None);
                }
            }
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

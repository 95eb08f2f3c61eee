//! Cache-aside for works, in Redis (shared by every API replica) and, for done works, in the
//! process's memory.
//!
//! PostgreSQL stays the only source of truth. A done work never changes again: it is cached for
//! [`CacheConfig::ttl`](crate::config::CacheConfig) and kept in memory too. A pending work changes
//! exactly once (the sweeper finishes it): it is cached for `pending_ttl` only, and every write
//! that changes a work publishes the new row with [`WorkCache::works_changed`] after its commit.
//!
//! Each cached value carries the version of the row it was read from — `done`, then
//! `updated_on` — and one Lua script stores a value only when it is newer than the one held. So
//! the classic race cannot leave a stale value behind: a reader that read "pending" before the
//! sweeper's commit and writes it after the sweeper published "done" is refused. If Redis is
//! down when a change is published, the pending value it held expires within `pending_ttl`:
//! that is the longest a cached work can be stale, whatever fails.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use crate::cache::connection::{Redis, Use};
use crate::cache::local::LocalCache;
use crate::work::Work;

/// Stores each value whose version is newer than the one held (or when none is held).
/// KEYS: one per work. ARGV: four per key: done (0/1), updated_on in microseconds, the JSON, the
/// time to live in milliseconds. Values are stored as `done:micros:json`. Returns how many were
/// stored.
const STORE_IF_NEWER: &str = r"
local stored = 0
for i, key in ipairs(KEYS) do
  local base = (i - 1) * 4
  local done = tonumber(ARGV[base + 1])
  local micros = tonumber(ARGV[base + 2])
  local newer = true
  local held = redis.call('GET', key)
  if held then
    local held_done, held_micros = string.match(held, '^(%d):(%d+):')
    if held_done then
      held_done = tonumber(held_done)
      held_micros = tonumber(held_micros)
      newer = done > held_done or (done == held_done and micros > held_micros)
    end
  end
  if newer then
    redis.call('SET', key, ARGV[base + 1] .. ':' .. ARGV[base + 2] .. ':' .. ARGV[base + 3],
               'PX', ARGV[base + 4])
    stored = stored + 1
  end
end
return stored
";

/// A work's JSON, exactly as the API answers it.
pub type WorkJson = Arc<str>;

/// See the module documentation. Without Redis (and with no memory tier) every lookup misses and
/// every store does nothing: the callers read PostgreSQL as they would without a cache.
pub struct WorkCache {
    redis: Option<Redis>,
    local: Option<LocalCache<i64, WorkJson>>,
    ttl: Duration,
    pending_ttl: Duration,
    store_if_newer: Script,
}

/// How long cached works live, and how many done works the process keeps in memory.
#[derive(Debug, Clone, Copy)]
pub struct WorkCacheSettings {
    /// A done work's time to live in Redis.
    pub ttl: Duration,
    /// A pending work's time to live: the longest a cached value can be stale.
    pub pending_ttl: Duration,
    /// Done works kept in the process's memory (0: none).
    pub local_capacity: usize,
}

impl WorkCache {
    /// A cache over `redis` (or none: no cache at all).
    pub fn new(redis: Option<Redis>, settings: WorkCacheSettings) -> Self {
        let local = (redis.is_some() && settings.local_capacity > 0)
            .then(|| LocalCache::new(settings.local_capacity));
        WorkCache {
            redis,
            local,
            ttl: settings.ttl,
            pending_ttl: settings.pending_ttl,
            store_if_newer: Script::new(STORE_IF_NEWER),
        }
    }

    /// No cache: every lookup misses.
    pub fn disabled() -> Self {
        WorkCache::new(
            None,
            WorkCacheSettings {
                ttl: Duration::ZERO,
                pending_ttl: Duration::ZERO,
                local_capacity: 0,
            },
        )
    }

    /// Whether a cache is configured.
    pub fn is_enabled(&self) -> bool {
        self.redis.is_some()
    }

    /// Whether Redis is configured and being treated as down.
    pub fn is_degraded(&self) -> bool {
        self.redis.as_ref().is_some_and(Redis::is_degraded)
    }

    /// The work's JSON when a cache holds it: memory first, then Redis. `None` means "read
    /// PostgreSQL", whether the work is not cached or Redis could not be asked.
    pub async fn get(&self, id: i64) -> Option<WorkJson> {
        let redis = self.redis.as_ref()?;
        if let Some(json) = self.local.as_ref().and_then(|local| local.get(&id)) {
            redis.metrics().memory_hits.inc();
            return Some(json);
        }
        let key = self.work_key(redis, id);
        let held: Option<Option<String>> = redis
            .call(Use::Cache, |mut conn| async move {
                redis::cmd("GET").arg(&key).query_async(&mut conn).await
            })
            .await;
        match held.flatten().as_deref().and_then(split_value) {
            Some((done, json)) => {
                redis.metrics().redis_hits.inc();
                let json: WorkJson = Arc::from(json);
                if done {
                    self.remember(id, &json);
                }
                Some(json)
            }
            None => {
                redis.metrics().cache_misses.inc();
                None
            }
        }
    }

    /// Caches a work just read from PostgreSQL (unless a newer version is held) and returns its
    /// JSON.
    pub async fn put(&self, work: &Work) -> WorkJson {
        let json = work_json(work);
        if self.redis.is_some() {
            self.store(&[(work, json.clone())]).await;
            if work.done {
                self.remember(work.id, &json);
            }
        }
        json
    }

    /// Publishes works a committed write changed (or created), so no replica serves their old
    /// version for longer than it takes this call to reach Redis. Every write path that changes
    /// a work calls this after its commit.
    pub async fn works_changed(&self, works: &[Work]) {
        if self.redis.is_none() || works.is_empty() {
            return;
        }
        let values: Vec<(&Work, WorkJson)> =
            works.iter().map(|work| (work, work_json(work))).collect();
        self.store(&values).await;
    }

    /// The events of a done work (they never change), when cached.
    pub async fn get_events(&self, id: i64) -> Option<String> {
        let redis = self.redis.as_ref()?;
        let key = self.events_key(redis, id);
        let held: Option<Option<String>> = redis
            .call(Use::Cache, |mut conn| async move {
                redis::cmd("GET").arg(&key).query_async(&mut conn).await
            })
            .await;
        let held = held.flatten();
        let counter = if held.is_some() {
            &redis.metrics().redis_hits
        } else {
            &redis.metrics().cache_misses
        };
        counter.inc();
        held
    }

    /// Caches the events of a done work. Call it only for a done work: a pending work's events
    /// are still to come.
    pub async fn put_events(&self, id: i64, json: &str) {
        let Some(redis) = &self.redis else {
            return;
        };
        let key = self.events_key(redis, id);
        let ttl = millis(self.ttl);
        let json = json.to_owned();
        let _: Option<()> = redis
            .call(Use::Cache, |mut conn| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(json)
                    .arg("PX")
                    .arg(ttl)
                    .query_async(&mut conn)
                    .await
            })
            .await;
    }

    async fn store(&self, values: &[(&Work, WorkJson)]) {
        let Some(redis) = &self.redis else {
            return;
        };
        let mut invocation = self.store_if_newer.prepare_invoke();
        for (work, json) in values {
            let ttl = if work.done {
                self.ttl
            } else {
                self.pending_ttl
            };
            invocation
                .key(self.work_key(redis, work.id))
                .arg(u8::from(work.done))
                .arg(work.updated_on.timestamp_micros())
                .arg(json.as_ref())
                .arg(millis(ttl));
        }
        let _: Option<u64> = redis
            .call(Use::Cache, |mut conn| async move {
                invocation.invoke_async(&mut conn).await
            })
            .await;
    }

    fn remember(&self, id: i64, json: &WorkJson) {
        if let Some(local) = &self.local {
            local.insert(id, json.clone());
        }
    }

    fn work_key(&self, redis: &Redis, id: i64) -> String {
        format!("{}:work:{id}", redis.prefix())
    }

    fn events_key(&self, redis: &Redis, id: i64) -> String {
        format!("{}:work:{id}:events", redis.prefix())
    }
}

/// The JSON the API answers for a work.
pub fn work_json(work: &Work) -> WorkJson {
    Arc::from(serde_json::to_string(work).expect("a Work serializes: plain fields only"))
}

/// `done:micros:json` → (done, json); `None` for anything else.
fn split_value(value: &str) -> Option<(bool, &str)> {
    let (done, rest) = value.split_once(':')?;
    let (_micros, json) = rest.split_once(':')?;
    match done {
        "0" => Some((false, json)),
        "1" => Some((true, json)),
        _ => None,
    }
}

/// A time to live in whole milliseconds, at least one (Redis refuses 0).
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_split_into_state_and_json() {
        assert_eq!(split_value("1:17:{\"a\":1}"), Some((true, "{\"a\":1}")));
        assert_eq!(split_value("0:17:{}"), Some((false, "{}")));
        assert_eq!(split_value("2:17:{}"), None);
        assert_eq!(split_value("garbage"), None);
    }
}

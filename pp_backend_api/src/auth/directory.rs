//! The API keys, in memory: a request with a key is authenticated without a query. The
//! directory holds every key by its token's hash (never a token), is read again from
//! PostgreSQL whenever a key changes (PostgreSQL announces it on [`KEYS_CHANGED`], and
//! [`pp_lib::db::listen`] hears it within a tenth of a second, so a revocation reaches every
//! replica well within a second) and every few seconds besides (`PP_AUTH_KEYS_REFRESH`, the
//! fallback for a notification missed), and asks PostgreSQL for a hash it does not know (a key
//! made since). When
//! it has not been read for [`TRUSTED_FOR`] (PostgreSQL does not answer), it is not trusted: each
//! key is looked up again, so a key revoked meanwhile is never taken on the word of an old
//! reading. A key's use is noted in memory and written for all keys at once every
//! [`FLUSH_USES_EVERY`]: `last_used_at` costs no write per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pp_lib::auth::constant_time_eq;
use pp_lib::db::identities::{self, ApiKey};
use pp_lib::db::{PgPool, with_connection};
use pp_lib::shutdown::Shutdown;

/// The channel PostgreSQL announces a key's change on (a trigger on `api_keys`).
pub const KEYS_CHANGED: &str = "pp_api_keys";
/// How often the keys' last uses are written.
pub const FLUSH_USES_EVERY: Duration = Duration::from_secs(60);
/// How long a reading of the keys is trusted by default: three readings missed, at the default
/// `PP_AUTH_KEYS_REFRESH` of 5 s, and it is not.
pub const TRUSTED_FOR: Duration = Duration::from_secs(15);
/// Readings that may be missed before the last one is not trusted.
const READINGS_MISSED: u32 = 3;

/// Keys by the first 8 bytes of their hash: each bucket's keys, with their whole hash.
type Buckets = HashMap<[u8; 8], Vec<([u8; 32], ApiKey)>>;

/// Keys by the first bytes of their hash, each compared whole in constant time.
#[derive(Debug)]
pub struct KeyDirectory {
    /// How long a reading is trusted.
    trusted_for: Duration,
    keys: RwLock<Buckets>,
    /// When PostgreSQL's keys were last read whole.
    read_at: Mutex<Option<Instant>>,
    used: Mutex<HashMap<i64, DateTime<Utc>>>,
}

impl Default for KeyDirectory {
    fn default() -> Self {
        KeyDirectory::trusting_for(TRUSTED_FOR)
    }
}

impl KeyDirectory {
    /// An empty directory for keys read every `refresh_every`: a reading is trusted while
    /// no more than three were missed.
    pub fn read_every(refresh_every: Duration) -> Self {
        KeyDirectory::trusting_for(refresh_every.saturating_mul(READINGS_MISSED))
    }

    fn trusting_for(trusted_for: Duration) -> Self {
        KeyDirectory {
            trusted_for,
            keys: RwLock::default(),
            read_at: Mutex::default(),
            used: Mutex::default(),
        }
    }

    /// The key whose token hashes to `hash`, if the directory knows it and its last reading of
    /// the keys is recent enough to trust.
    pub fn find(&self, hash: &[u8; 32]) -> Option<ApiKey> {
        let trusted = self
            .read_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < self.trusted_for);
        if !trusted {
            return None;
        }
        let keys = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.get(&bucket(hash))?
            .iter()
            .find(|(known, _)| constant_time_eq(known, hash))
            .map(|(_, key)| key.clone())
    }

    /// Adds a key (one PostgreSQL had and the directory did not).
    pub fn insert(&self, hash: [u8; 32], key: ApiKey) {
        let mut keys = self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = keys.entry(bucket(&hash)).or_default();
        bucket.retain(|(known, _)| known != &hash);
        bucket.push((hash, key));
    }

    /// Replaces every key with `rows` (hash, key), as PostgreSQL has them now.
    pub fn replace(&self, rows: Vec<(Vec<u8>, ApiKey)>) {
        let mut fresh = Buckets::new();
        for (hash, key) in rows {
            // The table keeps 32-byte hashes only (a check constraint).
            let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) else {
                continue;
            };
            fresh.entry(bucket(&hash)).or_default().push((hash, key));
        }
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        *self
            .read_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
    }

    /// Notes that the key `id` was used now.
    pub fn used(&self, id: i64) {
        self.lock_used().insert(id, Utc::now());
    }

    /// The uses noted since the last call.
    pub fn take_uses(&self) -> Vec<(i64, DateTime<Utc>)> {
        self.lock_used().drain().collect()
    }

    fn lock_used(&self) -> std::sync::MutexGuard<'_, HashMap<i64, DateTime<Utc>>> {
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn bucket(hash: &[u8; 32]) -> [u8; 8] {
    let mut bucket = [0; 8];
    bucket.copy_from_slice(&hash[..8]);
    bucket
}

/// Keeps `directory` fresh until `shutdown`: the keys read whenever `changed` is notified (a
/// key changed) and every `refresh_every` besides, the uses written every [`FLUSH_USES_EVERY`]
/// and once more at the end. A failure (the database down) is logged once and tried again at
/// the next tick: the directory keeps what it had.
pub async fn keep_fresh(
    directory: Arc<KeyDirectory>,
    pool: PgPool,
    changed: Arc<tokio::sync::Notify>,
    refresh_every: Duration,
    shutdown: Shutdown,
) {
    let mut refresh = tokio::time::interval(refresh_every);
    let mut flush = tokio::time::interval(FLUSH_USES_EVERY);
    flush.tick().await;
    let mut failing = false;
    loop {
        tokio::select! {
            _ = refresh.tick() => read_keys(&directory, &pool, &mut failing).await,
            () = changed.notified() => read_keys(&directory, &pool, &mut failing).await,
            _ = flush.tick() => flush_uses(&directory, &pool).await,
            () = shutdown.requested() => break,
        }
    }
    flush_uses(&directory, &pool).await;
}

/// Reads every key into `directory`; `failing` says whether the last reading failed, so an
/// outage is logged once when it starts and once when it ends.
async fn read_keys(directory: &KeyDirectory, pool: &PgPool, failing: &mut bool) {
    let pool = pool.clone();
    let read = tokio::task::spawn_blocking(move || {
        with_connection(&pool, |conn| Ok(identities::keys_with_hashes(conn)?))
    })
    .await;
    match read {
        Ok(Ok(rows)) => {
            if *failing {
                log::info!("the API keys are read again");
                *failing = false;
            }
            directory.replace(rows);
        }
        Ok(Err(error)) => {
            if !*failing {
                log::warn!(
                    "cannot read the API keys ({error}); past {:?} each key is looked up in \
                     PostgreSQL again",
                    directory.trusted_for
                );
                *failing = true;
            }
        }
        Err(error) => log::error!("reading the API keys panicked: {error}"),
    }
}

async fn flush_uses(directory: &KeyDirectory, pool: &PgPool) {
    let uses = directory.take_uses();
    if uses.is_empty() {
        return;
    }
    let pool = pool.clone();
    let written = tokio::task::spawn_blocking(move || {
        with_connection(&pool, |conn| Ok(identities::record_keys_used(conn, &uses)?))
    })
    .await;
    if let Ok(Err(error)) = written {
        log::debug!("writing the API keys' last uses: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: i64) -> ApiKey {
        ApiKey {
            id,
            name: format!("k{id}"),
            scopes: vec!["read".to_owned()],
            created_on: Utc::now(),
            expires_on: None,
            revoked_on: None,
            last_used_at: None,
        }
    }

    #[test]
    fn keys_are_found_by_their_whole_hash_only() {
        let directory = KeyDirectory::default();
        let mut hash = [7; 32];
        directory.insert(hash, key(1));
        assert_eq!(directory.find(&hash), None, "never read whole: not trusted");
        directory.replace(vec![]);
        directory.insert(hash, key(1));
        let mut near = hash;
        near[31] = 8;

        assert_eq!(directory.find(&hash).map(|key| key.id), Some(1));
        assert_eq!(directory.find(&near), None, "same bucket, another hash");
        hash[0] = 9;
        assert_eq!(directory.find(&hash), None);
        directory.replace(vec![(vec![1; 32], key(2)), (vec![1; 5], key(3))]);
        assert_eq!(directory.find(&[7; 32]), None, "replaced");
        assert_eq!(directory.find(&[1; 32]).map(|key| key.id), Some(2));
    }

    #[test]
    fn a_reading_too_old_is_not_trusted() {
        let directory = KeyDirectory::default();
        directory.replace(vec![(vec![1; 32], key(1))]);
        assert!(directory.find(&[1; 32]).is_some());
        *directory.read_at.lock().expect("not poisoned") =
            Instant::now().checked_sub(TRUSTED_FOR + Duration::from_secs(1));
        assert_eq!(directory.find(&[1; 32]), None, "looked up again instead");
    }

    #[test]
    fn uses_are_taken_once() {
        let directory = KeyDirectory::default();
        directory.used(4);
        directory.used(4);
        assert_eq!(directory.take_uses().len(), 1);
        assert!(directory.take_uses().is_empty());
    }
}

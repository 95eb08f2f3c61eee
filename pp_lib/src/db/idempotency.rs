//! Queries on `idempotency_keys`: `POST /work` retried with an `Idempotency-Key` returns the work
//! the first request created, instead of creating another.

use std::time::Duration;

use diesel::dsl::now;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Text};

use crate::db::works::{find_work, insert_work};
use crate::error::Error;
use crate::schema::idempotency_keys;
use crate::work::{NewWork, Work};

/// Longest lifetime a key may be given.
pub const MAX_KEY_TTL: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// Longest key accepted (the column's width).
pub const MAX_KEY_LEN: usize = 255;

/// Checks a key lifetime: from one second to [`MAX_KEY_TTL`].
pub fn check_key_ttl(ttl: Duration) -> Result<(), Error> {
    if (Duration::from_secs(1)..=MAX_KEY_TTL).contains(&ttl) {
        return Ok(());
    }
    Err(Error::Config(format!(
        "idempotency key lifetime must be from 1s to {} days, got {ttl:?}",
        MAX_KEY_TTL.as_secs() / 86_400
    )))
}

/// What [`create_work_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotentCreation {
    /// The key was new (or expired): the work was created and the key now names it.
    Created(Work),
    /// The key names an earlier, identical request: this is the work it created.
    Replayed(Work),
    /// The key names an earlier request that asked for something else.
    Conflict {
        /// The earlier request, in canonical form.
        first_request: String,
    },
}

/// Creates `new_work` unless `key` already names a request: then returns that request's work
/// when `request` (a canonical form of what is asked) is the same, or a conflict when it is not.
///
/// Concurrent calls with one key create one work: the losers wait for the winner's commit on the
/// key's unique index, roll back their own insert and return the winner's work.
pub fn create_work_once(
    conn: &mut PgConnection,
    key: &str,
    request: &str,
    new_work: &NewWork,
    ttl: Duration,
) -> Result<IdempotentCreation, Error> {
    check_key_ttl(ttl)?;
    let ttl_seconds = ttl.as_secs_f64();
    // A key found and then expired in between is retried; more than twice means the key is
    // changing hands faster than we can read it.
    for _ in 0..3 {
        // An expired key is as good as absent.
        diesel::delete(
            idempotency_keys::table
                .filter(idempotency_keys::key.eq(key))
                .filter(idempotency_keys::expires_on.le(now)),
        )
        .execute(conn)?;

        let created = conn.transaction(|conn| {
            let work = insert_work(conn, new_work)?;
            // Expiry on the database's clock, like every comparison with it.
            let claimed = diesel::sql_query(
                "insert into idempotency_keys (key, request, work_id, expires_on) \
                 values ($1, $2, $3, now() + $4 * interval '1 second') \
                 on conflict (key) do nothing",
            )
            .bind::<Text, _>(key)
            .bind::<Text, _>(request)
            .bind::<BigInt, _>(work.id)
            .bind::<Double, _>(ttl_seconds)
            .execute(conn)?;
            if claimed == 0 {
                // Someone holds the key: undo our insert.
                return Err(KeyTaken::Taken);
            }
            Ok(work)
        });
        match created {
            Ok(work) => return Ok(IdempotentCreation::Created(work)),
            Err(KeyTaken::Database(error)) => return Err(error.into()),
            Err(KeyTaken::Taken) => {}
        }

        let first: Option<(String, i64)> = idempotency_keys::table
            .find(key)
            .filter(idempotency_keys::expires_on.gt(now))
            .select((idempotency_keys::request, idempotency_keys::work_id))
            .first(conn)
            .optional()?;
        let Some((first_request, work_id)) = first else {
            continue;
        };
        if first_request != request {
            return Ok(IdempotentCreation::Conflict { first_request });
        }
        if let Some(work) = find_work(conn, work_id)? {
            return Ok(IdempotentCreation::Replayed(work));
        }
    }
    Err(Error::Contention(format!(
        "idempotency key {key:?} keeps changing hands; retry"
    )))
}

/// Deletes up to `limit` expired keys; returns how many went. Rows another purge holds are
/// skipped, so replicas purging at once share the work.
pub fn purge_expired_keys(conn: &mut PgConnection, limit: i64) -> QueryResult<usize> {
    // In batches, so a large backlog never holds many row locks at once.
    diesel::sql_query(
        "delete from idempotency_keys where key in \
         (select key from idempotency_keys where expires_on <= now() \
          limit $1 for update skip locked)",
    )
    .bind::<BigInt, _>(limit.max(0))
    .execute(conn)
}

/// Inside the creating transaction: the key was taken (roll back), or the database failed.
enum KeyTaken {
    Taken,
    Database(diesel::result::Error),
}

impl From<diesel::result::Error> for KeyTaken {
    fn from(error: diesel::result::Error) -> Self {
        KeyTaken::Database(error)
    }
}

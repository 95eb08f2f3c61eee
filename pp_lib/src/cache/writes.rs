//! The writes that change an existing work, as the processes run them: the transaction on a
//! database thread, then — after the commit — the changed rows published to the cache, so a
//! replica serves the new version at once (see [`WorkCache::works_changed`]). A process that
//! changes works calls these, never the `db` functions underneath, so no path can forget the
//! cache. (New works need nothing: no cache can hold a row that did not exist.)

use chrono::{DateTime, Utc};

use crate::cache::WorkCache;
use crate::db::{PgPool, with_connection};
use crate::error::Error;
use crate::work::Work;

/// The sweeper's unit of work ([`crate::db::works::sweep_pending_works`]), then the works it
/// finished published to the cache.
pub async fn sweep_pending_works(
    pool: &PgPool,
    cache: &WorkCache,
    created_since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Work>, Error> {
    let pool = pool.clone();
    let done = tokio::task::spawn_blocking(move || {
        with_connection(&pool, |conn| {
            crate::db::works::sweep_pending_works(conn, created_since, limit)
        })
    })
    .await
    .map_err(|error| Error::Bug(format!("a sweep did not finish: {error}")))??;
    cache.works_changed(&done).await;
    Ok(done)
}

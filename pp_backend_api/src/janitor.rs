//! The janitor: deletes the rows pp keeps only for a while — expired `Idempotency-Key`s, outbox
//! demands published longer ago than their retention, expired dashboard sessions and audit
//! events older than theirs — so no table grows forever.
//!
//! Every round deletes in batches of [`PURGE_BATCH`] rows (one short transaction each, so a large
//! backlog never holds many locks at once) until a batch comes back short: whatever the rate at
//! which rows expire, each round catches up. Replicas may all run it: each batch skips the rows
//! another holds.

use std::time::Duration;

use chrono::Utc;
use pp_lib::config::{duration_setting, positive_duration_setting};
use pp_lib::db::{PgConnection, PgPool, with_connection};

/// Rows deleted per statement.
pub const PURGE_BATCH: i64 = 10_000;

/// The janitor's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct RetentionConfig {
    /// How often expired idempotency keys and old published demands are deleted.
    #[arg(long = "retention-every", env = "PP_RETENTION_EVERY", default_value = "1m",
          value_parser = positive_duration_setting)]
    pub every: Duration,
    /// How long a published outbox demand is kept (for inspection) before it is deleted.
    #[arg(long = "outbox-retention", env = "PP_OUTBOX_RETENTION", default_value = "24h",
          value_parser = duration_setting)]
    pub outbox: Duration,
    /// How long the audit trail keeps an event (who did what from the dashboard or the command
    /// line, logins) before it is deleted.
    #[arg(long = "audit-retention", env = "PP_AUDIT_RETENTION", default_value = "90d",
          value_parser = duration_setting)]
    pub audit: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        pp_lib::config::defaults()
    }
}

/// What one round deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Purged {
    pub idempotency_keys: usize,
    pub published_demands: usize,
    pub sessions: usize,
    pub audit_events: usize,
}

/// Runs a round every `config.every`, until the task is dropped.
pub async fn run(pool: PgPool, config: RetentionConfig) {
    let mut ticks = tokio::time::interval(config.every.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let pool = pool.clone();
        let retention = config.clone();
        let round = tokio::task::spawn_blocking(move || purge_round(&pool, &retention)).await;
        match round {
            Ok(Ok(purged)) if purged == Purged::default() => {}
            Ok(Ok(purged)) => log::info!(
                "deleted {} expired idempotency keys, {} demands published over {:?} ago, \
                 {} expired sessions and {} audit events over {:?} old",
                purged.idempotency_keys,
                purged.published_demands,
                config.outbox,
                purged.sessions,
                purged.audit_events,
                config.audit
            ),
            Ok(Err(error)) => log::warn!("cannot delete expired rows: {error}"),
            Err(error) => log::error!("the retention round did not finish: {error}"),
        }
    }
}

/// One round: every expired key, every demand published longer ago than its retention, every
/// expired session, every audit event older than its retention, batch after batch until none is
/// left.
pub fn purge_round(pool: &PgPool, config: &RetentionConfig) -> Result<Purged, pp_lib::Error> {
    let idempotency_keys = purge_until_short(|| {
        with_connection(pool, |conn| {
            Ok(pp_lib::db::idempotency::purge_expired_keys(
                conn,
                PURGE_BATCH,
            )?)
        })
    })?;
    let published_demands =
        purge_older_than(pool, config.outbox, pp_lib::db::outbox::purge_published)?;
    let sessions = purge_until_short(|| {
        with_connection(pool, |conn| {
            Ok(pp_lib::db::identities::purge_expired_sessions(
                conn,
                PURGE_BATCH,
            )?)
        })
    })?;
    let audit_events = purge_older_than(pool, config.audit, pp_lib::db::audit_trail::purge_before)?;
    Ok(Purged {
        idempotency_keys,
        published_demands,
        sessions,
        audit_events,
    })
}

/// Every row `purge` finds older than `retention`, batch after batch; none for a retention too
/// long for the clock (everything is kept).
fn purge_older_than(
    pool: &PgPool,
    retention: Duration,
    purge: fn(&mut PgConnection, chrono::DateTime<Utc>, i64) -> diesel::QueryResult<usize>,
) -> Result<usize, pp_lib::Error> {
    let Some(before) = older_than(retention) else {
        return Ok(0);
    };
    purge_until_short(|| with_connection(pool, |conn| Ok(purge(conn, before, PURGE_BATCH)?)))
}

/// The instant `retention` ago; `None` for a retention too long for the clock (keep everything).
fn older_than(retention: Duration) -> Option<chrono::DateTime<Utc>> {
    chrono::Duration::from_std(retention)
        .ok()
        .and_then(|retention| Utc::now().checked_sub_signed(retention))
}

fn purge_until_short(
    mut batch: impl FnMut() -> Result<usize, pp_lib::Error>,
) -> Result<usize, pp_lib::Error> {
    let mut total = 0;
    loop {
        let deleted = batch()?;
        total += deleted;
        if deleted < PURGE_BATCH as usize {
            return Ok(total);
        }
    }
}

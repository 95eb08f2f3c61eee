//! The audit trail (`audit_events`): every change someone made from the dashboard or the command
//! line, every key and account change, every failed login — who, what, on which object, from
//! where, when, and how it ended. `pp_storage audit` and the dashboard's audit page read it; the
//! API's janitor deletes what is older than its retention.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::schema::audit_events;

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It was done.
    Done,
    /// It was not allowed (a viewer's action, a wrong password).
    Refused,
    /// It was allowed, and failed (the broker was down).
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// One event to record.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_events)]
pub struct NewAuditEvent<'a> {
    /// Who: `account:NAME`, `key:NAME`, `admin-token`, `pp_storage (USER)`, `anonymous`, or for a
    /// failed login the name that was tried, `login:NAME`.
    pub actor: &'a str,
    /// What, as `subject.verb`: `dead_letter.retry`, `key.create`, `login`, …
    pub action: &'a str,
    /// On what: a dead letter's key, a key's or an account's name, a count of demands.
    pub object: &'a str,
    /// From where: the client's address, or `command line`.
    pub source: &'a str,
    pub outcome: &'a str,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize)]
#[diesel(table_name = audit_events, check_for_backend(diesel::pg::Pg))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    pub id: i64,
    /// When, in seconds since the Unix epoch.
    #[serde(with = "chrono::serde::ts_seconds")]
    #[cfg_attr(feature = "openapi", schema(value_type = i64, example = 1796188000))]
    pub at: DateTime<Utc>,
    #[cfg_attr(feature = "openapi", schema(example = "account:ada"))]
    pub actor: String,
    #[cfg_attr(feature = "openapi", schema(example = "dead_letter.retry"))]
    pub action: String,
    pub object: String,
    #[cfg_attr(feature = "openapi", schema(example = "192.0.2.7"))]
    pub source: String,
    /// `done`, `refused` or `failed`.
    #[cfg_attr(feature = "openapi", schema(example = "done"))]
    pub outcome: String,
}

/// Records one event.
pub fn record(conn: &mut PgConnection, event: &NewAuditEvent<'_>) -> QueryResult<()> {
    diesel::insert_into(audit_events::table)
        .values(event)
        .execute(conn)
        .map(drop)
}

/// The latest events (at or after `since`, when given), newest first, at most `limit`, older
/// than the event `before_id` when given (to page back).
pub fn latest(
    conn: &mut PgConnection,
    since: Option<DateTime<Utc>>,
    limit: i64,
    before_id: Option<i64>,
) -> QueryResult<Vec<AuditEvent>> {
    let mut query = audit_events::table
        .select(AuditEvent::as_select())
        .order(audit_events::id.desc())
        .limit(limit.max(0))
        .into_boxed();
    if let Some(since) = since {
        query = query.filter(audit_events::at.ge(since));
    }
    if let Some(before_id) = before_id {
        query = query.filter(audit_events::id.lt(before_id));
    }
    query.load(conn)
}

/// Deletes up to `batch` events older than `before`; how many.
pub fn purge_before(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    batch: i64,
) -> QueryResult<usize> {
    diesel::sql_query(
        "delete from audit_events where id in \
         (select id from audit_events where at < $1 order by at limit $2)",
    )
    .bind::<diesel::sql_types::Timestamptz, _>(before)
    .bind::<diesel::sql_types::BigInt, _>(batch)
    .execute(conn)
}

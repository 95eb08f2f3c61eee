//! Queries on `demand_outbox`: demands accepted over HTTP, waiting for the relay to publish them.

use chrono::{DateTime, Utc};
use diesel::dsl::now;
use diesel::prelude::*;
use uuid::Uuid;

use crate::demand::WorkDemand;
use crate::schema::demand_outbox;

/// The channel on which PostgreSQL announces demands added to the outbox, when their
/// transaction commits: every relaying API listens to publish them at once.
pub const OUTBOX_ADDED: &str = "pp_outbox";

/// A demand in the outbox.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = demand_outbox, check_for_backend(diesel::pg::Pg))]
pub struct OutboxDemand {
    /// The message id it is (or will be) published with.
    pub id: Uuid,
    /// The message body.
    pub body: serde_json::Value,
    pub created_on: DateTime<Utc>,
    /// When the broker confirmed it; `None` while it waits.
    pub published_on: Option<DateTime<Utc>>,
}

/// Commits a demand to the outbox under `id`, its future message id.
pub fn insert_demand(
    conn: &mut PgConnection,
    id: Uuid,
    demand: &WorkDemand,
) -> QueryResult<OutboxDemand> {
    // A WorkDemand is two plain fields: turning it into a JSON value cannot fail.
    let body = serde_json::to_value(demand).expect("a WorkDemand converts to JSON");
    diesel::insert_into(demand_outbox::table)
        .values((demand_outbox::id.eq(id), demand_outbox::body.eq(body)))
        .returning(OutboxDemand::as_returning())
        .get_result(conn)
}

/// Commits several demands to the outbox in one statement, each under its id (its future
/// message id). Returns how many rows were written.
pub fn insert_demands(
    conn: &mut PgConnection,
    demands: &[(Uuid, WorkDemand)],
) -> QueryResult<usize> {
    let rows: Vec<_> = demands
        .iter()
        .map(|(id, demand)| {
            // A WorkDemand is two plain fields: turning it into a JSON value cannot fail.
            let body = serde_json::to_value(demand).expect("a WorkDemand converts to JSON");
            (demand_outbox::id.eq(*id), demand_outbox::body.eq(body))
        })
        .collect();
    diesel::insert_into(demand_outbox::table)
        .values(&rows)
        .execute(conn)
}

/// Claims up to `limit` unpublished demands, oldest first, locking them until the caller's
/// transaction ends; rows another relay holds are skipped. Call it inside a transaction.
pub fn claim_unpublished(conn: &mut PgConnection, limit: i64) -> QueryResult<Vec<OutboxDemand>> {
    demand_outbox::table
        .select(OutboxDemand::as_select())
        .filter(demand_outbox::published_on.is_null())
        .order(demand_outbox::created_on.asc())
        .limit(limit.max(0))
        .for_update()
        .skip_locked()
        .load(conn)
}

/// Records that the broker confirmed these demands. Returns how many rows changed.
pub fn mark_published(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<usize> {
    diesel::update(
        demand_outbox::table
            .filter(demand_outbox::id.eq_any(ids))
            .filter(demand_outbox::published_on.is_null()),
    )
    .set(demand_outbox::published_on.eq(now))
    .execute(conn)
}

/// Deletes up to `limit` demands published before `before`, oldest first; returns how many
/// went. Rows another purge holds are skipped, so replicas purging at once share the work.
pub fn purge_published(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<usize> {
    use diesel::sql_types::{BigInt, Timestamptz};
    // In batches, so a large backlog never holds many row locks at once.
    diesel::sql_query(
        "delete from demand_outbox where id in \
         (select id from demand_outbox where published_on < $1 \
          order by published_on limit $2 for update skip locked)",
    )
    .bind::<Timestamptz, _>(before)
    .bind::<BigInt, _>(limit.max(0))
    .execute(conn)
}

/// The demand with this id, published or not.
pub fn find_demand(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<OutboxDemand>> {
    demand_outbox::table
        .find(id)
        .select(OutboxDemand::as_select())
        .first(conn)
        .optional()
}

//! What the dashboard's overview reads from PostgreSQL, besides [`crate::db::stats`]: the
//! backlogs that wait for someone (the outbox relay, the sweeper) and how old their oldest row
//! is, and the API works the sweeper will never take because they are older than its window.
//!
//! Each is read from a partial index that holds exactly the rows in question (pending API works,
//! unpublished demands), counted with [`count_matches`] (exact up to its cap, estimated past it)
//! and its oldest row read from the index's first entry: no refresh reads the done works or the
//! published demands, however many there are.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Timestamptz};
use serde::{Deserialize, Serialize};

use crate::db::stats::{Counting, Figure, PENDING_API_WORKS, beyond_sweep_window, count_matches};

/// Rows waiting, and the age of the oldest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Backlog {
    pub count: Figure,
    /// Seconds since the oldest waiting row was created, on the database's clock; `null` when
    /// none waits.
    #[cfg_attr(feature = "openapi", schema(example = 3))]
    pub oldest_age_seconds: Option<i64>,
}

/// The backlogs of the overview.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Backlogs {
    /// Demands accepted over HTTP that the relay has not yet published.
    pub outbox: Backlog,
    /// Pending API works within the sweep window: what the sweeper will finish next.
    pub sweeper: Backlog,
    /// Pending API works created before the sweep window: the sweeper will never take them.
    pub beyond_sweep_window: Backlog,
}

#[derive(QueryableByName)]
struct Oldest {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    oldest: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<BigInt>)]
    age: Option<i64>,
}

/// Reads the backlogs. `sweep_window` is the sweeper's (`PP_SWEEP_WINDOW`): API works created
/// before `now() - sweep_window` are beyond it.
pub fn read_backlogs(
    conn: &mut PgConnection,
    sweep_window: Duration,
    counting: Counting,
) -> QueryResult<Backlogs> {
    // Whole seconds, formatted into pp's own SQL (an integer, never input): the same text serves
    // the exact count and, past the cap, the planner's estimate.
    let window = i64::try_from(sweep_window.as_secs()).unwrap_or(i64::MAX / 2);
    let since = format!("now() - make_interval(secs => {window})");
    let within = format!("{PENDING_API_WORKS} and created_on >= {since}");
    let beyond = beyond_sweep_window(sweep_window);
    let outbox = "demand_outbox where published_on is null";
    Ok(Backlogs {
        outbox: Backlog {
            count: count_matches(conn, outbox, counting.exact_matches)?,
            oldest_age_seconds: oldest_age(
                conn,
                "select min(created_on) as oldest from demand_outbox where published_on is null",
            )?,
        },
        sweeper: Backlog {
            count: count_matches(conn, &within, counting.exact_matches)?,
            oldest_age_seconds: oldest_age(
                conn,
                &format!("select min(created_on) as oldest from {within}"),
            )?,
        },
        beyond_sweep_window: Backlog {
            count: count_matches(conn, &beyond, counting.exact_matches)?,
            oldest_age_seconds: oldest_age(
                conn,
                &format!("select min(created_on) as oldest from {beyond}"),
            )?,
        },
    })
}

/// Seconds since the `oldest` timestamp `query` selects (a `min(created_on)` a partial index
/// answers from its first entry).
fn oldest_age(conn: &mut PgConnection, query: &str) -> QueryResult<Option<i64>> {
    let row: Oldest = diesel::sql_query(format!(
        "select oldest, floor(extract(epoch from now() - oldest))::bigint as age \
         from ({query}) as o"
    ))
    .get_result(conn)?;
    Ok(row.oldest.and(row.age.map(|age| age.max(0))))
}

#[cfg(test)]
mod tests {
    //! Against a real, freshly migrated database (pp_storage's testkit).

    use diesel::connection::SimpleConnection;
    use pp_storage::testkit::TestDatabase;
    use uuid::Uuid;

    use super::*;
    use crate::db::outbox::insert_demand;
    use crate::db::works::{finish_works, insert_work};
    use crate::demand::WorkDemand;
    use crate::work::NewWork;

    const HOUR: Duration = Duration::from_secs(3_600);

    #[test]
    fn an_empty_database_has_no_backlog() {
        let db = TestDatabase::create();
        let mut conn = db.connect();

        let backlogs = read_backlogs(&mut conn, HOUR, Counting::DEFAULT).expect("backlogs");

        let empty = Backlog {
            count: Figure::exact(0),
            oldest_age_seconds: None,
        };
        assert_eq!(backlogs.outbox, empty);
        assert_eq!(backlogs.sweeper, empty);
        assert_eq!(backlogs.beyond_sweep_window, empty);
    }

    #[test]
    fn backlogs_count_what_waits_and_how_old_it_is() {
        let db = TestDatabase::create();
        let mut conn = db.connect();
        let old = insert_work(&mut conn, &NewWork::from_api(1)).expect("insert");
        insert_work(&mut conn, &NewWork::from_api(2)).expect("insert");
        let done = insert_work(&mut conn, &NewWork::from_api(3)).expect("insert");
        conn.transaction(|conn| finish_works(conn, std::slice::from_ref(&done)))
            .expect("finish");
        conn.batch_execute(&format!(
            "update works set created_on = now() - interval '2 hours' where id = {}",
            old.id
        ))
        .expect("ageing a work");
        insert_demand(
            &mut conn,
            Uuid::new_v4(),
            &WorkDemand::new(2).expect("demand"),
        )
        .expect("outbox");
        conn.batch_execute("update demand_outbox set created_on = now() - interval '90 seconds'")
            .expect("ageing the demand");

        let backlogs = read_backlogs(&mut conn, HOUR, Counting::DEFAULT).expect("backlogs");

        assert_eq!(backlogs.outbox.count, Figure::exact(1));
        assert!(
            (89..=95).contains(&backlogs.outbox.oldest_age_seconds.unwrap_or(0)),
            "{backlogs:?}"
        );
        assert_eq!(backlogs.sweeper.count, Figure::exact(1));
        assert!(backlogs.sweeper.oldest_age_seconds.unwrap_or(-1) < 60);
        assert_eq!(backlogs.beyond_sweep_window.count, Figure::exact(1));
        assert!(
            backlogs.beyond_sweep_window.oldest_age_seconds.unwrap_or(0) >= 7_199,
            "{backlogs:?}"
        );
    }
}

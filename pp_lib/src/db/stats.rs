//! The system at a glance: how many works wait, how many are done, how many events were logged,
//! and how many works were finished in the last hour. `GET /stats` and `cli_01 stats --via db`
//! both read it here, so the two always agree.

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use serde::{Deserialize, Serialize};

/// Counts over the whole database, read in one statement (one snapshot: the numbers agree with
/// each other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, QueryableByName)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stats {
    /// Works not yet done.
    #[diesel(sql_type = BigInt)]
    #[cfg_attr(feature = "openapi", schema(example = 3))]
    pub pending_works: i64,
    /// Works done, with their result.
    #[diesel(sql_type = BigInt)]
    #[cfg_attr(feature = "openapi", schema(example = 12))]
    pub done_works: i64,
    /// Rows of the event log (three per done work).
    #[diesel(sql_type = BigInt)]
    #[cfg_attr(feature = "openapi", schema(example = 36))]
    pub events: i64,
    /// The throughput: works marked done during the last hour, on the database's clock.
    #[diesel(sql_type = BigInt)]
    #[cfg_attr(feature = "openapi", schema(example = 12))]
    pub done_last_hour: i64,
}

/// Reads the counts. One pass over `works` serves the three work counts (a done work's
/// `updated_on` is when it was marked done: nothing changes a work after that); `events` is
/// counted by a scalar subquery of the same statement.
pub fn read_stats(conn: &mut PgConnection) -> QueryResult<Stats> {
    diesel::sql_query(
        "select count(*) filter (where not done) as pending_works, \
                count(*) filter (where done) as done_works, \
                (select count(*) from events) as events, \
                count(*) filter (where done and updated_on >= now() - interval '1 hour') \
                    as done_last_hour \
         from works",
    )
    .get_result(conn)
}

#[cfg(test)]
mod tests {
    //! Against a real, freshly migrated database (pp_storage's testkit).

    use chrono::{Duration, Utc};
    use diesel::connection::SimpleConnection;
    use pp_storage::testkit::TestDatabase;

    use super::*;
    use crate::db::works::{finish_works, insert_work};
    use crate::schema::works;
    use crate::work::NewWork;

    #[test]
    fn stats_of_an_empty_database_are_zero() {
        let db = TestDatabase::create();
        let mut conn = db.connect();

        let stats = read_stats(&mut conn).expect("stats");

        assert_eq!(
            stats,
            Stats {
                pending_works: 0,
                done_works: 0,
                events: 0,
                done_last_hour: 0,
            }
        );
    }

    #[test]
    fn stats_count_pending_done_events_and_the_last_hours_throughput() {
        let db = TestDatabase::create();
        let mut conn = db.connect();
        let mut inserted = Vec::new();
        for add_up_to in 1..=5 {
            inserted.push(insert_work(&mut conn, &NewWork::from_api(add_up_to)).expect("insert"));
        }
        conn.transaction(|conn| finish_works(conn, &inserted[..3]))
            .expect("finishing three works");
        // One of the three was finished long ago: done, but not part of the last hour. (The
        // table's trigger stamps every update with now(): it is paused to move the stamp back.)
        conn.batch_execute("alter table works disable trigger works_touch_updated_on")
            .expect("pausing the trigger");
        diesel::update(works::table.find(inserted[0].id))
            .set(works::updated_on.eq(Utc::now() - Duration::hours(2)))
            .execute(&mut conn)
            .expect("moving updated_on back");
        conn.batch_execute("alter table works enable trigger works_touch_updated_on")
            .expect("resuming the trigger");

        let stats = read_stats(&mut conn).expect("stats");

        assert_eq!(
            stats,
            Stats {
                pending_works: 2,
                done_works: 3,
                events: 9,
                done_last_hour: 2,
            }
        );
    }

    #[test]
    fn stats_serialise_with_named_counts() {
        let stats = Stats {
            pending_works: 1,
            done_works: 2,
            events: 6,
            done_last_hour: 2,
        };

        let json = serde_json::to_string(&stats).expect("stats serialise");

        assert_eq!(
            json,
            r#"{"pending_works":1,"done_works":2,"events":6,"done_last_hour":2}"#
        );
    }
}

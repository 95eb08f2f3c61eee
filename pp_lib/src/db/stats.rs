//! The system at a glance: how many works wait, how many are done, how many events were logged,
//! and how many works were finished in the last hour. `GET /stats`, `cli_01 stats --via db` and
//! the dashboard all read them here, so they always agree.
//!
//! It is also the one way pp reads a count that could be large without making every reader pay
//! for every row. Counting is exact while it is cheap, and PostgreSQL's own figures stand in
//! when it is not, each [`Figure`] saying which it is:
//!
//! - a whole table is counted row by row while its heap is small ([`Counting::exact_table_pages`]
//!   pages); beyond that its size is the live-row count PostgreSQL's statistics keep as rows are
//!   inserted and deleted (`pg_stat_user_tables.n_live_tup`, set again from a sample by every
//!   VACUUM and ANALYZE), or, when those statistics were reset, the planner's estimate;
//! - a subset held by a partial index (pending works, unpublished demands) is counted exactly
//!   from that index, up to [`Counting::exact_matches`]; a larger one is the planner's estimate
//!   of the same condition (`pp_count_estimate`), and never less than what was counted;
//! - the works done in the last hour, on a large table, are the sum of the per-second ring that
//!   the finishing commits write (see [`crate::db::throughput`]): exact, without reading a work.
//!
//! The time a refresh takes is therefore bounded by the thresholds, not by the tables' sizes.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Text};
use serde::{Deserialize, Serialize};

use crate::db::throughput::finished_within;

/// Counts over the whole database. On small tables they come from one statement (one
/// snapshot: the numbers agree with each other); on large ones some are estimates (see
/// [`read_figures`]), and this shape, `GET /stats`'s, carries only their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stats {
    /// Works not yet done.
    #[cfg_attr(feature = "openapi", schema(example = 3))]
    pub pending_works: i64,
    /// Works done, with their result.
    #[cfg_attr(feature = "openapi", schema(example = 12))]
    pub done_works: i64,
    /// Rows of the event log (three per done work).
    #[cfg_attr(feature = "openapi", schema(example = 36))]
    pub events: i64,
    /// The throughput: works marked done during the last hour, on the database's clock.
    #[cfg_attr(feature = "openapi", schema(example = 12))]
    pub done_last_hour: i64,
    /// Pending works created over HTTP before the sweeper's window (`PP_SWEEP_WINDOW`): the
    /// sweeper will never finish them; `task_consumer sweep --all-pending` does.
    #[cfg_attr(feature = "openapi", schema(example = 0))]
    pub api_works_beyond_sweep_window: i64,
}

/// [`Stats`] as one statement counts them, on small tables.
#[derive(QueryableByName)]
struct Everything {
    #[diesel(sql_type = BigInt)]
    pending_works: i64,
    #[diesel(sql_type = BigInt)]
    done_works: i64,
    #[diesel(sql_type = BigInt)]
    events: i64,
    #[diesel(sql_type = BigInt)]
    done_last_hour: i64,
}

/// A count, and whether it was counted (`exact`) or is PostgreSQL's estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Figure {
    #[cfg_attr(feature = "openapi", schema(example = 1200))]
    pub value: i64,
    /// False when the value is an estimate (a table or a subset too large to count on every
    /// refresh).
    pub exact: bool,
}

impl Figure {
    pub fn exact(value: i64) -> Self {
        Figure { value, exact: true }
    }

    pub fn estimate(value: i64) -> Self {
        Figure {
            value,
            exact: false,
        }
    }

    /// The sum; exact only when both are.
    pub fn plus(self, other: Figure) -> Figure {
        Figure {
            value: self.value.saturating_add(other.value),
            exact: self.exact && other.exact,
        }
    }
}

/// The counts of [`Stats`], each saying whether it is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Figures {
    pub pending_works: Figure,
    pub done_works: Figure,
    pub events: Figure,
    pub done_last_hour: Figure,
}

impl Figures {
    /// The values alone, as `GET /stats` answers them, with the count of API works beyond the
    /// sweep window.
    pub fn stats(&self, api_works_beyond_sweep_window: i64) -> Stats {
        Stats {
            pending_works: self.pending_works.value,
            done_works: self.done_works.value,
            events: self.events.value,
            done_last_hour: self.done_last_hour.value,
            api_works_beyond_sweep_window,
        }
    }
}

/// Where counting stops and estimating starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counting {
    /// A table whose heap has at most this many pages (8 KiB each) is counted row by row.
    pub exact_table_pages: i64,
    /// A subset held by a partial index is counted exactly up to this many rows.
    pub exact_matches: i64,
}

impl Counting {
    /// 1,024 pages (8 MiB, some 80,000 works) read in a few milliseconds; 50,000 index entries
    /// too. Measured by `make bench-dashboard`.
    pub const DEFAULT: Counting = Counting {
        exact_table_pages: 1_024,
        exact_matches: 50_000,
    };
}

impl Default for Counting {
    fn default() -> Self {
        Counting::DEFAULT
    }
}

/// Reads the counts: [`read_figures`]'s values, and the pending API works a sweeper with this
/// window leaves alone.
pub fn read_stats(
    conn: &mut PgConnection,
    sweep_window: std::time::Duration,
) -> QueryResult<Stats> {
    let beyond = count_matches(
        conn,
        &beyond_sweep_window(sweep_window),
        Counting::DEFAULT.exact_matches,
    )?;
    Ok(read_figures(conn)?.stats(beyond.value))
}

/// The pending API works created before a sweeper with this window looks (a `from … where`
/// clause for [`count_matches`]): the partial index `works_pending_api_idx` holds them. The
/// window is whole seconds formatted into the text (an integer of pp's own, never input), so the
/// same text serves the exact count and, past the cap, the planner's estimate.
pub fn beyond_sweep_window(sweep_window: std::time::Duration) -> String {
    let seconds = i64::try_from(sweep_window.as_secs()).unwrap_or(i64::MAX / 2);
    format!("{PENDING_API_WORKS} and created_on < now() - make_interval(secs => {seconds})")
}

/// Reads the counts with the [`Counting::DEFAULT`] thresholds.
pub fn read_figures(conn: &mut PgConnection) -> QueryResult<Figures> {
    read_figures_with(conn, Counting::DEFAULT)
}

/// Reads the counts, exact where the tables are small under `counting`, estimated beyond.
pub fn read_figures_with(conn: &mut PgConnection, counting: Counting) -> QueryResult<Figures> {
    let works_size = table_size(conn, "works")?;
    let events_size = table_size(conn, "events")?;
    let works_small = works_size.pages <= counting.exact_table_pages;
    let events_small = events_size.pages <= counting.exact_table_pages;
    if works_small && events_small {
        let stats = count_everything(conn, EventsToo::Yes)?;
        return Ok(Figures {
            pending_works: Figure::exact(stats.pending_works),
            done_works: Figure::exact(stats.done_works),
            events: Figure::exact(stats.events),
            done_last_hour: Figure::exact(stats.done_last_hour),
        });
    }
    let events = if events_small {
        Figure::exact(count_rows(conn, "select count(*) as n from events")?)
    } else {
        estimate_from(conn, events_size, "events")?
    };
    let (pending_works, done_works, done_last_hour) = if works_small {
        let stats = count_everything(conn, EventsToo::No)?;
        (
            Figure::exact(stats.pending_works),
            Figure::exact(stats.done_works),
            Figure::exact(stats.done_last_hour),
        )
    } else {
        let pending = count_matches(conn, PENDING_API_WORKS, counting.exact_matches)?.plus(
            count_matches(conn, PENDING_OTHER_WORKS, counting.exact_matches)?,
        );
        let total = estimate_from(conn, works_size, "works")?;
        let done = Figure::estimate(total.value.saturating_sub(pending.value).max(0));
        (
            pending,
            done,
            Figure::exact(finished_within(conn, SECONDS_PER_HOUR)?),
        )
    };
    Ok(Figures {
        pending_works,
        done_works,
        events,
        done_last_hour,
    })
}

const SECONDS_PER_HOUR: i64 = 3_600;

/// Pending works created over HTTP: `works_pending_api_idx` holds exactly these.
pub const PENDING_API_WORKS: &str = "works where not done and demand_id is null";
/// The other pending works: `works_pending_other_idx` holds exactly these.
pub const PENDING_OTHER_WORKS: &str = "works where not done and demand_id is not null";

/// Whether [`count_everything`] counts the events too (a large `events` table is estimated
/// instead, and must not be read).
#[derive(Clone, Copy, PartialEq)]
enum EventsToo {
    Yes,
    No,
}

/// Every count row by row, in one statement. One pass over `works` serves the three work counts
/// (a done work's `updated_on` is when it was marked done: nothing changes a work after that);
/// `events` is counted by a scalar subquery of the same statement, or left at 0.
fn count_everything(conn: &mut PgConnection, events_too: EventsToo) -> QueryResult<Everything> {
    let events = match events_too {
        EventsToo::Yes => "(select count(*) from events)",
        EventsToo::No => "0::bigint",
    };
    diesel::sql_query(format!(
        "select count(*) filter (where not done) as pending_works, \
                count(*) filter (where done) as done_works, \
                {events} as events, \
                count(*) filter (where done and updated_on >= now() - interval '1 hour') \
                    as done_last_hour \
         from works"
    ))
    .get_result(conn)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count_rows(conn: &mut PgConnection, sql: &str) -> QueryResult<i64> {
    Ok(diesel::sql_query(sql).get_result::<Count>(conn)?.n)
}

/// The size of a table as PostgreSQL knows it without reading it.
#[derive(Debug, Clone, Copy, PartialEq, QueryableByName)]
pub struct TableSize {
    /// Pages of the heap now (its file's size).
    #[diesel(sql_type = BigInt)]
    pub pages: i64,
    /// Live rows by the cumulative statistics (0 after a statistics reset, until the next
    /// VACUUM or ANALYZE).
    #[diesel(sql_type = BigInt)]
    pub live_rows: i64,
    /// Rows at the last VACUUM or ANALYZE (-1: never).
    #[diesel(sql_type = Double)]
    pub analyzed_rows: f64,
}

/// How large `table` is, from the catalogue and the statistics: no row is read.
pub fn table_size(conn: &mut PgConnection, table: &str) -> QueryResult<TableSize> {
    diesel::sql_query(
        "select pg_relation_size(c.oid) / current_setting('block_size')::bigint as pages, \
                coalesce(s.n_live_tup, 0) as live_rows, \
                c.reltuples::float8 as analyzed_rows \
         from pg_class c left join pg_stat_user_tables s on s.relid = c.oid \
         where c.oid = $1::regclass",
    )
    .bind::<Text, _>(table)
    .get_result(conn)
}

/// A large table's rows, estimated: the statistics' live rows, else the planner's estimate.
pub fn estimate_table_rows(conn: &mut PgConnection, table: &'static str) -> QueryResult<Figure> {
    let size = table_size(conn, table)?;
    estimate_from(conn, size, table)
}

/// A large table's rows from its `size` already read: the statistics' live rows, else the
/// planner's estimate.
fn estimate_from(
    conn: &mut PgConnection,
    size: TableSize,
    table: &'static str,
) -> QueryResult<Figure> {
    if size.live_rows > 0 {
        return Ok(Figure::estimate(size.live_rows));
    }
    Ok(Figure::estimate(estimate_rows(
        conn,
        &format!("select 1 from {table}"),
    )?))
}

/// The planner's estimate of the rows `query` returns. `query` is pp's own text, never input.
pub fn estimate_rows(conn: &mut PgConnection, query: &str) -> QueryResult<i64> {
    Ok(diesel::sql_query("select pp_count_estimate($1) as n")
        .bind::<Text, _>(query)
        .get_result::<Count>(conn)?
        .n)
}

/// The rows of `from_where` (`"<table> where <condition>"`, pp's own text, never input),
/// counted exactly up to `cap` rows; past that, the planner's estimate, and at least `cap + 1`.
/// Served by a partial index whose predicate is the condition, the exact count reads at most
/// `cap + 1` index entries.
pub fn count_matches(conn: &mut PgConnection, from_where: &str, cap: i64) -> QueryResult<Figure> {
    let counted: Count = diesel::sql_query(format!(
        "select count(*) as n from (select 1 from {from_where} limit $1) as matches"
    ))
    .bind::<BigInt, _>(cap.saturating_add(1))
    .get_result(conn)?;
    if counted.n <= cap {
        return Ok(Figure::exact(counted.n));
    }
    let estimate = estimate_rows(conn, &format!("select 1 from {from_where}"))?;
    Ok(Figure::estimate(estimate.max(counted.n)))
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

    /// Thresholds that make every table "large": the estimating path on a few rows.
    const ALWAYS_ESTIMATE: Counting = Counting {
        exact_table_pages: -1,
        exact_matches: 1,
    };

    #[test]
    fn stats_of_an_empty_database_are_zero() {
        let db = TestDatabase::create();
        let mut conn = db.connect();

        let stats = read_stats(&mut conn, std::time::Duration::from_secs(3_600)).expect("stats");

        assert_eq!(
            stats,
            Stats {
                pending_works: 0,
                done_works: 0,
                events: 0,
                done_last_hour: 0,
                api_works_beyond_sweep_window: 0,
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
        // One of the two pending ones is older than a one-hour sweep window.
        diesel::update(works::table.find(inserted[4].id))
            .set(works::created_on.eq(Utc::now() - Duration::hours(2)))
            .execute(&mut conn)
            .expect("moving created_on back");

        let stats = read_stats(&mut conn, std::time::Duration::from_secs(3_600)).expect("stats");

        assert_eq!(
            stats,
            Stats {
                pending_works: 2,
                done_works: 3,
                events: 9,
                done_last_hour: 2,
                api_works_beyond_sweep_window: 1,
            }
        );
    }

    #[test]
    fn small_tables_are_counted_exactly() {
        let db = TestDatabase::create();
        let mut conn = db.connect();
        insert_work(&mut conn, &NewWork::from_api(3)).expect("insert");

        let figures = read_figures(&mut conn).expect("figures");

        assert_eq!(figures.pending_works, Figure::exact(1));
        assert!(
            [figures.done_works, figures.events, figures.done_last_hour]
                .iter()
                .all(|figure| figure.exact),
            "{figures:?}"
        );
    }

    #[test]
    fn large_tables_are_estimated_and_pending_works_counted_up_to_the_cap() {
        let db = TestDatabase::create();
        let mut conn = db.connect();
        let mut inserted = Vec::new();
        for add_up_to in 1..=6 {
            inserted.push(insert_work(&mut conn, &NewWork::from_api(add_up_to)).expect("insert"));
        }
        for work in &inserted[..4] {
            conn.transaction(|conn| finish_works(conn, std::slice::from_ref(work)))
                .expect("finish");
        }
        conn.batch_execute("analyze works; analyze events")
            .expect("analyze");

        let figures = read_figures_with(&mut conn, ALWAYS_ESTIMATE).expect("figures");
        let two_pending = read_figures_with(
            &mut conn,
            Counting {
                exact_matches: 5,
                ..ALWAYS_ESTIMATE
            },
        )
        .expect("figures");

        // The statistics may still add this connection's inserts to what ANALYZE counted: an
        // estimate is at least the truth here, never exact.
        assert!(
            !figures.events.exact && figures.events.value >= 12,
            "{figures:?}"
        );
        assert!(!figures.pending_works.exact, "2 pending is over a cap of 1");
        assert!(figures.pending_works.value >= 2, "{figures:?}");
        assert_eq!(two_pending.pending_works, Figure::exact(2));
        assert!(
            !two_pending.done_works.exact && two_pending.done_works.value >= 4,
            "{two_pending:?}"
        );
        assert_eq!(
            two_pending.done_last_hour,
            Figure::exact(4),
            "from the ring that finishing works writes"
        );
    }

    #[test]
    fn a_large_events_table_is_not_read_when_the_works_are_counted() {
        let db = TestDatabase::create();
        let mut conn = db.connect();
        let mut inserted = Vec::new();
        for add_up_to in 1..=200 {
            inserted.push(insert_work(&mut conn, &NewWork::from_api(add_up_to)).expect("insert"));
        }
        conn.transaction(|conn| finish_works(conn, &inserted))
            .expect("finishing the works");
        // Three events a work, and the works' old versions gone: events has more pages.
        for statement in ["vacuum full works", "analyze works", "analyze events"] {
            conn.batch_execute(statement).expect(statement);
        }
        let works_pages = table_size(&mut conn, "works").expect("size").pages;
        let events_pages = table_size(&mut conn, "events").expect("size").pages;
        assert!(events_pages > works_pages, "{events_pages} ≤ {works_pages}");
        let works_small = Counting {
            exact_table_pages: works_pages,
            exact_matches: 1_000,
        };

        let (figures, events_scans) = conn
            .transaction(|conn| {
                let figures = read_figures_with(conn, works_small)?;
                // This transaction's own reads of events, so far.
                let scans = count_rows(
                    conn,
                    "select coalesce(seq_scan, 0) + coalesce(idx_scan, 0) as n \
                     from pg_stat_xact_user_tables where relname = 'events'",
                )?;
                Ok::<_, diesel::result::Error>((figures, scans))
            })
            .expect("figures");

        assert_eq!(figures.done_works, Figure::exact(200));
        assert!(!figures.events.exact, "{figures:?}");
        assert_eq!(events_scans, 0, "the large events table was read");
    }

    #[test]
    fn counts_past_the_cap_are_estimates_no_smaller_than_what_was_counted() {
        let db = TestDatabase::create();
        let mut conn = db.connect();
        for add_up_to in 1..=5 {
            insert_work(&mut conn, &NewWork::from_api(add_up_to)).expect("insert");
        }

        let under = count_matches(&mut conn, PENDING_API_WORKS, 5).expect("count");
        let over = count_matches(&mut conn, PENDING_API_WORKS, 3).expect("count");

        assert_eq!(under, Figure::exact(5));
        assert!(!over.exact);
        assert!(over.value >= 4, "{over:?}");
    }

    #[test]
    fn stats_serialise_with_named_counts() {
        let stats = Stats {
            pending_works: 1,
            done_works: 2,
            events: 6,
            done_last_hour: 2,
            api_works_beyond_sweep_window: 0,
        };

        let json = serde_json::to_string(&stats).expect("stats serialise");

        assert_eq!(
            json,
            r#"{"pending_works":1,"done_works":2,"events":6,"done_last_hour":2,"api_works_beyond_sweep_window":0}"#
        );
    }
}

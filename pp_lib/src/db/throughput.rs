//! How many works were finished, second by second, over the last hour: the `works_finished`
//! ring (see its migration), written by the commits that finish works and read by the
//! dashboard's chart and by `done_last_hour` on large tables.
//!
//! Both paths that finish works call [`record_finished`] inside their own transaction, after
//! their writes: `record_demands` (the consumer's) and `finish_works` (the sweeper's
//! `sweep_pending_works`, and whatever else finishes pending works). Last, because the row it
//! updates stays locked until the commit; a transaction writes one of eight rows of its second,
//! by its transaction id, so concurrent commits rarely wait for each other. One statement, one
//! round trip per transaction, whatever its size.

use diesel::prelude::*;
use diesel::sql_types::BigInt;

/// Seconds the ring holds: an hour.
pub const RING_SECONDS: i64 = 3_600;

/// Adds `finished` works to the count of the current second (the transaction's start, on the
/// database's clock, like `works.updated_on`). Call it in the transaction that finished them.
pub fn record_finished(conn: &mut PgConnection, finished: usize) -> QueryResult<()> {
    if finished == 0 {
        return Ok(());
    }
    diesel::sql_query("select pp_record_finished($1)")
        .bind::<BigInt, _>(i64::try_from(finished).unwrap_or(i64::MAX))
        .execute(conn)?;
    Ok(())
}

/// Works finished per second over a window of whole seconds that ends before the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedSeries {
    /// The epoch second just after the window: the current second, still being counted.
    pub end: i64,
    /// One count per second, oldest first: `counts[i]` is second `end - counts.len() + i`.
    pub counts: Vec<i64>,
}

#[derive(QueryableByName)]
struct SecondCount {
    #[diesel(sql_type = BigInt)]
    second: i64,
    #[diesel(sql_type = BigInt)]
    finished: i64,
}

#[derive(QueryableByName)]
struct Sum {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The works finished in each of the `seconds` whole seconds before the current one (at most
/// [`RING_SECONDS`]).
pub fn finished_per_second(conn: &mut PgConnection, seconds: i64) -> QueryResult<FinishedSeries> {
    let seconds = seconds.clamp(1, RING_SECONDS);
    let end = current_second(conn)?;
    let rows: Vec<SecondCount> = diesel::sql_query(
        "select second, sum(finished)::bigint as finished from works_finished \
         where second >= $1 and second < $2 and finished > 0 group by second",
    )
    .bind::<BigInt, _>(end - seconds)
    .bind::<BigInt, _>(end)
    .load(conn)?;
    let mut counts = vec![0; usize::try_from(seconds).unwrap_or(0)];
    for row in rows {
        if let Some(count) = usize::try_from(row.second - (end - seconds))
            .ok()
            .and_then(|index| counts.get_mut(index))
        {
            *count = row.finished;
        }
    }
    Ok(FinishedSeries { end, counts })
}

/// The works finished in the last `seconds` (the current second included; at most
/// [`RING_SECONDS`]).
pub fn finished_within(conn: &mut PgConnection, seconds: i64) -> QueryResult<i64> {
    let seconds = seconds.clamp(1, RING_SECONDS);
    // The bound is computed first and bound as a value: an expression of now() in the condition
    // would be evaluated again for every row of the ring.
    let now = current_second(conn)?;
    let sum: Sum = diesel::sql_query(
        "select coalesce(sum(finished), 0)::bigint as n from works_finished where second > $1",
    )
    .bind::<BigInt, _>(now - seconds)
    .get_result(conn)?;
    Ok(sum.n)
}

/// The current epoch second on the database's clock (the transaction's start).
fn current_second(conn: &mut PgConnection) -> QueryResult<i64> {
    let sum: Sum = diesel::sql_query("select floor(extract(epoch from now()))::bigint as n")
        .get_result(conn)?;
    Ok(sum.n)
}

#[cfg(test)]
mod tests {
    //! Against a real, freshly migrated database (pp_storage's testkit).

    use diesel::connection::SimpleConnection;
    use pp_storage::testkit::TestDatabase;

    use super::*;

    #[test]
    fn finished_works_are_counted_in_their_second_across_slots() {
        let db = TestDatabase::create();
        let mut conn = db.connect();

        for finished in [3, 4, 0, 5] {
            record_finished(&mut conn, finished).expect("record");
        }

        assert_eq!(finished_within(&mut conn, 60).expect("sum"), 12);
    }

    #[test]
    fn the_series_has_one_count_per_whole_second_oldest_first() {
        let db = TestDatabase::create();
        let mut conn = db.connect();
        // Two seconds in the past, written as a commit then would have written them.
        conn.batch_execute(
            "update works_finished set second = s.now - 3, finished = 7 \
             from (select floor(extract(epoch from now()))::bigint as now) s \
             where second_of_hour = (s.now - 3) % 3600 and slot = 2; \
             update works_finished set second = s.now - 1, finished = 2 \
             from (select floor(extract(epoch from now()))::bigint as now) s \
             where second_of_hour = (s.now - 1) % 3600 and slot = 5",
        )
        .expect("seeding the ring");

        let series = finished_per_second(&mut conn, 5).expect("series");

        assert_eq!(series.counts, vec![0, 0, 7, 0, 2], "{series:?}");
    }

    #[test]
    fn a_second_an_hour_old_is_started_again_not_added_to() {
        let db = TestDatabase::create();
        let mut conn = db.connect();
        // Every row of the ring holds a count from more than an hour ago, at its position.
        conn.batch_execute(
            "update works_finished set finished = 100, \
             second = (s.now - 7200) / 3600 * 3600 + second_of_hour \
             from (select floor(extract(epoch from now()))::bigint as now) s",
        )
        .expect("an old hour");

        record_finished(&mut conn, 3).expect("record");

        assert_eq!(finished_within(&mut conn, 3600).expect("sum"), 3);
    }

    #[test]
    fn a_rolled_back_transaction_counts_nothing() {
        let db = TestDatabase::create();
        let mut conn = db.connect();

        let rolled_back: Result<(), diesel::result::Error> = conn.transaction(|conn| {
            record_finished(conn, 9)?;
            Err(diesel::result::Error::RollbackTransaction)
        });

        assert!(rolled_back.is_err());
        assert_eq!(finished_within(&mut conn, 60).expect("sum"), 0);
    }
}

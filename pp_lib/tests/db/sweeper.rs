//! Claiming pending API work: the window, SKIP LOCKED between concurrent claimers, racing
//! sweepers that together complete every work exactly once, a batch larger than one statement's
//! bind parameters, and the count of works older than the window.

use std::collections::HashSet;

use chrono::{Duration, Utc};
use diesel::prelude::*;
use pp_lib::db::works::{
    claim_pending_works, count_pending_api_works_before, insert_work, insert_works, since_any_age,
    sweep_pending_works,
};
use pp_lib::work::NewWork;
use pp_storage::testkit::{TestDatabase, count, finish_work};
use uuid::Uuid;

use crate::{insert_api_work, set_created_on};

#[test]
fn only_pending_api_work_inside_the_window_is_claimed_oldest_first() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let newer = insert_api_work(&mut conn, "api-newer", 1);
    let older = insert_api_work(&mut conn, "api-older", 2);
    set_created_on(&mut conn, older.id, Utc::now() - Duration::hours(1));
    let stale = insert_api_work(&mut conn, "api-stale", 3);
    set_created_on(&mut conn, stale.id, Utc::now() - Duration::hours(7));
    let done = insert_api_work(&mut conn, "api-done", 4);
    finish_work(&mut conn, &done);
    insert_work(&mut conn, &NewWork::from_demand(Uuid::new_v4(), 5)).expect("consumer work");

    let window = Utc::now() - Duration::hours(6);
    let claimed = conn
        .transaction(|conn| claim_pending_works(conn, window, 10))
        .expect("claim");

    let ids: Vec<i64> = claimed.iter().map(|work| work.id).collect();
    assert_eq!(ids, [older.id, newer.id]);
}

#[test]
fn concurrent_claims_skip_each_others_rows() {
    let db = TestDatabase::create();
    let mut first = db.connect();
    let mut second = db.connect();
    for i in 0..5 {
        insert_api_work(&mut first, &format!("api-claim{i}"), i);
    }
    let window = Utc::now() - Duration::hours(6);

    let (mine, theirs) = first
        .transaction(|first| {
            let mine = claim_pending_works(first, window, 3)?;
            let theirs = second.transaction(|second| claim_pending_works(second, window, 10))?;
            QueryResult::Ok((mine, theirs))
        })
        .expect("claims");

    assert_eq!(mine.len(), 3);
    assert_eq!(
        theirs.len(),
        2,
        "the locked rows are skipped, the rest are taken"
    );
    let all: HashSet<i64> = mine.iter().chain(&theirs).map(|work| work.id).collect();
    assert_eq!(all.len(), 5, "no row is claimed twice");
}

#[test]
fn racing_sweepers_complete_every_work_exactly_once() {
    const WORKS: i32 = 200;
    let db = TestDatabase::create();
    let pool = db.pool();
    {
        let mut conn = pool.get().expect("connection");
        for i in 0..WORKS {
            insert_api_work(&mut conn, &format!("api-race{i:03}"), i);
        }
    }
    let window = Utc::now() - Duration::hours(6);

    let sweepers: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let mut completed = Vec::new();
                let mut conn = pool.get().expect("connection");
                loop {
                    let batch = sweep_pending_works(&mut conn, window, 7).expect("sweep");
                    if batch.is_empty() {
                        break completed;
                    }
                    completed.extend(batch.into_iter().map(|done| done.id));
                }
            })
        })
        .collect();
    let completed: Vec<i64> = sweepers
        .into_iter()
        .flat_map(|sweeper| sweeper.join().expect("a sweeper thread"))
        .collect();

    let distinct: HashSet<i64> = completed.iter().copied().collect();
    assert_eq!(completed.len(), WORKS as usize, "every work completed once");
    assert_eq!(distinct.len(), WORKS as usize);

    assert_eq!(
        db.count("select count(*) as n from works where not done"),
        0,
        "every work is done"
    );
    db.assert_no_wrong_works();
}

#[test]
fn a_sweep_batch_of_10000_finishes_every_work_in_one_transaction() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let works: Vec<NewWork> = (0..10_000).map(|i| NewWork::from_api(i % 1_000)).collect();
    for chunk in works.chunks(5_000) {
        insert_works(&mut conn, chunk).expect("insert API works");
    }

    let done = sweep_pending_works(&mut conn, since_any_age(), 10_000)
        .expect("one sweep of 10,000 works, whatever a statement may bind");

    assert_eq!(done.len(), 10_000);
    assert_eq!(count(&mut conn, "select count(*) as n from events"), 30_000);
}

#[test]
fn pending_api_works_older_than_the_window_are_counted_and_nothing_else() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let window_start = Utc::now() - Duration::hours(6);
    insert_api_work(&mut conn, "api-recent", 1);
    for (i, hours) in [7, 30, 24 * 400].into_iter().enumerate() {
        let old = insert_api_work(&mut conn, &format!("api-old{i}"), 2);
        set_created_on(&mut conn, old.id, Utc::now() - Duration::hours(hours));
    }
    let old_but_done = insert_api_work(&mut conn, "api-olddone", 3);
    set_created_on(&mut conn, old_but_done.id, Utc::now() - Duration::hours(8));
    finish_work(&mut conn, &old_but_done);
    let from_queue =
        insert_work(&mut conn, &NewWork::from_demand(Uuid::new_v4(), 5)).expect("consumer work");
    set_created_on(&mut conn, from_queue.id, Utc::now() - Duration::hours(8));

    let older = count_pending_api_works_before(&mut conn, window_start).expect("count");

    assert_eq!(older, 3, "pending, created over HTTP, before the window");
    let swept = sweep_pending_works(&mut conn, since_any_age(), 100).expect("sweep all");
    assert_eq!(
        swept.len(),
        4,
        "a sweep of any age takes them, and the recent one"
    );
    assert_eq!(
        count_pending_api_works_before(&mut conn, window_start).expect("count"),
        0
    );
}

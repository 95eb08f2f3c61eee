//! The sweeper inside a running consumer: API-created works within the window are finished, those
//! older are counted for the operator, two consumers sweeping at once never process a work twice,
//! racing sweep transactions split the backlog.

use std::time::Duration;

use diesel::prelude::*;
use pp_lib::db::works::{insert_works, sweep_pending_works};
use pp_lib::work::NewWork;

use crate::helpers::{Harness, start, stop};

pub const PENDING_API_WORKS: &str = PENDING_API;
pub const SWEPT_API_WORKS: &str = SWEPT_RIGHT;

const PENDING_API: &str = "select count(*) as n from works where demand_id is null and not done";
const SWEPT_RIGHT: &str = "select count(*) as n from works w where demand_id is null and done \
    and result = add_up_to::bigint * (add_up_to + 1) / 2 \
    and (select count(*) from events e where e.work_id = w.id) = 3";

fn insert_api_works(harness: &Harness, count: usize) {
    let mut conn = harness.db.connect();
    let works: Vec<NewWork> = (0..count)
        .map(|i| NewWork::from_api(i32::try_from(i).expect("small")))
        .collect();
    insert_works(&mut conn, &works).expect("insert API works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_finishes_api_created_works_within_its_window() {
    let harness = Harness::new().await;
    insert_api_works(&harness, 30);
    // One outside the six-hour window: left alone.
    insert_api_works(&harness, 1);
    let mut conn = harness.db.connect();
    diesel::sql_query(
        "update works set created_on = now() - interval '7 hours' \
         where id = (select max(id) from works)",
    )
    .execute(&mut conn)
    .expect("age one work");
    let (trigger, running) = start(harness.settings()).await;
    harness
        .wait_for(SWEPT_RIGHT, 30, Duration::from_secs(30))
        .await;
    let metrics = running.metrics.clone();
    stop(trigger, running).await;
    assert_eq!(harness.count(PENDING_API), 1, "the old work stays pending");
    assert_eq!(metrics.swept.get(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_older_than_the_window_are_counted_and_left_pending() {
    let harness = Harness::new().await;
    insert_api_works(&harness, 12);
    let mut conn = harness.db.connect();
    diesel::sql_query(
        "update works set created_on = now() - interval '7 hours' \
         where id in (select id from works order by id limit 2)",
    )
    .execute(&mut conn)
    .expect("age two works");
    let (trigger, running) = start(harness.settings()).await;
    harness
        .wait_for(SWEPT_RIGHT, 10, Duration::from_secs(30))
        .await;
    let metrics = running.metrics.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metrics.sweeper_stranded.get() != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "older than the window: {}",
            metrics.sweeper_stranded.get()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(trigger, running).await;
    assert_eq!(harness.count(PENDING_API), 2, "left for the operator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_sweeping_at_once_never_process_a_work_twice() {
    let harness = Harness::new().await;
    insert_api_works(&harness, 400);
    let mut settings = harness.settings();
    settings.sweeper.batch = 7;
    settings.sweeper.every = Duration::from_millis(20);
    let (first_trigger, first) = start(settings.clone()).await;
    let (second_trigger, second) = start(settings).await;
    harness
        .wait_for(SWEPT_RIGHT, 400, Duration::from_secs(60))
        .await;
    let (first_metrics, second_metrics) = (first.metrics.clone(), second.metrics.clone());
    stop(first_trigger, first).await;
    stop(second_trigger, second).await;
    assert_eq!(
        first_metrics.swept.get() + second_metrics.swept.get(),
        400,
        "each work was finished by exactly one sweeper ({} + {})",
        first_metrics.swept.get(),
        second_metrics.swept.get()
    );
    assert_eq!(harness.count("select count(*) as n from events"), 1_200);
}

#[test]
fn racing_sweep_transactions_split_the_backlog() {
    let db = pp_storage::testkit::TestDatabase::create();
    let mut conn = db.connect();
    let works: Vec<NewWork> = (0..300).map(NewWork::from_api).collect();
    insert_works(&mut conn, &works).expect("insert API works");
    let since = chrono::Utc::now() - chrono::Duration::hours(6);
    let sweepers: Vec<_> = (0..4)
        .map(|_| {
            let mut conn = db.connect();
            std::thread::spawn(move || {
                let mut finished = Vec::new();
                loop {
                    let done = sweep_pending_works(&mut conn, since, 10).expect("sweep");
                    if done.is_empty() {
                        return finished;
                    }
                    finished.extend(done.into_iter().map(|work| work.id));
                }
            })
        })
        .collect();
    let mut all: Vec<i64> = sweepers
        .into_iter()
        .flat_map(|sweeper| sweeper.join().expect("a sweeper thread"))
        .collect();
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(before, 300, "300 works finished in all");
    assert_eq!(all.len(), 300, "no work finished twice");
}

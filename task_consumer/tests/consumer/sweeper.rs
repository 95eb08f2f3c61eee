//! The sweeper inside a running consumer: API-created works within the window are finished (at
//! once when PostgreSQL announces them), those older are counted for the operator, two consumers sweeping at once never process a work twice,
//! racing sweep transactions split the backlog.

use std::time::Duration;

use diesel::prelude::*;
use pp_lib::db::works::{insert_works, sweep_pending_works};
use pp_lib::testkit::{eventually, exactly};
use pp_lib::work::NewWork;
use pp_storage::testkit::{DONE_API_WORKS, EVENTS, PENDING_API_WORKS, TestDatabase};
use task_consumer::testkit::{TestConsumer, TestServices};

pub fn insert_api_works(db: &TestDatabase, count: usize) {
    let mut conn = db.connect();
    let works: Vec<NewWork> = (0..count)
        .map(|i| NewWork::from_api(i32::try_from(i).expect("small")))
        .collect();
    insert_works(&mut conn, &works).expect("insert API works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_finishes_api_created_works_within_its_window() {
    let services = TestServices::create().await;
    insert_api_works(&services.db, 30);
    // One outside the six-hour window: left alone.
    insert_api_works(&services.db, 1);
    let mut conn = services.db.connect();
    diesel::sql_query(
        "update works set created_on = now() - interval '7 hours' \
         where id = (select max(id) from works)",
    )
    .execute(&mut conn)
    .expect("age one work");
    let consumer = TestConsumer::start(services.settings()).await;
    services.db.eventually_count(DONE_API_WORKS, 30).await;
    let metrics = consumer.metrics.clone();
    consumer.stop().await;
    assert_eq!(
        services.db.count(PENDING_API_WORKS),
        1,
        "the old work stays pending"
    );
    assert_eq!(metrics.swept.get(), 30);
    services.db.assert_no_wrong_works();
}

/// Inserts `count` works as the API does: committed, then announced on `WORKS_PENDING`.
fn create_announced_works(db: &TestDatabase, count: usize) {
    insert_api_works(db, count);
    pp_lib::db::announce::announce(&mut db.connect(), &[pp_lib::db::works::WORKS_PENDING])
        .expect("announced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_created_and_announced_wakes_the_sweeper_at_once() {
    let services = TestServices::create().await;
    let mut settings = services.settings();
    // The next tick an hour away: only the announcement can wake the sweeper.
    settings.sweeper.every = Duration::from_secs(3_600);
    insert_api_works(&services.db, 1);
    let consumer = TestConsumer::start(settings).await;
    // The first tick comes at start and finishes the first work.
    services.db.eventually_count(DONE_API_WORKS, 1).await;
    for created in 2..=4 {
        create_announced_works(&services.db, 1);
        services.db.eventually_count(DONE_API_WORKS, created).await;
    }
    let metrics = consumer.metrics.clone();
    consumer.stop().await;
    assert_eq!(metrics.swept.get(), 4);
    services.db.assert_no_wrong_works();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_older_than_the_window_are_counted_and_left_pending() {
    let services = TestServices::create().await;
    insert_api_works(&services.db, 12);
    let mut conn = services.db.connect();
    diesel::sql_query(
        "update works set created_on = now() - interval '7 hours' \
         where id in (select id from works order by id limit 2)",
    )
    .execute(&mut conn)
    .expect("age two works");
    let consumer = TestConsumer::start(services.settings()).await;
    services.db.eventually_count(DONE_API_WORKS, 10).await;
    let metrics = consumer.metrics.clone();
    eventually("the works older than the window counted", async || {
        exactly(metrics.sweeper_stranded.get(), 2)
    })
    .await;
    consumer.stop().await;
    assert_eq!(
        services.db.count(PENDING_API_WORKS),
        2,
        "left for the operator"
    );
    services.db.assert_no_wrong_works();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_sweeping_at_once_never_process_a_work_twice() {
    let services = TestServices::create().await;
    insert_api_works(&services.db, 400);
    let mut settings = services.settings();
    settings.sweeper.batch = 7;
    settings.sweeper.every = Duration::from_millis(20);
    let first = TestConsumer::start(settings.clone()).await;
    let second = TestConsumer::start(settings).await;
    services.db.eventually_count(DONE_API_WORKS, 400).await;
    let (first_metrics, second_metrics) = (first.metrics.clone(), second.metrics.clone());
    first.stop().await;
    second.stop().await;
    assert_eq!(
        first_metrics.swept.get() + second_metrics.swept.get(),
        400,
        "each work was finished by exactly one sweeper ({} + {})",
        first_metrics.swept.get(),
        second_metrics.swept.get()
    );
    assert_eq!(services.db.count(EVENTS), 1_200);
    services.db.assert_no_wrong_works();
}

#[test]
fn racing_sweep_transactions_split_the_backlog() {
    let db = TestDatabase::create();
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

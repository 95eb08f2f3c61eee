//! The database lanes: many concurrent requests, one statement, each its own answer; a failing
//! batch falls back to one statement per item, so only the bad item fails; what waits past its
//! deadline is answered 503 and never run.

use std::collections::HashSet;

use pp_backend_api::db_lanes::{Batcher, Lane};
use pp_backend_api::error::ApiError;
use pp_backend_api::testkit::{TestApp, TestSettings};
use pp_lib::db::PgConnection;
use pp_lib::testkit::{assert_prompt, eventually};
use pp_lib::work::Work;
use reqwest::StatusCode;

/// The API's default `--http-deadline`: long enough that no request of these tests meets it.
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

fn double_all(_: &mut PgConnection, items: &[i32]) -> Result<Vec<i32>, pp_lib::Error> {
    if items.iter().any(|item| item % 2 == 1) {
        return Err(pp_lib::InputError::NegativeAddUpTo(-1).into());
    }
    Ok(items.iter().map(|item| item * 2).collect())
}

fn double_one(conn: &mut PgConnection, item: &i32) -> Result<i32, pp_lib::Error> {
    double_all(conn, std::slice::from_ref(item)).map(|doubled| doubled[0])
}

#[tokio::test]
async fn a_failing_batch_is_retried_item_by_item() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let pool = app.db.pool();
    let batcher = Batcher::start(
        "test",
        pool,
        Lane::together(1, DEADLINE),
        double_all,
        double_one,
    )
    .expect("threads");

    let answers = futures_util::future::join_all((0..40).map(|item| batcher.submit(item))).await;

    for (item, answer) in (0..40).zip(answers) {
        match answer {
            Ok(doubled) => assert!(item % 2 == 0 && doubled == item * 2, "{item} → {doubled}"),
            Err(error) => assert!(item % 2 == 1, "{item} failed: {error}"),
        }
    }
}

#[tokio::test]
async fn concurrent_lookups_each_get_their_own_work() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let mut works = Vec::new();
    for n in 0..20 {
        works.push(app.create_work(n).await);
    }
    // Every work twice, plus unknown ids, all at once: batches hold duplicates and misses.
    let mut ids: Vec<i64> = works.iter().map(|work| work.id).collect();
    ids.extend(works.iter().map(|work| work.id));
    ids.extend([900_001, 900_002]);

    let answers = futures_util::future::join_all(ids.iter().map(|id| app.get_work(*id))).await;

    let mut seen = HashSet::new();
    for (id, response) in ids.iter().zip(answers) {
        if *id > 900_000 {
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{id}");
            continue;
        }
        assert_eq!(response.status(), StatusCode::OK, "{id}");
        let work: Work = response.json().await.expect("a work");
        assert_eq!(work.id, *id);
        let expected = works
            .iter()
            .find(|candidate| candidate.id == *id)
            .expect("created");
        assert_eq!(&work, expected);
        seen.insert(work.id);
    }
    assert_eq!(seen.len(), 20);
}

fn panic_on_seven(_: &mut PgConnection, items: &[i32]) -> Result<Vec<i32>, pp_lib::Error> {
    assert!(!items.contains(&7), "seven is a bug");
    Ok(items.to_vec())
}

fn panic_on_seven_alone(conn: &mut PgConnection, item: &i32) -> Result<i32, pp_lib::Error> {
    panic_on_seven(conn, std::slice::from_ref(item)).map(|items| items[0])
}

#[tokio::test]
async fn a_panicking_batch_fails_its_requests_and_the_thread_serves_on() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let batcher = Batcher::start(
        "test",
        app.db.pool(),
        Lane::together(1, DEADLINE),
        panic_on_seven,
        panic_on_seven_alone,
    )
    .expect("threads");

    let bad = batcher.submit(7).await;
    let good = batcher.submit(8).await;

    assert!(bad.is_err(), "{bad:?}");
    assert_eq!(good.expect("the one thread survived the panic"), 8);
}

/// Waits for advisory lock `item` (held by the test until it lets go), then answers `item`.
fn wait_for_lock(conn: &mut PgConnection, items: &[i64]) -> Result<Vec<i64>, pp_lib::Error> {
    use diesel::RunQueryDsl;
    for item in items {
        diesel::sql_query(format!(
            "select pg_advisory_lock({item}), pg_advisory_unlock({item})"
        ))
        .execute(conn)?;
    }
    Ok(items.to_vec())
}

fn wait_for_lock_alone(conn: &mut PgConnection, item: &i64) -> Result<i64, pp_lib::Error> {
    wait_for_lock(conn, std::slice::from_ref(item)).map(|items| items[0])
}

#[tokio::test]
async fn a_slow_request_run_alone_holds_up_no_other() {
    use diesel::RunQueryDsl;
    let app = TestApp::spawn(TestSettings::new()).await;
    let batcher = Batcher::start(
        "test",
        app.db.pool(),
        Lane::alone(2, DEADLINE),
        wait_for_lock,
        wait_for_lock_alone,
    )
    .expect("threads");
    // The test holds lock 1, so request 1 blocks in the database until the test lets go.
    let mut holder = app.db.connect();
    diesel::sql_query("select pg_advisory_lock(1)")
        .execute(&mut holder)
        .expect("lock");

    let batcher = std::sync::Arc::new(batcher);
    let slow = tokio::spawn({
        let batcher = batcher.clone();
        async move { batcher.submit(1).await }
    });
    tokio::task::yield_now().await;

    // Queued right behind the slow one; taken with it, they would wait until the lock is freed.
    let fast = futures_util::future::join_all((2..20).map(|item| batcher.submit(item)));
    let fast = tokio::time::timeout(std::time::Duration::from_secs(30), fast)
        .await
        .expect("the other requests are answered while the slow one waits");

    for (item, answer) in (2..20).zip(fast) {
        assert_eq!(answer.expect("answered"), item);
    }
    assert!(
        !slow.is_finished(),
        "the slow request still waits for its lock"
    );
    diesel::sql_query("select pg_advisory_unlock(1)")
        .execute(&mut holder)
        .expect("unlock");
    assert_eq!(slow.await.expect("joined").expect("answered"), 1);
}

static TIMED_OUT_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Runs past a 50 ms statement timeout, counting its runs.
fn time_out(conn: &mut PgConnection, _: &[i32]) -> Result<Vec<i32>, pp_lib::Error> {
    use diesel::Connection;
    use diesel::RunQueryDsl;
    TIMED_OUT_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    conn.transaction(|conn| {
        diesel::sql_query("set local statement_timeout = 50").execute(conn)?;
        diesel::sql_query("select pg_sleep(5)").execute(conn)?;
        Ok(Vec::new())
    })
}

fn time_out_alone(conn: &mut PgConnection, item: &i32) -> Result<i32, pp_lib::Error> {
    time_out(conn, std::slice::from_ref(item)).map(|_| *item)
}

#[tokio::test]
async fn a_statement_that_times_out_is_answered_503_and_not_run_again() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let batcher = Batcher::start(
        "test",
        app.db.pool(),
        Lane::together(1, DEADLINE),
        time_out,
        time_out_alone,
    )
    .expect("threads");

    let answer = batcher.submit(1).await;

    let error = answer.expect_err("the statement timed out");
    assert_eq!(
        actix_web::ResponseError::status_code(&error).as_u16(),
        StatusCode::SERVICE_UNAVAILABLE.as_u16(),
        "{error:?}"
    );
    assert_eq!(
        TIMED_OUT_RUNS.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "a statement that timed out is not run again"
    );
}

static RUN_ITEMS: std::sync::Mutex<Vec<i64>> = std::sync::Mutex::new(Vec::new());

/// `wait_for_lock`, recording every item it runs.
fn record_and_wait(conn: &mut PgConnection, items: &[i64]) -> Result<Vec<i64>, pp_lib::Error> {
    RUN_ITEMS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend_from_slice(items);
    wait_for_lock(conn, items)
}

fn record_and_wait_alone(conn: &mut PgConnection, item: &i64) -> Result<i64, pp_lib::Error> {
    record_and_wait(conn, std::slice::from_ref(item)).map(|items| items[0])
}

#[tokio::test]
async fn requests_no_thread_takes_within_the_deadline_are_answered_503_and_never_run() {
    use diesel::RunQueryDsl;
    let app = TestApp::spawn(TestSettings::new()).await;
    let deadline = std::time::Duration::from_millis(300);
    let batcher = Batcher::start(
        "test",
        app.db.pool(),
        Lane::alone(1, deadline).with_queue(3),
        record_and_wait,
        record_and_wait_alone,
    )
    .expect("threads");
    // The one thread blocks on lock 1000 (held here) with the first request.
    let mut holder = app.db.connect();
    diesel::sql_query("select pg_advisory_lock(1000)")
        .execute(&mut holder)
        .expect("lock");
    let batcher = std::sync::Arc::new(batcher);
    let slow = tokio::spawn({
        let batcher = batcher.clone();
        async move { batcher.submit(1000).await }
    });
    eventually("the thread to take the first request", async || {
        let ran = RUN_ITEMS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if ran.contains(&1000) {
            Ok(())
        } else {
            Err(ran)
        }
    })
    .await;

    // Three fit in the queue and wait out their deadline; the others find it full.
    let started = std::time::Instant::now();
    let answers =
        futures_util::future::join_all((1001..1008).map(|item| batcher.submit(item))).await;
    let waited = started.elapsed();

    for (item, answer) in (1001..1008).zip(answers) {
        let error = answer.expect_err("nothing is served while the thread is held");
        assert!(matches!(error, ApiError::Busy), "{item}: {error:?}");
    }
    // The thread frees only when the test unlocks it, below.
    assert_prompt(waited, deadline, "answers at the deadline");
    diesel::sql_query("select pg_advisory_unlock(1000)")
        .execute(&mut holder)
        .expect("unlock");
    assert_eq!(
        slow.await
            .expect("joined")
            .expect("the taken request runs to its end"),
        1000
    );
    // The thread is free again: a request is served once it has dropped the shed ones still
    // queued (until then they fill the queue, and a request finds it full), and none of the shed
    // ones ran.
    let served = eventually("the freed thread to serve again", async || {
        match batcher.submit(1100).await {
            Err(ApiError::Busy) => Err("busy"),
            answer => Ok(answer.expect("served")),
        }
    })
    .await;
    assert_eq!(served, 1100, "the freed thread serves again");
    let ran = RUN_ITEMS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert!(
        ran.iter().all(|item| !(1001..1008).contains(item)),
        "a request answered 503 was run: {ran:?}"
    );
}

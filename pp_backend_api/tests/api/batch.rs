//! The batcher: many concurrent requests, one statement, each its own answer; a failing batch
//! falls back to one statement per item, so only the bad item fails.

use std::collections::HashSet;

use pp_backend_api::batch::Batcher;
use pp_lib::db::PgConnection;
use pp_lib::work::Work;
use reqwest::StatusCode;

use crate::helpers::spawn_app;

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
    let app = spawn_app().await;
    let pool = app.db.pool();
    let batcher = Batcher::start("test", pool, 1, double_all, double_one).expect("threads");

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
    let app = spawn_app().await;
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
    let app = spawn_app().await;
    let batcher = Batcher::start(
        "test",
        app.db.pool(),
        1,
        panic_on_seven,
        panic_on_seven_alone,
    )
    .expect("threads");

    let bad = batcher.submit(7).await;
    let good = batcher.submit(8).await;

    assert!(bad.is_err(), "{bad:?}");
    assert_eq!(good.expect("the one thread survived the panic"), 8);
}

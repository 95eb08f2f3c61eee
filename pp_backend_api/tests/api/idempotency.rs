//! `Idempotency-Key` on `POST /work`: retries return the first result; a reused key with another
//! body is refused; concurrent retries create one work.

use std::collections::HashSet;

use diesel::prelude::*;
use pp_lib::work::Work;
use reqwest::StatusCode;

use pp_backend_api::testkit::{TestApp, TestSettings, error_message};

async fn post_with_key(app: &TestApp, key: &str, body: &str) -> reqwest::Response {
    app.client
        .post(app.url("/work"))
        .header("Idempotency-Key", key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("POST /work")
}

fn work_count(app: &TestApp) -> i64 {
    let mut conn = app.db.connect();
    pp_lib::schema::works::table
        .count()
        .get_result(&mut conn)
        .expect("count")
}

#[tokio::test]
async fn a_retry_with_the_same_key_and_body_returns_the_first_work() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let first: Work = post_with_key(&app, "order-1", r#"{"add_up_to": 4}"#)
        .await
        .json()
        .await
        .expect("JSON");
    // Same request, other bytes: whitespace and field order do not matter.
    let retry = post_with_key(&app, "order-1", r#"{ "add_up_to" : 4 , "x": 1 }"#).await;
    assert_eq!(retry.status(), StatusCode::OK);
    let retry: Work = retry.json().await.expect("JSON");

    assert_eq!(retry, first);
    assert_eq!(work_count(&app), 1);
}

#[tokio::test]
async fn a_retry_of_a_random_work_returns_the_same_random_work() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let first: Work = post_with_key(&app, "rnd", "")
        .await
        .json()
        .await
        .expect("JSON");
    let retry: Work = post_with_key(&app, "rnd", "")
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(retry, first);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422_and_creates_nothing() {
    let app = TestApp::spawn(TestSettings::new()).await;
    post_with_key(&app, "order-2", r#"{"add_up_to": 4}"#).await;

    let message = error_message(
        post_with_key(&app, "order-2", r#"{"add_up_to": 5}"#).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    assert!(
        message.contains("different request (add_up_to=4)"),
        "{message}"
    );
    assert_eq!(work_count(&app), 1);
}

#[tokio::test]
async fn different_keys_create_different_works() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let a: Work = post_with_key(&app, "a", r#"{"add_up_to": 4}"#)
        .await
        .json()
        .await
        .expect("JSON");
    let b: Work = post_with_key(&app, "b", r#"{"add_up_to": 4}"#)
        .await
        .json()
        .await
        .expect("JSON");
    assert_ne!(a.id, b.id);
}

#[tokio::test]
async fn malformed_keys_are_400() {
    let app = TestApp::spawn(TestSettings::new()).await;
    for key in ["has space", &"k".repeat(256)] {
        let message = error_message(
            post_with_key(&app, key, "{}").await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(message.contains("Idempotency-Key must be"), "{message}");
    }
    assert_eq!(work_count(&app), 0);
}

#[tokio::test]
async fn concurrent_retries_with_one_key_create_one_work() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let requests = (0..20).map(|_| post_with_key(&app, "burst", r#"{"add_up_to": 9}"#));
    let responses = futures_util::future::join_all(requests).await;
    let mut ids = HashSet::new();
    for response in responses {
        assert_eq!(response.status(), StatusCode::OK);
        let work: Work = response.json().await.expect("JSON");
        ids.insert(work.id);
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(work_count(&app), 1);
}

#[tokio::test]
async fn keys_are_stored_durably_with_a_24_hour_expiry() {
    let app = TestApp::spawn(TestSettings::new()).await;
    post_with_key(&app, "durable", "{}").await;
    let mut conn = app.db.connect();
    let hours: f64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Double>(
        "(select extract(epoch from expires_on - created_on) / 3600 from idempotency_keys where key = 'durable')::float8",
    ))
    .get_result(&mut conn)
    .expect("the key is in PostgreSQL");
    assert!((hours - 24.0).abs() < 0.01, "{hours}");
}

//! `GET /stats`: the counts of works and events, the last hour's throughput and the API works
//! the sweeper's window leaves behind, as `pp_lib::db::stats` reads them.

use std::time::Duration;

use diesel::RunQueryDsl;
use pp_lib::db::stats::{Stats, read_stats};
use pp_storage::testkit::finish_work;
use reqwest::StatusCode;
use serde_json::Value;

use pp_backend_api::testkit::{TestApp, TestSettings, error_message};

#[tokio::test]
async fn stats_count_pending_and_done_works_events_and_the_last_hours_throughput() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let mut works = Vec::new();
    for add_up_to in [1, 2, 3] {
        works.push(app.create_work(add_up_to).await);
    }
    let mut conn = app.db.connect();
    finish_work(&mut conn, &works[0]);
    // One pending work from before the sweeper's window (6 h by default).
    diesel::sql_query(format!(
        "update works set created_on = now() - interval '7 hours' where id = {}",
        works[2].id
    ))
    .execute(&mut conn)
    .expect("backdating");

    let response = app.get("/stats").await;

    assert_eq!(response.status(), StatusCode::OK);
    let raw = response.text().await.expect("a body");
    let stats: Stats = serde_json::from_str(&raw).expect("JSON stats");
    assert_eq!(
        stats,
        Stats {
            pending_works: 2,
            done_works: 1,
            events: 3,
            done_last_hour: 1,
            api_works_beyond_sweep_window: 1,
        }
    );
    assert_eq!(
        stats,
        read_stats(&mut conn, Duration::from_secs(6 * 3_600)).expect("stats from the database")
    );
    assert_eq!(
        raw,
        r#"{"pending_works":2,"done_works":1,"events":3,"done_last_hour":1,"api_works_beyond_sweep_window":1}"#
    );
}

#[tokio::test]
async fn stats_are_documented_and_only_read() {
    let app = TestApp::spawn(TestSettings::new()).await;

    let document: Value = app
        .get("/api-docs/openapi.json")
        .await
        .json()
        .await
        .expect("JSON");
    let posted = app
        .client
        .post(app.url("/stats"))
        .send()
        .await
        .expect("POST /stats");

    assert!(document["paths"]["/stats"]["get"].is_object(), "{document}");
    assert!(document["components"]["schemas"]["Stats"].is_object());
    error_message(posted, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn stats_over_a_broken_database_are_an_opaque_500() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let mut conn = app.db.connect();
    diesel::sql_query("drop table events")
        .execute(&mut conn)
        .expect("sabotage");

    let message = error_message(app.get("/stats").await, StatusCode::INTERNAL_SERVER_ERROR).await;

    assert_eq!(message, "internal error", "no SQL, no table names");
}

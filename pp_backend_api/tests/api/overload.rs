//! Overload: requests wait a bounded time for the database and are then answered 503 with
//! `Retry-After`; the queries that are not batched can never take every pooled connection.

use std::time::{Duration, Instant};

use diesel::RunQueryDsl;
use pp_backend_api::settings::Settings;
use pp_storage::testkit::TestDatabase;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_app_with, test_settings};

#[tokio::test]
async fn unbatched_queries_leave_connections_to_the_rest_and_wait_no_longer_than_the_deadline() {
    let db = tokio::task::spawn_blocking(TestDatabase::create)
        .await
        .expect("creating the test database");
    let deadline = Duration::from_millis(500);
    let settings = Settings {
        deadline,
        ..test_settings(db.config())
    };
    assert_eq!(settings.database.pool_size, 4, "two for unbatched queries");
    let app = spawn_app_with(db, settings).await;
    let work = app.create_work(3).await;
    // Reading events waits for this lock: every events request holds its connection meanwhile.
    let mut holder = app.db.connect();
    diesel::sql_query("begin")
        .execute(&mut holder)
        .expect("begin");
    diesel::sql_query("lock table events in access exclusive mode")
        .execute(&mut holder)
        .expect("lock");

    let path = format!("/work/{}/events", work.id);
    let started = Instant::now();
    let events = futures_util::future::join_all((0..8).map(|_| app.get(&path)));
    let lookups = async {
        // Meanwhile lookups by id are served from the connections left.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let looked_up = app.get_work(work.id).await.status();
        let waited = started.elapsed();
        // Let the blocked readers go once the others had their deadline.
        tokio::time::sleep(deadline * 2).await;
        diesel::sql_query("commit")
            .execute(&mut holder)
            .expect("commit");
        (looked_up, waited)
    };
    let (events, (looked_up, lookup_done)) = tokio::join!(events, lookups);

    assert_eq!(looked_up, StatusCode::OK, "a lookup found a connection");
    assert!(lookup_done < deadline * 4, "{lookup_done:?}");
    let mut served = 0;
    let mut shed = 0;
    for response in events {
        match response.status() {
            StatusCode::OK => served += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(response.headers()["retry-after"], "1");
                let body: Value = response.json().await.expect("JSON");
                assert_eq!(body["http_code"], 503, "{body}");
                assert!(
                    body["message"]
                        .as_str()
                        .is_some_and(|message| message.contains("busy")),
                    "{body}"
                );
                shed += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        (served, shed),
        (2, 6),
        "two ran (half the pool), the others waited out the deadline"
    );
}

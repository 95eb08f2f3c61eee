//! Overload: requests wait a bounded time for the database and are then answered 503 with
//! `Retry-After`; the queries that are not batched can never take every pooled connection.

use std::time::{Duration, Instant};

use diesel::RunQueryDsl;
use pp_backend_api::testkit::{TestApp, TestSettings};
use pp_lib::testkit::{assert_prompt, at_least, eventually};
use pp_storage::testkit::WAITING_ON_A_LOCK;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn unbatched_queries_leave_connections_to_the_rest_and_wait_no_longer_than_the_deadline() {
    let deadline = Duration::from_millis(500);
    let app = TestApp::spawn(TestSettings::new().with(move |settings| {
        settings.deadline = deadline;
    }))
    .await;
    assert_eq!(
        app.settings.database.pool_size, 4,
        "two for unbatched queries"
    );
    let work = app.create_work(3).await;
    // Reading events waits for this lock: every events request holds its connection meanwhile.
    let mut holder = app.db.connect();
    diesel::sql_query("begin")
        .execute(&mut holder)
        .expect("begin");
    diesel::sql_query("lock table events in access exclusive mode")
        .execute(&mut holder)
        .expect("lock");

    let started = Instant::now();
    let events: Vec<_> = (0..8)
        .map(|_| {
            let request = app
                .client
                .get(app.url(&format!("/work/{}/events", work.id)))
                .send();
            // Each answer with how long it took.
            tokio::spawn(async move { (request.await, started.elapsed()) })
        })
        .collect();
    // The two connections unbatched queries may take are both held, waiting on the lock.
    app.db.eventually_count(WAITING_ON_A_LOCK, 2).await;
    // Meanwhile lookups by id are served from the connections left.
    let looked_up = app.get_work(work.id).await.status();
    let lookup_done = started.elapsed();
    // The six others are answered when their deadline passes, before the lock goes.
    eventually("six events requests answered", async || {
        at_least(
            events
                .iter()
                .filter(|request| request.is_finished())
                .count(),
            6,
        )
    })
    .await;
    diesel::sql_query("commit")
        .execute(&mut holder)
        .expect("commit");
    let events = futures_util::future::join_all(events).await;

    assert_eq!(looked_up, StatusCode::OK, "a lookup found a connection");
    assert_prompt(
        lookup_done,
        deadline,
        "a lookup beside the held connections",
    );
    let mut served = 0;
    let mut shed = 0;
    for answer in events {
        let (response, took) = answer.expect("the request task");
        let response = response.expect("an answer");
        match response.status() {
            StatusCode::OK => served += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                // Shed at the deadline, not when the lock went.
                assert_prompt(took, deadline, "shedding at the deadline");
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

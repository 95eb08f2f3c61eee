//! Graceful shutdown: a request in flight when the stop comes still gets its answer.

use std::time::Duration;

use diesel::prelude::*;
use reqwest::StatusCode;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_request_in_flight_finishes_before_the_server_stops() {
    let mut app = spawn_app().await;
    // Hold a lock that POST /work must wait for, so the request is in flight at the stop.
    let (locked, lock_held) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let mut conn = app.db.connect();
    let blocker = std::thread::spawn(move || {
        conn.transaction::<_, diesel::result::Error, _>(|conn| {
            diesel::sql_query("lock table works in access exclusive mode").execute(conn)?;
            locked.send(()).expect("the test waits");
            released.recv().expect("the test releases");
            Ok(())
        })
        .expect("the locking transaction");
    });
    lock_held.recv().expect("the lock is held");

    let in_flight = tokio::spawn(
        app.client
            .post(app.url("/work"))
            .body(r#"{"add_up_to": 3}"#)
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let address = app.address.clone();
    let stopping = tokio::spawn(async move { app.stop().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !stopping.is_finished(),
        "the server waits for the request in flight"
    );
    release.send(()).expect("the blocker waits");
    blocker.join().expect("the blocker thread");

    let response = in_flight
        .await
        .expect("task")
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), StatusCode::OK);
    stopping.await.expect("task").expect("a clean stop");
    let refused = reqwest::Client::new()
        .get(format!("{address}/healthz"))
        .send()
        .await;
    assert!(refused.is_err(), "the server no longer accepts connections");
}

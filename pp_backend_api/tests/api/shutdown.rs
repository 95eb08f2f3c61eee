//! Graceful shutdown: a request in flight when the stop comes still gets its answer.

use std::time::Duration;

use diesel::prelude::*;
use pp_backend_api::testkit::{TestApp, TestSettings};
use pp_lib::testkit::{KillOnDrop, eventually, terminate, wait_exit};
use pp_storage::testkit::{TestDatabase, WAITING_ON_A_LOCK};
use reqwest::StatusCode;

/// Waits until the server at `base` refuses new connections.
async fn eventually_refused(base: &str) {
    // A short timeout: an answer that does not come is no refusal, and is asked again.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("a client");
    eventually(
        &format!("{base} to refuse connections"),
        async || match client.get(format!("{base}/healthz")).send().await {
            Err(error) if error.is_connect() => Ok(()),
            other => Err(other.map(|response| response.status())),
        },
    )
    .await;
}

#[tokio::test]
async fn a_request_in_flight_finishes_before_the_server_stops() {
    let mut app = TestApp::spawn(TestSettings::new()).await;
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
    app.db.eventually_count(WAITING_ON_A_LOCK, 1).await;
    let address = app.address.clone();
    let stopping = tokio::spawn(async move { app.stop().await });
    // The stop has begun once new connections are refused.
    eventually_refused(&address).await;
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

/// Starts the API binary over `db` on a free port and returns it with its base URL, read from
/// its "listening on" log line.
fn spawn_api_binary(db: &TestDatabase) -> (KillOnDrop, String) {
    use std::io::BufRead;
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_pp_backend_api"))
        .env("DATABASE_URL", db.url().expose())
        .env("PP_HTTP_ADDR", "127.0.0.1:0")
        .env("PP_OUTBOX_RELAY", "off")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the API binary starts");
    let mut child = KillOnDrop(child);
    let stderr = child.stderr.take().expect("piped stderr");
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let url = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = found.send(url);
            }
        }
    });
    let url = address
        .recv_timeout(Duration::from_secs(30))
        .expect("the API says where it listens");
    (child, url)
}

#[tokio::test]
async fn a_second_signal_stops_the_api_at_once_without_waiting_for_requests_in_flight() {
    let db = TestDatabase::create_async().await;
    let (mut api, url) = spawn_api_binary(&db);
    // POST /work waits for this lock: a request in flight that would keep a graceful stop waiting.
    let mut holder = db.connect();
    diesel::sql_query("begin")
        .execute(&mut holder)
        .expect("begin");
    diesel::sql_query("lock table works in access exclusive mode")
        .execute(&mut holder)
        .expect("lock");
    let in_flight = tokio::spawn(
        reqwest::Client::new()
            .post(format!("{url}/work"))
            .body(r#"{"add_up_to": 3}"#)
            .send(),
    );
    db.eventually_count(WAITING_ON_A_LOCK, 1).await;

    terminate(&api);
    // The first signal has been taken once new connections are refused.
    eventually_refused(&url).await;
    assert!(
        api.try_wait().expect("try_wait").is_none(),
        "the first signal waits for the request in flight"
    );
    terminate(&api);
    // The second signal stops it at once.
    let status = wait_exit(&mut api, Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(130));
    assert!(
        in_flight.await.expect("task").is_err(),
        "the request in flight was cut, not answered"
    );
    diesel::sql_query("rollback")
        .execute(&mut holder)
        .expect("rollback");
}

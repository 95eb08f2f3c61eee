//! Creating, getting and listing the events of works: the original's contract, kept exactly.

use pp_lib::demand::RANDOM_ADD_UP_TO;
use pp_lib::event::Event;
use pp_lib::work::Work;
use pp_storage::testkit::finish_work;
use reqwest::StatusCode;
use serde_json::Value;

use pp_backend_api::testkit::{TestApp, TestSettings, error_message};

#[tokio::test]
async fn a_created_work_equals_its_get_and_its_search_by_full_code() {
    let app = TestApp::spawn(TestSettings::new()).await;

    let response = app.post_work(Some(r#"{"add_up_to": 4}"#)).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the original's clients expect 200"
    );
    let raw = response.text().await.expect("a body");
    let created: Value = serde_json::from_str(&raw).expect("JSON");

    let got: Value = app
        .get_work(created["id"].as_i64().expect("an id"))
        .await
        .json()
        .await
        .expect("JSON");
    let code = created["work_code"].as_str().expect("a code");
    let found: Vec<Value> = app
        .search(&[("work_code", code)])
        .await
        .json()
        .await
        .expect("JSON");

    assert_eq!(got, created);
    assert_eq!(found, vec![created.clone()]);
    let positions: Vec<usize> = [
        "id",
        "work_code",
        "add_up_to",
        "done",
        "created_on",
        "updated_on",
        "result",
    ]
    .iter()
    .map(|key| {
        raw.find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("{key} in {raw}"))
    })
    .collect();
    assert!(
        positions.is_sorted(),
        "the original's fields first, in order: {raw}"
    );
    assert!(raw.starts_with(r#"{"id":"#), "{raw}");
    assert_eq!(created["add_up_to"], 4);
    assert_eq!(created["done"], false);
    assert!(created["created_on"].is_i64(), "epoch seconds: {created}");
    assert!(code.starts_with("api-") && code.len() == 14, "{code}");
}

#[tokio::test]
async fn a_work_without_a_body_gets_a_random_add_up_to() {
    let app = TestApp::spawn(TestSettings::new()).await;
    for body in [
        None,
        Some(""),
        Some("null"),
        Some("{}"),
        Some(r#"{"add_up_to": null}"#),
    ] {
        let response = app.post_work(body).await;
        assert_eq!(response.status(), StatusCode::OK, "{body:?}");
        let work: Work = response.json().await.expect("a work");
        assert!(
            RANDOM_ADD_UP_TO.contains(&work.add_up_to),
            "{body:?}: {work:?}"
        );
    }
}

#[tokio::test]
async fn the_edges_of_add_up_to_are_accepted() {
    let app = TestApp::spawn(TestSettings::new()).await;
    assert_eq!(app.create_work(0).await.add_up_to, 0);
    assert_eq!(app.create_work(i32::MAX).await.add_up_to, i32::MAX);
}

#[tokio::test]
async fn an_unknown_work_is_404() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let message = error_message(app.get_work(424_242).await, StatusCode::NOT_FOUND).await;
    assert_eq!(message, "no work with id 424242");
    let message = error_message(app.get("/work/424242/events").await, StatusCode::NOT_FOUND).await;
    assert_eq!(message, "no work with id 424242");
    for id in [0, -1] {
        let message = error_message(app.get_work(id).await, StatusCode::NOT_FOUND).await;
        assert_eq!(message, format!("no work with id {id}"));
    }
}

#[tokio::test]
async fn events_are_empty_while_pending_and_three_once_done() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let work = app.create_work(4).await;

    let pending: Vec<Event> = app
        .get(&format!("/work/{}/events", work.id))
        .await
        .json()
        .await
        .expect("JSON");
    assert!(pending.is_empty());

    let mut conn = app.db.connect();
    finish_work(&mut conn, &work);
    let events: Vec<Event> = app
        .get(&format!("/work/{}/events", work.id))
        .await
        .json()
        .await
        .expect("JSON");
    let logged: Vec<(&str, &str)> = events
        .iter()
        .map(|event| (event.variable.as_str(), event.value.as_str()))
        .collect();
    assert_eq!(
        logged,
        [
            ("compute/start", ""),
            ("compute/stop", ""),
            ("compute/result", "10")
        ]
    );

    let done: Work = app.get_work(work.id).await.json().await.expect("JSON");
    assert!(done.done);
    assert_eq!(done.result, Some(10));
}

/// Whether `conn`, listening, has been sent a notification since it last looked.
fn heard(conn: &mut diesel::PgConnection) -> Result<(), &'static str> {
    let mut any = false;
    for notification in conn.notifications_iter() {
        notification.expect("a readable notification");
        any = true;
    }
    if any { Ok(()) } else { Err("nothing heard") }
}

#[tokio::test]
async fn works_and_demands_are_announced_once_committed() {
    use diesel::RunQueryDsl;
    use pp_lib::db::outbox::OUTBOX_ADDED;
    use pp_lib::db::works::WORKS_PENDING;
    use pp_lib::testkit::eventually;

    let app = TestApp::spawn(TestSettings::new()).await;
    for (path, channel) in [("/work", WORKS_PENDING), ("/work/demand", OUTBOX_ADDED)] {
        let mut listener = app.db.connect();
        diesel::sql_query(format!("listen {channel}"))
            .execute(&mut listener)
            .expect("listen");
        assert!(heard(&mut listener).is_err(), "{channel}: quiet at first");
        let response = app.post(path, None).await;
        assert!(response.status().is_success(), "POST {path}");
        eventually(&format!("an announcement on {channel}"), async || {
            heard(&mut listener)
        })
        .await;
    }
}

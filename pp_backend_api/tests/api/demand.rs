//! `POST /work/demand`: accepted durably into the outbox, with no broker involved.

use pp_lib::contract::DemandAccepted;
use pp_lib::db::outbox::find_demand;
use pp_lib::demand::RANDOM_ADD_UP_TO;
use reqwest::StatusCode;

use pp_backend_api::testkit::{TestApp, TestSettings};

#[tokio::test]
async fn a_demand_is_committed_to_the_outbox_and_answered_202_with_its_message_id() {
    // The test's settings name no broker at all: acceptance never depends on RabbitMQ.
    let app = TestApp::spawn(TestSettings::new()).await;

    let response = app
        .client
        .post(app.url("/work/demand"))
        .body(r#"{"add_up_to": 2, "done": false}"#)
        .send()
        .await
        .expect("POST /work/demand");

    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: DemandAccepted = response.json().await.expect("JSON");
    assert_eq!(accepted.add_up_to, 2);
    let mut conn = app.db.connect();
    let stored = find_demand(&mut conn, accepted.message_id)
        .expect("query")
        .expect("the demand is in the outbox");
    assert_eq!(
        stored.body,
        serde_json::json!({"add_up_to": 2, "done": false})
    );
    assert_eq!(stored.published_on, None, "the relay publishes it later");
}

#[tokio::test]
async fn a_demand_without_a_body_is_random_and_ids_are_unique() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let mut ids = std::collections::HashSet::new();
    for _ in 0..5 {
        let response = app
            .client
            .post(app.url("/work/demand"))
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let accepted: DemandAccepted = response.json().await.expect("JSON");
        assert!(RANDOM_ADD_UP_TO.contains(&accepted.add_up_to));
        ids.insert(accepted.message_id);
    }
    assert_eq!(ids.len(), 5);
}

#[tokio::test]
async fn a_demand_is_followed_from_the_outbox_to_its_work() {
    use pp_lib::contract::{DemandState, DemandStatus};
    use pp_lib::db::outbox::mark_published;
    use pp_lib::db::works::record_demands;
    use pp_lib::demand::WorkDemand;
    use pp_lib::work::Work;

    let app = TestApp::spawn(TestSettings::new()).await;
    let response = app
        .client
        .post(app.url("/work/demand"))
        .body(r#"{"add_up_to": 4}"#)
        .send()
        .await
        .expect("POST /work/demand");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .expect("a Location header")
        .to_owned();
    let accepted: DemandAccepted = response.json().await.expect("JSON");
    assert_eq!(location, format!("/work/demand/{}", accepted.message_id));

    let response = app.get(&location).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let waiting: DemandStatus = response.json().await.expect("JSON");
    assert_eq!(waiting.message_id, accepted.message_id);
    assert_eq!(
        (waiting.add_up_to, waiting.done, waiting.state),
        (4, false, DemandState::Outbox)
    );
    assert_eq!(waiting.published_on, None);

    let mut conn = app.db.connect();
    mark_published(&mut conn, &[accepted.message_id]).expect("mark published");
    let response = app.get(&location).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["state"], "published", "{body}");
    assert!(body["published_on"].is_i64(), "{body}");
    assert_eq!(
        body["accepted_on"],
        waiting.accepted_on.timestamp(),
        "{body}"
    );

    let demand = WorkDemand::new(4).expect("a valid demand");
    record_demands(&mut conn, &[(accepted.message_id, demand)]).expect("recorded");
    let response = app.get(&location).await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_location = response
        .headers()
        .get("content-location")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let work: Work = response.json().await.expect("JSON");
    assert_eq!(work.demand_id, Some(accepted.message_id));
    assert!(work.done);
    assert_eq!(work.result, Some(10));
    assert_eq!(content_location, Some(format!("/work/{}", work.id)));
    let same: Work =
        serde_json::from_value(app.get_json(&format!("/work/{}", work.id)).await).expect("a work");
    assert_eq!(same, work, "the demand's work is the work at its own path");
}

#[tokio::test]
async fn a_demand_nobody_sent_is_404_and_a_malformed_id_400() {
    use pp_backend_api::testkit::error_message;
    use pp_lib::db::works::record_demands;
    use pp_lib::demand::WorkDemand;

    let app = TestApp::spawn(TestSettings::new()).await;
    let unknown = uuid::Uuid::new_v4();
    let message = error_message(
        app.get(&format!("/work/demand/{unknown}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(message, format!("no demand with id {unknown}"));
    for malformed in ["42", "not-a-uuid", "events"] {
        let message = error_message(
            app.get(&format!("/work/demand/{malformed}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(message.contains("UUID"), "{malformed}: {message}");
    }
    // A demand published straight to the queue (by task_producer) is known once its work is.
    let produced = uuid::Uuid::new_v4();
    let mut conn = app.db.connect();
    record_demands(&mut conn, &[(produced, WorkDemand::new(3).expect("valid"))]).expect("recorded");
    let work = app.get_json(&format!("/work/demand/{produced}")).await;
    assert_eq!(work["demand_id"], produced.to_string());
    assert_eq!(work["result"], 6);
}

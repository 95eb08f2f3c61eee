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

//! The whole pipeline in one process: the API (with its outbox relay), RabbitMQ, the consumer and
//! its sweeper, over one database.

use pp_backend_api::testkit::{TestApp, TestSettings, applied_wait};
use serde_json::Value;
use task_consumer::testkit::{TestConsumer, test_settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demands_and_works_created_over_http_end_up_done_with_their_events() {
    let mut app = TestApp::spawn(TestSettings::new().relaying()).await;
    let consumer = TestConsumer::start(test_settings(app.db.config(), app.queue().config())).await;

    let message_id = app.post_demand(100).await;
    let created = app.create_work(10).await;
    assert!(!created.done);

    app.db
        .eventually_count(
            &format!(
                "select count(*) as n from works where demand_id = '{message_id}' and done and result = 5050"
            ),
            1,
        )
        .await;
    app.db
        .eventually_count(
            &format!(
                "select count(*) as n from works where id = {} and done and result = 55",
                created.id
            ),
            1,
        )
        .await;
    let events = app.get_json(&format!("/work/{}/events", created.id)).await;
    let variables: Vec<&str> = events
        .as_array()
        .expect("a list")
        .iter()
        .map(|event| event["variable"].as_str().expect("a variable"))
        .collect();
    assert_eq!(
        variables,
        ["compute/start", "compute/stop", "compute/result"]
    );
    assert_eq!(events[2]["value"], Value::from("55"));
    app.db.assert_no_wrong_works();

    consumer.stop().await;
    app.stop().await.expect("the API stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_prefers_to_wait_gets_its_work_done_from_either_path() {
    let app = TestApp::spawn(TestSettings::new().relaying()).await;
    let consumer = TestConsumer::start(test_settings(app.db.config(), app.queue().config())).await;

    // Created over HTTP: the API announces it, the sweeper finishes it and announces that.
    let response = app
        .client
        .post(app.url("/work"))
        .header("prefer", "wait=25")
        .body(r#"{"add_up_to": 10}"#)
        .send()
        .await
        .expect("an answer");
    assert_eq!(applied_wait(&response), Some("wait=25"));
    let work: Value = response.json().await.expect("JSON");
    assert_eq!(
        (work["done"].as_bool(), work["result"].as_i64()),
        (Some(true), Some(55)),
        "{work}"
    );

    // A demand: outbox, relay, RabbitMQ, the consumer, its announcement.
    let message_id = app.post_demand(100).await;
    let response = app
        .client
        .get(app.url(&format!("/work/demand/{message_id}")))
        .header("prefer", "wait=25")
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let work: Value = response.json().await.expect("JSON");
    assert_eq!(work["result"], 5050, "{work}");
    assert_eq!(work["demand_id"], message_id.to_string(), "{work}");
    consumer.stop().await;
}

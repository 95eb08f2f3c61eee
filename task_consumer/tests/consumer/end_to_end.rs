//! The whole pipeline in one process: the API (with its outbox relay), RabbitMQ, the consumer and
//! its sweeper, over one database.

use pp_backend_api::testkit::{TestApp, TestSettings};
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

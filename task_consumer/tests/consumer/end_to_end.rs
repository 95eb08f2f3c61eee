//! The whole pipeline in one process: the API (with its outbox relay), RabbitMQ, the consumer and
//! its sweeper, over one database.

use std::time::Duration;

use pp_backend_api::relay::RelayConfig;
use pp_backend_api::settings::Settings as ApiSettings;
use pp_backend_api::startup::Application;
use serde_json::Value;

use crate::helpers::{Harness, start, stop};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demands_and_works_created_over_http_end_up_done_with_their_events() {
    let harness = Harness::new().await;
    let api_settings = ApiSettings {
        workers: 1,
        relay: RelayConfig {
            interval: Duration::from_millis(100),
            ..RelayConfig::to(harness.queue.config())
        },
        ..ApiSettings::local(harness.db.config())
    };
    let api = Application::build(api_settings)
        .await
        .expect("the API builds");
    let base = format!("http://{}", api.address());
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(api.run_until_stopped(async {
        let _ = api_stopped.await;
    }));
    let (trigger, running) = start(harness.settings()).await;
    let client = reqwest::Client::new();

    let accepted: Value = client
        .post(format!("{base}/work/demand"))
        .body(r#"{"add_up_to": 100}"#)
        .send()
        .await
        .expect("POST /work/demand")
        .json()
        .await
        .expect("JSON");
    let message_id = accepted["message_id"]
        .as_str()
        .expect("a message id")
        .to_owned();
    let created: Value = client
        .post(format!("{base}/work"))
        .body(r#"{"add_up_to": 10}"#)
        .send()
        .await
        .expect("POST /work")
        .json()
        .await
        .expect("JSON");
    assert_eq!(created["done"], false);

    let done_demand = format!(
        "select count(*) as n from works where demand_id = '{message_id}' and done and result = 5050"
    );
    harness
        .wait_for(&done_demand, 1, Duration::from_secs(30))
        .await;
    let api_work = created["id"].as_i64().expect("an id");
    harness
        .wait_for(
            &format!(
                "select count(*) as n from works where id = {api_work} and done and result = 55"
            ),
            1,
            Duration::from_secs(30),
        )
        .await;
    let events: Value = client
        .get(format!("{base}/work/{api_work}/events"))
        .send()
        .await
        .expect("GET events")
        .json()
        .await
        .expect("JSON");
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
    assert_eq!(events[2]["value"], "55");

    stop(trigger, running).await;
    let _ = stop_api.send(());
    api.await.expect("task").expect("the API stops");
}

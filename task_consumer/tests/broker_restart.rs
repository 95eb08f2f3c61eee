//! A real broker restart under a publishing producer and a running consumer: every demand is
//! recorded exactly once, and neither side needs help to carry on.
//!
//! It restarts the RabbitMQ that every test uses, so it is a test binary of its own: `cargo test`
//! runs test binaries one after another, never beside this one. The restart is
//! `rabbitmqctl stop_app && rabbitmqctl start_app` unless `PP_BROKER_RESTART_CMD` names another
//! command (e.g. `docker compose restart rabbitmq`).

#[allow(dead_code)]
#[path = "consumer/helpers.rs"]
mod helpers;

use std::time::Duration;

use pp_lib::amqp::{Broker, Outgoing, PublishOptions, Publisher, Reconnect};

use helpers::{DONE_FROM_QUEUE, Harness, demands, start, stop};

const DEFAULT_RESTART: &str =
    "timeout 120 rabbitmqctl stop_app && timeout 120 rabbitmqctl start_app";

fn restart_broker() {
    let command =
        std::env::var("PP_BROKER_RESTART_CMD").unwrap_or_else(|_| DEFAULT_RESTART.to_owned());
    let output = std::process::Command::new("sh")
        .args(["-c", &command])
        .output()
        .unwrap_or_else(|error| panic!("cannot run `{command}`: {error}"));
    assert!(
        output.status.success(),
        "`{command}` failed ({}): {}\nThis test restarts RabbitMQ: run it where `make setup` \
         installed it, or set PP_BROKER_RESTART_CMD.",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_ride_out_a_broker_restart_with_every_demand_once() {
    // RUST_LOG=debug shows each reconnection and each call the broker left unanswered.
    pp_lib::logging::init();
    let harness = Harness::new().await;
    let (trigger, running) = start(harness.settings()).await;
    let messages: Vec<Outgoing> = demands(4_000).iter().map(Outgoing::demand).collect();
    let ids: Vec<_> = messages.iter().map(|message| message.id).collect();
    let broker = Broker::new(
        harness.queue.url().clone(),
        harness.queue.topology().clone(),
        "test producer",
    );
    // Slow enough that the restart lands mid-stream.
    let publishing = tokio::spawn(async move {
        let mut publisher = Publisher::new(broker);
        let options = PublishOptions {
            window: 100,
            rate: Some(400.0),
            reconnect: Reconnect::Within(Duration::from_secs(60)),
        };
        let confirmed = publisher.publish(messages, &options, |_| {}).await;
        let republished = publisher.republished();
        publisher.close().await;
        (confirmed.map_err(|error| error.to_string()), republished)
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while harness.count(DONE_FROM_QUEUE) < 500 {
        assert!(
            std::time::Instant::now() < deadline,
            "no progress before the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::task::spawn_blocking(restart_broker)
        .await
        .expect("the restart command ran");
    let (confirmed, republished) = tokio::time::timeout(Duration::from_secs(180), publishing)
        .await
        .expect("publishing finishes after the restart")
        .expect("the publishing task");
    assert_eq!(confirmed, Ok(4_000), "every demand confirmed in the end");
    harness
        .wait_for(DONE_FROM_QUEUE, 4_000, Duration::from_secs(120))
        .await;
    let metrics = running.metrics.clone();
    stop(trigger, running).await;
    harness.assert_exactly_once(&ids);
    eprintln!(
        "after the restart: {republished} republished, {} duplicate deliveries skipped",
        metrics.duplicates.get()
    );
    assert_eq!(harness.queue.ready_count(harness.queue.name()).await, 0);
}

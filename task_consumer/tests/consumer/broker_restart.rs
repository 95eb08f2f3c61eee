//! A real broker restart under a publishing producer and a running consumer: every demand is
//! recorded exactly once, and neither side needs help to carry on. The broker is a RabbitMQ node
//! of the test's own (`TestBrokerNode`), restarted with `rabbitmqctl stop_app` and `start_app`;
//! the broker the other tests share is never touched.

use std::time::Duration;

use pp_lib::amqp::{Broker, Outgoing, PublishOptions, Publisher, Reconnect};
use pp_lib::config::AmqpNodes;
use pp_lib::testkit::{TestBrokerNode, TestQueue, at_least, eventually, eventually_within};
use pp_storage::testkit::{DONE_DEMANDS, TestDatabase};
use task_consumer::testkit::{TestConsumer, demands, test_settings};

/// Longest the publisher and the consumer may take to finish after the restart: the node's
/// restart itself takes seconds, and 4,000 demands at 400 a second take ten.
const AFTER_THE_RESTART: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_ride_out_a_broker_restart_with_every_demand_once() {
    // RUST_LOG=debug shows each reconnection and each call the broker left unanswered.
    pp_lib::logging::init();
    let node = TestBrokerNode::start_async().await;
    let db = TestDatabase::create_async().await;
    let queue = TestQueue::create_on(node.url()).await;
    let consumer = TestConsumer::start(test_settings(db.config(), queue.config())).await;
    let messages: Vec<Outgoing> = demands(4_000).iter().map(Outgoing::demand).collect();
    let ids: Vec<_> = messages.iter().map(|message| message.id).collect();
    let broker = Broker::new(
        AmqpNodes::one(queue.url().clone()),
        queue.topology().clone(),
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
    eventually("500 demands recorded before the restart", async || {
        at_least(db.count(DONE_DEMANDS), 500)
    })
    .await;

    let node = tokio::task::spawn_blocking(move || {
        node.restart();
        node
    })
    .await
    .expect("the restart ran");
    let (confirmed, republished) = tokio::time::timeout(AFTER_THE_RESTART, publishing)
        .await
        .expect("publishing finishes after the restart")
        .expect("the publishing task");
    assert_eq!(confirmed, Ok(4_000), "every demand confirmed in the end");
    eventually_within(AFTER_THE_RESTART, "every demand recorded", async || {
        at_least(db.count(DONE_DEMANDS), 4_000)
    })
    .await;
    let metrics = consumer.metrics.clone();
    consumer.stop().await;
    db.assert_recorded_once(&ids);
    eprintln!(
        "after the restart: {republished} republished, {} duplicate deliveries skipped",
        metrics.duplicates.get()
    );
    assert_eq!(queue.ready_count(queue.name()).await, 0);
    drop(queue);
    drop(node);
}

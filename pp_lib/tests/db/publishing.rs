//! Publishing with confirms against the real RabbitMQ: a message no queue takes is not sent.

use std::time::Duration;

use lapin::options::QueueDeleteOptions;
use pp_lib::amqp::{Broker, Outgoing, PublishOptions, Publisher, Reconnect};
use pp_lib::demand::WorkDemand;
use pp_lib::testkit::TestQueue;

#[tokio::test]
async fn a_message_no_queue_takes_is_not_counted_sent_and_goes_again_once_the_queue_is_back() {
    let queue = TestQueue::create().await;
    let broker = Broker::new(queue.config().nodes, queue.topology().clone(), "test");
    let mut publisher = Publisher::new(broker);
    let options = PublishOptions::new(Reconnect::Within(Duration::from_secs(10)));
    publisher
        .ensure_connected(&options.reconnect)
        .await
        .expect("connected, the queue declared");
    // Deleted under the publisher's connection: what it publishes now reaches no queue.
    let (connection, channel) = queue.open().await;
    channel
        .queue_delete(queue.name().into(), QueueDeleteOptions::default())
        .await
        .expect("the queue deleted");
    let _ = connection.close(200, "deleted".into()).await;
    let messages: Vec<Outgoing> = (1..=10)
        .map(|n| Outgoing::demand(&WorkDemand::new(n).expect("valid")))
        .collect();

    let confirmed = publisher
        .publish(messages, &options, |_| {})
        .await
        .expect("every message sent in the end");

    assert_eq!(confirmed, 10);
    assert!(
        publisher.republished() >= 1,
        "a returned message went again"
    );
    assert_eq!(
        queue.ready_count(queue.name()).await,
        10,
        "the queue declared again holds them all"
    );
    publisher.close().await;
}

//! Quorum queues (`PP_QUEUE_TYPE=quorum`), on the shared broker (a quorum queue of one member):
//! demands become works and poison is dead-lettered as on a classic queue; the broker itself
//! dead-letters a message handed back too often; a queue of another type is refused with the
//! way out; and a running system moves from a classic queue to a quorum one, losing nothing.

use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicNackOptions};
use pp_lib::amqp::topology::DELIVERY_LIMIT;
use pp_lib::amqp::{Broker, Outgoing, Topology};
use pp_lib::config::{AmqpNodes, QueueType};
use pp_lib::testkit::{
    TcpProxy, TestBrokerNode, TestQueue, at_least, eventually_within, socket_addr_of, via,
};
use pp_storage::testkit::{DONE_DEMANDS, TestDatabase};
use task_consumer::testkit::{TestConsumer, TestServices, demands, test_settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_quorum_queue_demands_become_works_once_and_poison_is_dead_lettered() {
    let services = TestServices::create_quorum().await;
    let consumer = TestConsumer::start(services.settings()).await;

    let ids = services.queue.publish_demands(&demands(300)).await;
    services
        .queue
        .publish_raw(b"not a demand", lapin::BasicProperties::default())
        .await;
    services.db.eventually_count(DONE_DEMANDS, 300).await;
    services
        .queue
        .eventually_holds(&services.queue.dlq(), 1)
        .await;
    consumer.stop().await;
    services.db.assert_recorded_once(&ids);
    let dead = services.queue.take_dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason().is_some(), "the consumer says why");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_dead_letters_a_message_handed_back_too_often() {
    let queue = TestQueue::create_quorum().await;
    queue
        .publish_raw(b"{\"add_up_to\": 1}", lapin::BasicProperties::default())
        .await;
    let (connection, channel) = queue.open().await;
    // Taken and handed back as a consumer that dies on it would: every delivery counted.
    let mut handed_back = 0;
    while let Some(delivery) = channel
        .basic_get(queue.name().into(), BasicGetOptions::default())
        .await
        .expect("basic.get")
    {
        delivery
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await
            .expect("basic.nack");
        handed_back += 1;
        assert!(handed_back <= DELIVERY_LIMIT + 1, "never dead-lettered");
    }
    let _ = connection.close(200, "done".into()).await;
    queue.eventually_holds(&queue.dlq(), 1).await;
    assert!(handed_back >= DELIVERY_LIMIT, "{handed_back} deliveries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_of_another_type_is_refused_with_the_way_out() {
    let classic = TestQueue::create().await;
    let mut broker = Broker::new(
        AmqpNodes::one(classic.url().clone()),
        Topology::new(classic.name(), QueueType::Quorum),
        "test",
    );

    let refused = broker
        .connect_within(Duration::from_millis(500))
        .await
        .expect_err("a classic queue is no quorum queue");

    let message = refused.to_string();
    assert!(message.contains(classic.name()), "{message}");
    assert!(message.contains("another type"), "{message}");
    assert!(message.contains("PP_QUEUE"), "{message}");
    assert!(!message.contains("guest:guest"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_system_moves_from_a_classic_queue_to_a_quorum_one_without_losing_a_demand() {
    // README, "Moving to quorum queues": consumers on the new quorum queue start beside the old
    // ones; producers and relays move to it; the old consumers drain the classic queue, then go.
    let db = TestDatabase::create_async().await;
    let classic = TestQueue::create().await;
    let quorum = TestQueue::create_quorum().await;
    let old = TestConsumer::start(test_settings(db.config(), classic.config())).await;
    let mut ids = classic.publish_demands(&demands(300)).await;

    let new = TestConsumer::start(test_settings(db.config(), quorum.config())).await;
    ids.extend(quorum.publish_demands(&demands(300)).await);
    // A producer not moved yet, and a relay that published a round to both queues (the moment
    // it moved, its confirms lost): the same demands on both sides are recorded once.
    ids.extend(classic.publish_demands(&demands(100)).await);
    let both: Vec<Outgoing> = demands(50).iter().map(Outgoing::demand).collect();
    ids.extend(both.iter().map(|message| message.id));
    classic.publish(both.clone()).await;
    quorum.publish(both).await;

    db.eventually_count(DONE_DEMANDS, 750).await;
    classic.eventually_holds(classic.name(), 0).await;
    old.stop().await;
    new.stop().await;
    db.assert_recorded_once(&ids);
    assert_eq!(quorum.ready_count(quorum.name()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_queue_on_a_broker_without_streams_is_refused_with_the_command_that_turns_them_on()
{
    let node = TestBrokerNode::start_async_without_streams().await;
    let queue = format!("{}_q", pp_lib::testkit::unique_name());
    let broker = Broker::new(
        AmqpNodes::one(node.url()),
        Topology::new(&queue, QueueType::Quorum),
        "test",
    );

    let refused = broker
        .check_features()
        .await
        .expect_err("no at-least-once dead-lettering without streams");
    let classic = Broker::new(
        AmqpNodes::one(node.url()),
        Topology::new(&queue, QueueType::Classic),
        "test",
    );

    let message = refused.to_string();
    for named in [
        queue.as_str(),
        "stream_queue",
        "rabbitmqctl enable_feature_flag stream_queue",
    ] {
        assert!(message.contains(named), "{named} in {message}");
    }
    assert!(!message.contains("guest:guest"), "{message}");
    classic
        .check_features()
        .await
        .expect("a classic queue needs no stream");
    // The consumer refuses to start on it, in one line.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_task_consumer"))
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/unused")
        .env("AMQP_URL", node.url().expose())
        .env("PP_QUEUE", &queue)
        .env("PP_QUEUE_TYPE", "quorum")
        .env("RUST_LOG", "off")
        .args(["run", "--metrics-addr", "off"])
        .kill_on_drop(true)
        .output()
        .await
        .expect("the consumer runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("enable_feature_flag stream_queue"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demand_handed_back_more_often_than_the_delivery_limit_is_still_recorded() {
    let services = TestServices::create_quorum().await;
    let proxy = TcpProxy::start(socket_addr_of(services.db.url(), 5432));
    let mut database = services.db.config();
    database.url = via(services.db.url(), proxy.addr());
    database.connect_timeout = Duration::from_secs(1);
    let mut settings = test_settings(database, services.queue.config());
    // Give up on the batch (and hand it back) after a few tries, while the database is down.
    settings.consumer.retry_for = Duration::from_millis(50);
    settings.consumer.retry_max = Duration::from_millis(20);
    proxy.cut();
    let consumer = TestConsumer::start(settings).await;
    let ids = services.queue.publish_demands(&demands(1)).await;
    let metrics = consumer.metrics.clone();

    let limit = u64::try_from(DELIVERY_LIMIT).expect("a small limit");
    eventually_within(
        Duration::from_secs(120),
        "the demand handed back past the delivery limit",
        async || at_least(metrics.handed_back.get(), limit + 5),
    )
    .await;
    proxy.restore();

    services.db.eventually_count(DONE_DEMANDS, 1).await;
    consumer.stop().await;
    services.db.assert_recorded_once(&ids);
    assert_eq!(
        services.queue.ready_count(&services.queue.dlq()).await,
        0,
        "never dead-lettered"
    );
}

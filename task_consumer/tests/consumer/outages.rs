//! The broker's and the database's connections cut under a running consumer (through a proxy
//! that closes every connection and refuses new ones, as a restarting server does), then back.

use std::time::Duration;

use pp_lib::testkit::{TcpProxy, at_least, eventually, socket_addr_of, via};
use pp_storage::testkit::DONE_DEMANDS;
use task_consumer::testkit::{TestConsumer, TestServices, demands, test_settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_rides_out_a_broker_outage_without_losing_or_duplicating() {
    let services = TestServices::create().await;
    let proxy = TcpProxy::start(socket_addr_of(services.queue.url(), 5672));
    let amqp = services
        .queue
        .config_via(via(services.queue.url(), proxy.addr()));
    let consumer = TestConsumer::start(test_settings(services.db.config(), amqp)).await;
    let mut ids = services.queue.publish_demands(&demands(500)).await;
    services.db.eventually_count(DONE_DEMANDS, 500).await;
    proxy.cut();
    // Published while the consumer cannot reach the broker.
    ids.extend(services.queue.publish_demands(&demands(500)).await);
    // The consumer tried to reach the broker again after they were published, and could not.
    let tried = proxy.attempts();
    eventually("the consumer to try the broker again", async || {
        at_least(proxy.attempts(), tried + 1)
    })
    .await;
    assert_eq!(
        services.db.count(DONE_DEMANDS),
        500,
        "nothing consumed while cut off"
    );
    proxy.restore();
    services.db.eventually_count(DONE_DEMANDS, 1_000).await;
    consumer.stop().await;
    services.db.assert_recorded_once(&ids);
    assert_eq!(services.queue.ready_count(services.queue.name()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_retries_while_the_database_is_down_and_loses_nothing() {
    let services = TestServices::create().await;
    let proxy = TcpProxy::start(socket_addr_of(services.db.url(), 5432));
    let mut database = services.db.config();
    database.url = via(services.db.url(), proxy.addr());
    database.connect_timeout = Duration::from_secs(2);
    let consumer = TestConsumer::start(test_settings(database, services.queue.config())).await;
    let mut ids = services.queue.publish_demands(&demands(200)).await;
    services.db.eventually_count(DONE_DEMANDS, 200).await;
    proxy.cut();
    ids.extend(services.queue.publish_demands(&demands(300)).await);
    let metrics = consumer.metrics.clone();
    eventually("retries while the database is down", async || {
        at_least(metrics.retries.get(), 2)
    })
    .await;
    assert_eq!(services.db.count(DONE_DEMANDS), 200);
    proxy.restore();
    services.db.eventually_count(DONE_DEMANDS, 500).await;
    consumer.stop().await;
    services.db.assert_recorded_once(&ids);
    assert_eq!(metrics.dead_lettered.get(), 0);
    assert_eq!(services.queue.ready_count(services.queue.name()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_the_database_is_down_takes_one_grace_period_and_loses_nothing() {
    let services = TestServices::create().await;
    let proxy = TcpProxy::start(socket_addr_of(services.db.url(), 5432));
    let mut database = services.db.config();
    database.url = via(services.db.url(), proxy.addr());
    database.connect_timeout = Duration::from_secs(1);
    let mut cut_off = test_settings(database, services.queue.config());
    cut_off.consumer.batch_size = 4;
    cut_off.consumer.shutdown_grace = Duration::from_secs(2);
    proxy.cut();
    let consumer = TestConsumer::start(cut_off).await;
    let ids = services.queue.publish_demands(&demands(100)).await;
    let metrics = consumer.metrics.clone();
    eventually("retries while the database is down", async || {
        at_least(metrics.retries.get(), 3)
    })
    .await;
    // Every worker holds a batch it cannot record; many more wait behind them.
    let asked = std::time::Instant::now();
    consumer.stop().await;
    let took = asked.elapsed();
    // One grace period for the whole process, not one per batch (25 of them).
    pp_lib::testkit::assert_prompt(took, Duration::from_secs(2), "a stop");
    assert_eq!(services.db.count(DONE_DEMANDS), 0);
    // Nothing was acked: a consumer that can reach the database records all of it, once.
    let consumer = TestConsumer::start(services.settings()).await;
    services.db.eventually_count(DONE_DEMANDS, 100).await;
    consumer.stop().await;
    services.db.assert_recorded_once(&ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_several_nodes_the_consumer_takes_one_that_answers_and_moves_on_when_it_goes() {
    let services = TestServices::create().await;
    let url = services.queue.url();
    let first = TcpProxy::start(socket_addr_of(url, 5672));
    let second = TcpProxy::start(socket_addr_of(url, 5672));
    // Two nodes in AMQP_URL, both in front of the test's broker; the first does not answer.
    first.cut();
    let nodes = format!(
        "{},{}",
        via(url, first.addr()).expose(),
        via(url, second.addr()).expose()
    );
    let mut amqp = services.queue.config();
    amqp.nodes = nodes.parse().expect("two nodes");
    let consumer = TestConsumer::start(test_settings(services.db.config(), amqp)).await;

    let mut ids = services.queue.publish_demands(&demands(300)).await;
    services.db.eventually_count(DONE_DEMANDS, 300).await;
    assert!(first.attempts() >= 1, "the first node was tried first");
    assert!(second.attempts() >= 1, "and the second taken");

    // The node it is on goes away, and the other is back: it moves there.
    let before = first.attempts();
    first.restore();
    second.cut();
    ids.extend(services.queue.publish_demands(&demands(300)).await);
    services.db.eventually_count(DONE_DEMANDS, 600).await;
    assert!(
        first.attempts() > before,
        "consuming again through the first node"
    );
    consumer.stop().await;
    services.db.assert_recorded_once(&ids);
}

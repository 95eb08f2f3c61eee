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
    assert!(
        took < Duration::from_secs(15),
        "one grace period for the whole process, not one per batch: {took:?}"
    );
    assert_eq!(services.db.count(DONE_DEMANDS), 0);
    // Nothing was acked: a consumer that can reach the database records all of it, once.
    let consumer = TestConsumer::start(services.settings()).await;
    services.db.eventually_count(DONE_DEMANDS, 100).await;
    consumer.stop().await;
    services.db.assert_recorded_once(&ids);
}

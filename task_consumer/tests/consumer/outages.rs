//! The broker's and the database's connections cut under a running consumer (through a proxy
//! that closes every connection and refuses new ones, as a restarting server does), then back.

use std::time::Duration;

use pp_lib::config::AmqpConfig;
use pp_lib::testkit::{TcpProxy, socket_addr_of, via};

use crate::helpers::{DONE_FROM_QUEUE, Harness, demands, settings, start, stop};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_rides_out_a_broker_outage_without_losing_or_duplicating() {
    let harness = Harness::new().await;
    let proxy = TcpProxy::start(socket_addr_of(harness.queue.url(), 5672));
    let amqp = AmqpConfig {
        url: via(harness.queue.url(), proxy.addr()),
        ..harness.queue.config()
    };
    let (trigger, running) = start(settings(harness.db.config(), amqp)).await;
    let mut ids = harness.publish(&demands(500)).await;
    harness
        .wait_for(DONE_FROM_QUEUE, 500, Duration::from_secs(60))
        .await;
    proxy.cut();
    // Published while the consumer cannot reach the broker.
    ids.extend(harness.publish(&demands(500)).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        harness.count(DONE_FROM_QUEUE),
        500,
        "nothing consumed while cut off"
    );
    proxy.restore();
    harness
        .wait_for(DONE_FROM_QUEUE, 1_000, Duration::from_secs(60))
        .await;
    stop(trigger, running).await;
    harness.assert_exactly_once(&ids);
    assert_eq!(harness.queue.ready_count(harness.queue.name()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_retries_while_the_database_is_down_and_loses_nothing() {
    let harness = Harness::new().await;
    let proxy = TcpProxy::start(socket_addr_of(harness.db.url(), 5432));
    let mut database = harness.db.config();
    database.url = via(harness.db.url(), proxy.addr());
    database.connect_timeout = Duration::from_secs(2);
    let (trigger, running) = start(settings(database, harness.queue.config())).await;
    let mut ids = harness.publish(&demands(200)).await;
    harness
        .wait_for(DONE_FROM_QUEUE, 200, Duration::from_secs(60))
        .await;
    proxy.cut();
    ids.extend(harness.publish(&demands(300)).await);
    let metrics = running.metrics.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metrics.retries.get() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no retries while the database is down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(harness.count(DONE_FROM_QUEUE), 200);
    proxy.restore();
    harness
        .wait_for(DONE_FROM_QUEUE, 500, Duration::from_secs(60))
        .await;
    stop(trigger, running).await;
    harness.assert_exactly_once(&ids);
    assert_eq!(metrics.dead_lettered.get(), 0);
    assert_eq!(harness.queue.ready_count(harness.queue.name()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_the_database_is_down_takes_one_grace_period_and_loses_nothing() {
    let harness = Harness::new().await;
    let proxy = TcpProxy::start(socket_addr_of(harness.db.url(), 5432));
    let mut database = harness.db.config();
    database.url = via(harness.db.url(), proxy.addr());
    database.connect_timeout = Duration::from_secs(1);
    let mut cut_off = settings(database, harness.queue.config());
    cut_off.consumer.batch_size = 4;
    cut_off.consumer.shutdown_grace = Duration::from_secs(2);
    proxy.cut();
    let (trigger, running) = start(cut_off).await;
    let ids = harness.publish(&demands(100)).await;
    let metrics = running.metrics.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metrics.retries.get() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "no retries while the database is down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every worker holds a batch it cannot record; many more wait behind them.
    let asked = std::time::Instant::now();
    stop(trigger, running).await;
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "one grace period for the whole process, not one per batch: {took:?}"
    );
    assert_eq!(harness.count(DONE_FROM_QUEUE), 0);
    // Nothing was acked: a consumer that can reach the database records all of it, once.
    let (trigger, running) = start(harness.settings()).await;
    harness
        .wait_for(DONE_FROM_QUEUE, 100, Duration::from_secs(60))
        .await;
    stop(trigger, running).await;
    harness.assert_exactly_once(&ids);
}

//! On a RabbitMQ cluster of the test's own (three nodes, a quorum queue replicated on each): the
//! node that leads the queue, which the consumer and the publisher are both connected to, is
//! killed with SIGKILL while demands flow, and booted again. Both move to another node (every
//! process lists the three), and every demand the broker confirmed is recorded, once. And a node
//! frozen (SIGSTOP) past the cluster's tick time rejoins by itself once resumed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pp_lib::amqp::{Broker, Outgoing, PublishOptions, Publisher, Reconnect};
use pp_lib::config::AmqpNodes;
use pp_lib::testkit::{TestCluster, TestQueue, at_least, eventually, eventually_within};
use pp_storage::testkit::{DONE_DEMANDS, TestDatabase};
use task_consumer::testkit::{TestConsumer, demands, test_settings};
use uuid::Uuid;

/// Demands published in all, at [`RATE`] a second: the kill falls in the middle of them.
const DEMANDS: usize = 3_000;
const RATE: f64 = 300.0;

/// The cluster's nodes listed from `first` on, round the list: where a process connects first.
fn nodes_from(cluster: &TestCluster, first: usize) -> AmqpNodes {
    let urls: Vec<String> = (0..cluster.len())
        .map(|offset| {
            let node = cluster.node((first + offset) % cluster.len());
            node.url().expose().to_owned()
        })
        .collect();
    urls.join(",").parse().expect("node URLs are AMQP URLs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_node_that_leads_the_queue_and_serves_both_ends_loses_no_demand() {
    let cluster = Arc::new(TestCluster::start_async(3).await);
    let db = TestDatabase::create_async().await;
    let queue = TestQueue::create_quorum_on(cluster.nodes()).await;
    let leader = cluster
        .leader_of(queue.name(), None)
        .expect("the queue has a leader");
    // Both ends connect to the leader's node first.
    let mut amqp = queue.config();
    amqp.nodes = nodes_from(&cluster, leader);
    let consumer = TestConsumer::start(test_settings(db.config(), amqp.clone())).await;
    let confirmed = Arc::new(Mutex::new(HashSet::<Uuid>::new()));
    let publishing = {
        let confirmed = confirmed.clone();
        let broker = Broker::new(amqp.nodes.clone(), queue.topology().clone(), "test");
        tokio::spawn(async move {
            let mut publisher = Publisher::new(broker);
            let options = PublishOptions {
                rate: Some(RATE),
                ..PublishOptions::new(Reconnect::Within(Duration::from_secs(60)))
            };
            let messages: Vec<Outgoing> = demands(DEMANDS).iter().map(Outgoing::demand).collect();
            let outcome = publisher
                .publish(messages, &options, |message| {
                    confirmed
                        .lock()
                        .expect("the confirmed ids")
                        .insert(message.id);
                })
                .await;
            publisher.close().await;
            outcome
        })
    };
    let count =
        |confirmed: &Arc<Mutex<HashSet<Uuid>>>| confirmed.lock().expect("the confirmed ids").len();
    eventually("a few hundred demands confirmed", async || {
        at_least(count(&confirmed), 300)
    })
    .await;
    // The consumer is on the leader's node: the kill takes its connection too.
    let listed = cluster.clone();
    let name = queue.name().to_owned();
    let consumers_node =
        tokio::task::spawn_blocking(move || listed.node_with_most_consumers(&name))
            .await
            .expect("the consumers listed");
    assert_eq!(
        consumers_node,
        Some(leader),
        "the consumer is on the leader's node"
    );

    let killed = cluster.clone();
    tokio::task::spawn_blocking(move || killed.node(leader).kill())
        .await
        .expect("killed");
    let other = cluster
        .leader_of(queue.name(), Some(leader))
        .expect("a new leader");
    assert_ne!(other, leader, "another node leads the queue now");
    let booted = cluster.clone();
    tokio::task::spawn_blocking(move || booted.node(leader).boot())
        .await
        .expect("booted");
    eventually_within(
        Duration::from_secs(120),
        "the publisher to finish",
        async || {
            if publishing.is_finished() {
                Ok(())
            } else {
                Err(count(&confirmed))
            }
        },
    )
    .await;
    let outcome = publishing.await.expect("the publisher's task");

    assert_eq!(outcome.expect("every demand confirmed"), DEMANDS as u64);
    let ids: Vec<Uuid> = confirmed
        .lock()
        .expect("the confirmed ids")
        .iter()
        .copied()
        .collect();
    assert_eq!(ids.len(), DEMANDS, "each confirmed once, as a set");
    db.eventually_count(DONE_DEMANDS, DEMANDS as i64).await;
    consumer.stop().await;
    db.assert_recorded_once(&ids);
    drop(queue);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_frozen_past_the_tick_time_rejoins_and_the_queue_serves_through_every_node() {
    let cluster = Arc::new(TestCluster::start_async(3).await);
    let queue = TestQueue::create_quorum_on(cluster.nodes()).await;

    // Frozen (SIGSTOP) until the others declare it down, then resumed: both sides saw a
    // partition.
    let frozen = cluster.clone();
    tokio::task::spawn_blocking(move || {
        frozen.node(2).pause();
        pp_lib::testkit::eventually_blocking("the others to see the frozen node down", || {
            match frozen.node(0).cluster_view() {
                Some(view) if view.running.len() == 2 => Ok(()),
                other => Err(other),
            }
        });
        frozen.node(2).resume();
        frozen.wait_until_whole();
    })
    .await
    .expect("the cluster whole again");

    // Published through each node in turn (the frozen one first), all taken from the queue.
    for first in [2, 0, 1] {
        let broker = Broker::new(
            nodes_from(&cluster, first),
            queue.topology().clone(),
            "test",
        );
        let mut publisher = Publisher::new(broker);
        let options = PublishOptions::new(Reconnect::Within(Duration::from_secs(30)));
        let messages: Vec<Outgoing> = demands(10).iter().map(Outgoing::demand).collect();
        let ids: HashSet<Uuid> = messages.iter().map(|message| message.id).collect();
        let confirmed = publisher
            .publish(messages, &options, |_| {})
            .await
            .expect("confirmed");
        publisher.close().await;
        let taken: HashSet<Uuid> = queue
            .take_all(queue.name())
            .await
            .iter()
            .map(pp_lib::testkit::Taken::id)
            .collect();
        assert_eq!((confirmed, taken), (10, ids), "through node {first} first");
    }
}

//! On a RabbitMQ cluster of the test's own (three nodes, a quorum queue replicated on each): the
//! node that leads the queue is killed with SIGKILL under a running consumer and publisher, and
//! brought back. Every process lists the three nodes, moves to another, and nothing is lost or
//! recorded twice.

use pp_lib::testkit::{TestCluster, TestQueue};
use pp_storage::testkit::{DONE_DEMANDS, TestDatabase};
use task_consumer::testkit::{TestConsumer, demands, test_settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_node_that_leads_the_queue_loses_no_demand_and_records_none_twice() {
    let cluster = std::sync::Arc::new(TestCluster::start_async(3).await);
    let db = TestDatabase::create_async().await;
    let queue = TestQueue::create_quorum_on(cluster.nodes()).await;
    let consumer = TestConsumer::start(test_settings(db.config(), queue.config())).await;

    let mut ids = queue.publish_demands(&demands(1_000)).await;
    let leader = cluster
        .leader_of(queue.name(), None)
        .expect("the queue has a leader");
    let killed = cluster.clone();
    tokio::task::spawn_blocking(move || killed.node(leader).kill())
        .await
        .expect("killed");
    // Published while the leader is gone: the publisher moves to another node, a new leader is
    // elected among the two left, and the consumer follows.
    ids.extend(queue.publish_demands(&demands(1_000)).await);
    db.eventually_count(DONE_DEMANDS, 2_000).await;
    let other = cluster
        .leader_of(queue.name(), Some(leader))
        .expect("a new leader");
    assert_ne!(other, leader, "another node leads the queue now");

    let booted = cluster.clone();
    tokio::task::spawn_blocking(move || booted.node(leader).boot())
        .await
        .expect("booted");
    ids.extend(queue.publish_demands(&demands(500)).await);
    db.eventually_count(DONE_DEMANDS, 2_500).await;
    consumer.stop().await;
    db.assert_recorded_once(&ids);
    drop(queue);
}

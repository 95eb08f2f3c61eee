//! The test kit itself: what a test makes is gone when the test is.

use pp_lib::amqp::dead_letter_queue::queue_depth;
use pp_lib::testkit::ports::reserve_port;
use pp_lib::testkit::{TestBrokerNode, TestQueue, TestRedis};

#[tokio::test]
async fn a_dropped_test_queue_is_deleted_with_its_dead_letter_queue() {
    let queue = TestQueue::create().await;
    let names = [queue.name().to_owned(), queue.dlq()];
    let witness = TestQueue::create().await;
    for name in &names {
        let (connection, channel) = witness.open().await;
        assert!(queue_depth(&channel, name).await.is_ok(), "{name} exists");
        let _ = connection.close(200, "checked".into()).await;
    }

    drop(queue);

    for name in &names {
        // A passive declare of a queue that is gone is refused (404), and closes the channel.
        let (connection, channel) = witness.open().await;
        assert!(queue_depth(&channel, name).await.is_err(), "{name} is gone");
        let _ = connection.close(200, "checked".into()).await;
    }
}

#[test]
fn a_dropped_test_redis_prefix_takes_its_keys_along() {
    let redis = TestRedis::create();
    let prefix = redis.prefix().to_owned();
    let mut conn = redis.connection();
    redis::cmd("SET")
        .arg(format!("{prefix}:a"))
        .arg("1")
        .query::<()>(&mut conn)
        .expect("SET");
    assert_eq!(redis.keys().len(), 1);

    drop(redis);

    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut conn)
        .expect("KEYS");
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_broker_node_whose_ports_another_program_took_starts_on_others() {
    // Another program listens on the first AMQP port the node is given, then on the second
    // distribution port (the ports come two at a time: AMQP, distribution).
    let mut squatters = Vec::new();
    let mut given = 0;
    let node = TestBrokerNode::start_reserving(|| {
        let reservation = reserve_port();
        if given == 0 || given == 3 {
            squatters.push(
                std::net::TcpListener::bind(("0.0.0.0", reservation.port()))
                    .expect("the reserved port is free"),
            );
        }
        given += 1;
        reservation
    });

    assert_eq!(given, 6, "a third pair of ports");
    let taken: Vec<u16> = squatters
        .iter()
        .map(|squatter| squatter.local_addr().expect("bound").port())
        .collect();
    let url = node.url();
    assert!(
        taken
            .iter()
            .all(|port| !url.expose().contains(&format!(":{port}/"))),
        "{taken:?}: {url}"
    );
    node.ctl(&["status"]);
}

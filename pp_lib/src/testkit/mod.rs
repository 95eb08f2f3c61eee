//! The ground every test of pp stands on (feature `testkit`): each test has the services of its
//! own, waits one way, and leaves nothing behind.
//!
//! - [`wait`]: [`eventually`], the one way a test waits for something, with one patience.
//! - [`queue`]: [`TestQueue`], a work queue (and its `.dlq`) with a unique name on the shared
//!   RabbitMQ, deleted when dropped; publishing demands with confirms, taking what a queue holds.
//! - [`redis`]: [`TestRedis`], a key prefix of its own on the shared Redis, its keys deleted when
//!   dropped.
//! - [`cluster`]: [`TestCluster`], RabbitMQ nodes of the test's own joined into one cluster.
//! - [`broker_node`]: [`TestBrokerNode`], a RabbitMQ node of the test's own on free ports, for
//!   tests that restart or reconfigure a broker (the shared one is never touched).
//! - [`faulty_broker`]: [`FaultyBroker`], an AMQP forwarder that stalls, nacks confirms or blocks
//!   the connection, the ways a broker under stress does.
//! - [`proxy`]: [`TcpProxy`], a TCP forwarder a test cuts and restores, to show what a client
//!   does when its broker or database goes away, without disturbing the servers others share.
//! - [`ports`]: a port held closed for a test's life ([`ports::closed_port`]), and a port
//!   reserved for a program the test must tell its port ([`ports::reserve_port`]), never raced
//!   by the tests running beside it.
//! - [`process`]: a child process stopped the way process managers stop it, and waited for.
//! - [`flags`]: extreme flag values, and running a binary with each one it accepts.
//!
//! A database of the test's own is pp_storage's `TestDatabase`; the API and the consumer have
//! their own kits (`pp_backend_api::testkit`, `task_consumer::testkit`) built on these. Each
//! service is the one its variable names (`DATABASE_URL`, `AMQP_URL`, `REDIS_URL`, from the
//! environment or `.env`) or the local default; a test that cannot reach it fails naming
//! `make setup`, never skips.

pub mod broker_node;
pub mod cluster;
pub mod faulty_broker;
pub mod flags;
pub mod nginx;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod queue;
pub mod redis;
pub mod wait;

pub use broker_node::TestBrokerNode;
pub use cluster::TestCluster;
pub use faulty_broker::FaultyBroker;
pub use nginx::TestNginx;
pub use process::{KillOnDrop, terminate, wait_exit};
pub use proxy::{TcpProxy, socket_addr_of, via};
pub use queue::{Taken, TestQueue, amqp_url};
pub use redis::{TestRedis, redis_url};
pub use wait::{
    SLACK, assert_prompt, at_least, eventually, eventually_blocking, eventually_blocking_within,
    eventually_within, exactly, within, within_blocking,
};

/// What the name of everything a test makes starts with (databases, queues, Redis prefixes,
/// broker nodes), so leftovers are easy to recognise.
pub const TEST_NAME_PREFIX: &str = "pp_test_";

/// A name no other test, process or run uses, and dated, so a leftover of a killed run shows
/// its age: `pp_test_<unix seconds>_<pid>_<counter>_<random>`, lowercase.
pub fn unique_name() -> String {
    use rand::Rng;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let random: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(6)
        .map(char::from)
        .collect();
    format!(
        "{TEST_NAME_PREFIX}{seconds}_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        random.to_ascii_lowercase()
    )
}

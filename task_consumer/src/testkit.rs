//! The consumer in a test (feature `testkit`): the one way every test, example and tool starts it
//! in-process.
//!
//! - [`TestServices`]: a database and a queue of the test's own, what a consumer runs over.
//! - [`test_settings`]: the consumer's settings for a test, written once: small batches, a
//!   sweeper that looks every 200 ms, short retries, metrics on a free port.
//! - [`TestConsumer`]: a running consumer (with its sweeper), stopped on [`TestConsumer::stop`]
//!   or when dropped.
//!
//! ```text
//! let services = TestServices::create().await;
//! let consumer = TestConsumer::start(services.settings()).await;
//! let ids = services.queue.publish_demands(&demands(100)).await;
//! services.db.eventually_count(DONE_DEMANDS, 100).await;
//! consumer.stop().await;
//! services.db.assert_recorded_once(&ids);
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pp_lib::config::{AmqpConfig, CacheConfig, DatabaseConfig, RedisConfig};
use pp_lib::demand::WorkDemand;
use pp_lib::shutdown::{Shutdown, ShutdownTrigger};
use pp_lib::testkit::TestQueue;
use pp_lib::testkit::wait::finish_in_drop;
use pp_storage::testkit::TestDatabase;

use crate::Running;
use crate::metrics::Metrics;
use crate::settings::{ConsumerConfig, MetricsAddr, Settings, SweeperConfig};

/// Longest a test's consumer may take to stop: its grace period and some.
const STOP_PATIENCE: Duration = Duration::from_secs(20);

/// The consumer's settings for a test over `database` and `amqp`: batches of 64 from a prefetch
/// of 256 on three workers, retries at most 500 ms apart, five seconds' grace, the sweeper every
/// 200 ms over the usual six hours, no Redis, metrics on a free port.
pub fn test_settings(database: DatabaseConfig, amqp: AmqpConfig) -> Settings {
    Settings {
        amqp,
        database,
        consumer: ConsumerConfig {
            prefetch: 256,
            batch_size: 64,
            workers: 3,
            retry_max: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(5),
            ..pp_lib::config::defaults()
        },
        sweeper: SweeperConfig {
            every: Duration::from_millis(200),
            ..pp_lib::config::defaults()
        },
        redis: RedisConfig::default(),
        cache: CacheConfig::default(),
        metrics_addr: MetricsAddr(Some(SocketAddr::from(([127, 0, 0, 1], 0)))),
    }
}

/// `count` valid demands, `add_up_to` 0, 1, 2, … (from 0 again past 499).
pub fn demands(count: usize) -> Vec<WorkDemand> {
    (0..count)
        .map(|i| {
            let add_up_to = i32::try_from(i % 500).expect("below 500");
            WorkDemand::new(add_up_to).expect("0 to 499 are valid")
        })
        .collect()
}

/// A database and a queue of the test's own.
pub struct TestServices {
    pub db: TestDatabase,
    pub queue: TestQueue,
}

impl TestServices {
    pub async fn create() -> TestServices {
        TestServices {
            db: TestDatabase::create_async().await,
            queue: TestQueue::create().await,
        }
    }

    /// The same with a quorum queue (and dead-letter queue).
    pub async fn create_quorum() -> TestServices {
        TestServices {
            db: TestDatabase::create_async().await,
            queue: TestQueue::create_quorum().await,
        }
    }

    /// [`test_settings`] over this database and queue.
    pub fn settings(&self) -> Settings {
        test_settings(self.db.config(), self.queue.config())
    }
}

/// A consumer running in this process.
pub struct TestConsumer {
    pub metrics: Arc<Metrics>,
    /// Where its metrics are served, when they are.
    pub metrics_addr: Option<SocketAddr>,
    trigger: Option<ShutdownTrigger>,
    running: Option<Running>,
}

impl TestConsumer {
    /// Starts the consumer and its sweeper with `settings`.
    pub async fn start(settings: Settings) -> TestConsumer {
        let (trigger, shutdown) = Shutdown::new();
        let running = crate::start(settings, shutdown)
            .await
            .unwrap_or_else(|error| panic!("the consumer does not start: {error:#}"));
        TestConsumer {
            metrics: running.metrics.clone(),
            metrics_addr: running.metrics_addr,
            trigger: Some(trigger),
            running: Some(running),
        }
    }

    /// Stops it as SIGTERM would and waits until it has stopped, in-flight work finished.
    pub async fn stop(mut self) {
        if let Some(trigger) = self.trigger.take() {
            trigger.trigger();
        }
        if let Some(running) = self.running.take() {
            tokio::time::timeout(STOP_PATIENCE, running.stopped())
                .await
                .expect("the consumer stops in time")
                .expect("the consumer stops cleanly");
        }
    }
}

impl Drop for TestConsumer {
    fn drop(&mut self) {
        // A test that ends without stopping its consumer (or panics) stops it here, and lets it
        // finish (where the runtime allows) before its queue is deleted: a consumer left
        // running would declare the queue again.
        if let Some(trigger) = self.trigger.take() {
            trigger.trigger();
        }
        if let Some(running) = self.running.take() {
            finish_in_drop(STOP_PATIENCE, running.stopped());
        }
    }
}

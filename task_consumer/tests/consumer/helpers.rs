//! The consumer's test harness: a database and a queue of the test's own, the consumer started
//! in-process with settings pointing at them, demands published with confirms, and polling
//! helpers that wait (with a bound) for the database to show the outcome.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use pp_lib::amqp::{Broker, Outgoing, PublishOptions, Publisher, Reconnect};
use pp_lib::config::{AmqpConfig, CacheConfig, DatabaseConfig, RedisConfig};
use pp_lib::demand::WorkDemand;
use pp_lib::shutdown::{Shutdown, ShutdownTrigger};
use pp_lib::testkit::TestQueue;
use pp_storage::testkit::TestDatabase;
use task_consumer::Running;
use task_consumer::settings::{ConsumerConfig, MetricsAddr, Settings, SweeperConfig};
use uuid::Uuid;

/// A message read from the dead-letter queue.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub body: Vec<u8>,
    pub message_id: Option<String>,
    /// The `x-pp-reason` header.
    pub reason: Option<String>,
    /// The `x-pp-queue` header.
    pub queue: Option<String>,
    /// The `x-pp-dead-lettered-at` header.
    pub at: Option<String>,
}

/// A test's own database and queue.
pub struct Harness {
    pub db: TestDatabase,
    pub queue: TestQueue,
}

impl Harness {
    pub async fn new() -> Harness {
        let db = tokio::task::spawn_blocking(TestDatabase::create)
            .await
            .expect("the test database is created");
        Harness {
            db,
            queue: TestQueue::create().await,
        }
    }

    pub fn settings(&self) -> Settings {
        settings(self.db.config(), self.queue.config())
    }

    /// Publishes `demands` with fresh ids, all confirmed; returns the ids.
    pub async fn publish(&self, demands: &[WorkDemand]) -> Vec<Uuid> {
        let messages: Vec<Outgoing> = demands.iter().map(Outgoing::demand).collect();
        let ids = messages.iter().map(|message| message.id).collect();
        self.publish_messages(messages).await;
        ids
    }

    pub async fn publish_messages(&self, messages: Vec<Outgoing>) {
        let count = messages.len() as u64;
        let broker = Broker::new(
            self.queue.url().clone(),
            self.queue.topology().clone(),
            "test",
        );
        let mut publisher = Publisher::new(broker);
        let options = PublishOptions::new(Reconnect::Within(Duration::from_secs(10)));
        let confirmed = publisher
            .publish(messages, &options, |_| {})
            .await
            .expect("every message is confirmed");
        publisher.close().await;
        assert_eq!(confirmed, count);
    }

    /// Takes every message from the dead-letter queue.
    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        use lapin::options::BasicGetOptions;
        use pp_lib::amqp::dead_letter::{
            DEAD_LETTERED_AT_HEADER, QUEUE_HEADER, REASON_HEADER, header_text,
        };
        let (connection, channel) = self.queue.open().await;
        let dlq = self.queue.topology().dead_letter_queue();
        let mut letters = Vec::new();
        while let Some(message) = channel
            .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap_or_else(|error| panic!("cannot read {dlq}: {error}"))
        {
            let properties = &message.delivery.properties;
            letters.push(DeadLetter {
                body: message.delivery.data.clone(),
                message_id: properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.as_str().to_owned()),
                reason: header_text(properties, REASON_HEADER),
                queue: header_text(properties, QUEUE_HEADER),
                at: header_text(properties, DEAD_LETTERED_AT_HEADER),
            });
        }
        let _ = connection.close(200, "drained".into()).await;
        letters
    }

    /// Waits until the dead-letter queue holds `expected` messages.
    pub async fn wait_for_dead_letters(&self, expected: u32, patience: Duration) {
        let dlq = self.queue.topology().dead_letter_queue();
        let deadline = Instant::now() + patience;
        loop {
            let ready = self.queue.ready_count(&dlq).await;
            if ready == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited {patience:?} for {expected} dead letters, have {ready}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db.count(sql)
    }

    /// Waits until `sql` counts `expected` rows; panics with the last count after `patience`.
    pub async fn wait_for(&self, sql: &str, expected: i64, patience: Duration) {
        let deadline = Instant::now() + patience;
        loop {
            let n = self.count(sql);
            if n == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited {patience:?} for {expected} from `{sql}`, have {n}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asserts the database holds exactly one done work per id, each with its result and its
    /// three events, and nothing else from the queue.
    pub fn assert_exactly_once(&self, ids: &[Uuid]) {
        let mut conn = self.db.connect();
        let stored: Vec<Option<Uuid>> = pp_lib::schema::works::table
            .filter(pp_lib::schema::works::demand_id.is_not_null())
            .select(pp_lib::schema::works::demand_id)
            .load(&mut conn)
            .expect("load the demand ids");
        let stored: Vec<Uuid> = stored.into_iter().flatten().collect();
        let unique: HashSet<Uuid> = stored.iter().copied().collect();
        assert_eq!(unique.len(), stored.len(), "a demand was recorded twice");
        let expected: HashSet<Uuid> = ids.iter().copied().collect();
        assert_eq!(
            unique, expected,
            "the recorded demands differ from the published ones"
        );
        assert_eq!(
            self.count(BROKEN_WORKS),
            0,
            "works without their result or events"
        );
    }
}

/// Works from the queue that are not done with the right result and exactly three events.
pub const BROKEN_WORKS: &str = "select count(*) as n from works w \
    where demand_id is not null and not (done and result = add_up_to::bigint * (add_up_to + 1) / 2 \
    and w.work_code like 'consumer-%' \
    and (select count(*) from events e where e.work_id = w.id) = 3 \
    and exists (select 1 from events e where e.work_id = w.id and e.variable = 'compute/result' \
                and e.value = w.result::text))";

pub const DONE_FROM_QUEUE: &str =
    "select count(*) as n from works where demand_id is not null and done";

pub fn settings(database: DatabaseConfig, amqp: AmqpConfig) -> Settings {
    Settings {
        amqp,
        database,
        consumer: ConsumerConfig {
            prefetch: 256,
            batch_size: 64,
            workers: 3,
            retry_max: Duration::from_millis(500),
            retry_for: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(5),
        },
        sweeper: SweeperConfig {
            every: Duration::from_millis(200),
            window: Duration::from_secs(6 * 3600),
            batch: 100,
        },
        redis: RedisConfig::default(),
        cache: CacheConfig::default(),
        metrics_addr: MetricsAddr(Some("127.0.0.1:0".parse().expect("an address"))),
    }
}

/// Starts a consumer in this process.
pub async fn start(settings: Settings) -> (ShutdownTrigger, Running) {
    let (trigger, shutdown) = Shutdown::new();
    let running = task_consumer::start(settings, shutdown)
        .await
        .expect("the consumer starts");
    (trigger, running)
}

/// Stops a consumer started by [`start`] and waits for it.
pub async fn stop(trigger: ShutdownTrigger, running: Running) {
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(20), running.stopped())
        .await
        .expect("the consumer stops in time")
        .expect("the consumer stops cleanly");
}

pub fn demands(count: usize) -> Vec<WorkDemand> {
    (0..count)
        .map(|i| WorkDemand::new(i32::try_from(i % 500).expect("small")).expect("valid"))
        .collect()
}

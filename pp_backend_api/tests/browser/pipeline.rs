//! The whole pipeline in one process, for a browser to look at: the API on a free port of
//! 127.0.0.1 with its outbox relay, over its own database and its own queue, and (when asked)
//! the real consumer with its sweeper. Dropping it stops everything and removes the database
//! and the queues.

use std::time::Duration;

use lapin::BasicProperties;
use pp_backend_api::relay::RelayConfig;
use pp_backend_api::settings::Settings;
use pp_backend_api::startup::Application;
use pp_lib::config::{CacheConfig, RedisConfig};
use pp_lib::shutdown::{Shutdown, ShutdownTrigger};
use pp_lib::testkit::TestQueue;
use pp_storage::testkit::TestDatabase;
use task_consumer::settings::{ConsumerConfig, MetricsAddr, SweeperConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running API (and maybe consumer) over its own database and queue.
pub struct Pipeline {
    pub url: String,
    pub db: TestDatabase,
    pub queue: TestQueue,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    consumer: Option<(ShutdownTrigger, task_consumer::Running)>,
}

/// How the pipeline starts.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Start the consumer (and its sweeper) with the API.
    pub consumer: bool,
    /// `PP_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
}

impl Pipeline {
    pub async fn start(options: Options) -> Pipeline {
        let db = tokio::task::spawn_blocking(TestDatabase::create)
            .await
            .expect("creating the test database");
        let queue = TestQueue::create().await;
        let mut settings = Settings {
            workers: 2,
            shutdown_timeout: Duration::from_secs(5),
            ..Settings::local(db.config())
        };
        settings.relay = RelayConfig {
            interval: Duration::from_millis(200),
            ..RelayConfig::to(queue.config())
        };
        settings.dashboard.admin_token = options
            .admin_token
            .as_deref()
            .map(|token| token.parse().expect("a valid admin token"));
        let application = Application::build(settings).await.expect("the API builds");
        let url = format!("http://{}", application.address());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(application.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let mut pipeline = Pipeline {
            url,
            db,
            queue,
            client: reqwest::Client::new(),
            stop: Some(stop),
            server: Some(server),
            consumer: None,
        };
        if options.consumer {
            pipeline.start_consumer().await;
        }
        pipeline
    }

    /// Starts the real consumer, with its sweeper, on this pipeline's queue and database.
    pub async fn start_consumer(&mut self) {
        let settings = task_consumer::settings::Settings {
            amqp: self.queue.config(),
            database: self.db.config(),
            consumer: ConsumerConfig {
                prefetch: 64,
                batch_size: 32,
                workers: 2,
                retry_max: Duration::from_millis(500),
                retry_for: Duration::from_secs(300),
                shutdown_grace: Duration::from_secs(5),
            },
            sweeper: SweeperConfig {
                every: Duration::from_millis(300),
                window: Duration::from_secs(6 * 3600),
                batch: 100,
            },
            redis: RedisConfig::default(),
            cache: CacheConfig::default(),
            metrics_addr: MetricsAddr(None),
        };
        let (trigger, shutdown) = Shutdown::new();
        let running = task_consumer::start(settings, shutdown)
            .await
            .expect("the consumer starts");
        self.consumer = Some((trigger, running));
    }

    pub fn page(&self, fragment: &str) -> String {
        format!("{}/{fragment}", self.url)
    }

    /// One number from PostgreSQL (`select … as n`).
    pub fn count(&self, sql: &str) -> i64 {
        self.db.count(sql)
    }

    /// Waits until `sql` counts `expected`.
    pub async fn wait_for_count(&self, sql: &str, expected: i64) {
        for _ in 0..300 {
            if self.count(sql) == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{sql} never counted {expected} (now {})", self.count(sql));
    }

    /// Puts a valid demand in the dead-letter queue, as if it had been rejected: published to the
    /// work queue, taken and rejected without requeue (the consumer must not be running).
    pub async fn dead_letter_a_demand(&self, message_id: uuid::Uuid, add_up_to: i32) {
        let body = format!(r#"{{"add_up_to":{add_up_to},"done":false}}"#);
        self.queue
            .dead_letter(body.as_bytes(), pp_lib::amqp::demand_properties(message_id))
            .await;
    }

    /// Publishes a message the consumer will dead-letter (its body is no demand).
    pub async fn publish_poison(&self, body: &str) {
        self.queue
            .publish_raw(
                body.as_bytes(),
                BasicProperties::default()
                    .with_message_id(uuid::Uuid::new_v4().to_string().as_str().into())
                    .with_content_type("application/json".into()),
            )
            .await;
    }

    /// Stops the consumer and the API, each after its in-flight work.
    pub async fn stop(mut self) {
        if let Some((trigger, running)) = self.consumer.take() {
            trigger.trigger();
            let _ = tokio::time::timeout(Duration::from_secs(20), running.stopped()).await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), server).await;
        }
    }
}

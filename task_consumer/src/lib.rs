//! task_consumer: turns work demands from RabbitMQ into done works with their events, and sweeps
//! the works created over HTTP. [`start`] starts the whole process and gives a [`Running`] to
//! await; [`sweep_once`] is the one-off sweep of `task_consumer sweep`. The binary parses its
//! command line and calls one of them; tests call them in-process.
//!
//! - [`consume`]: the main loop: deliveries in, batches recorded, acks after the commit; poison
//!   to the dead-letter queue with its reason; retries while the database is down.
//! - [`verdict`]: the pure first step: a delivery is a demand, or poison.
//! - [`record`]: the second: a batch recorded, retried later, split to isolate a demand the
//!   database refuses, or given up (handed back to the broker).
//! - [`sweeper`]: pending API-created works, claimed with `FOR UPDATE SKIP LOCKED`.
//! - [`metrics`]: counters, served for Prometheus.
//! - [`settings`]: the command line and environment (`run`, the default, and `sweep`).
//! - `testkit` (feature `testkit`): the consumer in a test, over a database and queue of its own.

pub mod consume;
pub mod metrics;
pub mod record;
pub mod settings;
pub mod sweeper;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod verdict;

use std::net::SocketAddr;
use std::sync::Arc;

use pp_lib::amqp::{Broker, Topology};
use pp_lib::cache::{Redis, WorkCache};
use pp_lib::db::announce::Announcer;
use pp_lib::db::build_pool_lazy;
use pp_lib::db::works::WORKS_DONE;
use pp_lib::shutdown::{Shutdown, ShutdownTrigger};

use anyhow::Context;

use crate::metrics::Metrics;
use crate::settings::{Settings, SweepSettings};
use crate::sweeper::SweepReport;

/// A started consumer: where its metrics are served, and the task to await.
pub struct Running {
    /// The bound metrics address (the port chosen when 0 was asked for), if any.
    pub metrics_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    task: tokio::task::JoinHandle<Result<(), pp_lib::Error>>,
}

impl Running {
    /// Waits until the consumer has stopped (after shutdown), in-flight work finished.
    pub async fn stopped(self) -> anyhow::Result<()> {
        let consumed = self
            .task
            .await
            .map_err(|error| anyhow::anyhow!("the consumer task failed: {error}"))?;
        log::info!("stopped: {}", self.metrics.summary());
        Ok(consumed?)
    }
}

/// Starts the consumer, the sweeper and the metrics endpoint. The database and the broker may be
/// down: the consumer waits for them (and reports it) instead of failing.
pub async fn start(settings: Settings, shutdown: Shutdown) -> anyhow::Result<Running> {
    let mut broker = Broker::new(
        settings.amqp.nodes.clone(),
        Topology::from_config(&settings.amqp),
        "task_consumer",
    );
    // A queue that cannot be used is said before anything else starts: a process that exits
    // while a pooled database connection is still being opened in the background (inside
    // OpenSSL) can crash there.
    broker.check_at_start().await?;
    let metrics = Arc::new(Metrics::new()?);
    // Everything stops when asked to, or when the consumer finds it cannot run at all.
    let (stop, shutdown) = stop_on(shutdown);
    let pool = build_pool_lazy(&settings.database);
    let mut metrics_addr = None;
    let server = match settings.metrics_addr.0 {
        Some(addr) => {
            let listener = metrics::bind(addr).await?;
            metrics_addr = listener.local_addr().ok();
            Some(tokio::spawn(metrics::serve(
                listener,
                metrics.clone(),
                shutdown.clone(),
            )))
        }
        None => None,
    };
    // Confirms on (the broker's default): dead letters are published, and acked only once the
    // broker has them.
    log::info!(
        "consuming {} (prefetch {}, batches of up to {}, {} workers), database {}{}",
        settings.amqp.queue,
        settings.consumer.prefetch,
        settings.consumer.batch_size,
        settings.consumer.workers,
        settings.database.url,
        metrics_addr.map_or_else(String::new, |addr| format!(
            ", metrics on http://{addr}/metrics"
        ))
    );
    // The sweeper publishes the works it finishes, so API replicas stop serving them as pending.
    let redis = Redis::start(&settings.redis, metrics.redis.clone())?;
    let cache = Arc::new(WorkCache::new(redis, settings.cache.work_cache_settings()));
    // A work created over HTTP is announced by PostgreSQL; the listener wakes the sweeper (and
    // ends with it: nobody else holds the Notify).
    let announced = Arc::new(tokio::sync::Notify::new());
    let listener = (!settings.sweeper.every.is_zero()).then(|| {
        tokio::spawn(pp_lib::db::listen::listen(
            settings.database.url.clone(),
            pp_lib::db::works::WORKS_PENDING,
            announced.clone(),
            shutdown.clone(),
        ))
    });
    // The works recorded and swept are announced to the API replicas, whose waiting requests
    // answer at once.
    // It stops after the consumer and the sweeper, to announce their last works.
    let announcer = Announcer::new(&[WORKS_DONE]);
    let (stop_announcing, announcing_stops) = Shutdown::new();
    let announcing = tokio::spawn(announcer.clone().run(pool.clone(), announcing_stops));
    let sweeper = tokio::spawn(sweeper::sweep(
        pool.clone(),
        cache,
        settings.sweeper.clone(),
        metrics.clone(),
        announced,
        announcer.clone(),
        shutdown.clone(),
    ));
    let consumer = consume::consume(
        broker,
        pool,
        settings.consumer.clone(),
        metrics.clone(),
        announcer,
        shutdown,
    );
    let task = tokio::spawn(async move {
        let consumed = consumer.await;
        if consumed.is_err() {
            stop.trigger();
        }
        if let Err(error) = sweeper.await {
            log::error!("the sweeper failed: {error}");
        }
        stop_announcing.trigger();
        if let Err(error) = announcing.await {
            log::error!("the announcer failed: {error}");
        }
        if let Some(listener) = listener
            && let Err(error) = listener.await
        {
            log::error!("the sweeper's listener failed: {error}");
        }
        if let Some(server) = server
            && let Err(error) = server.await
        {
            log::error!("the metrics endpoint failed: {error}");
        }
        consumed
    });
    Ok(Running {
        metrics_addr,
        metrics,
        task,
    })
}

/// A shutdown pulled when `outer` is, or by the trigger returned with it.
fn stop_on(outer: Shutdown) -> (Arc<ShutdownTrigger>, Shutdown) {
    let (trigger, inner) = Shutdown::new();
    let trigger = Arc::new(trigger);
    let pulled = trigger.clone();
    tokio::spawn(async move {
        outer.requested().await;
        pulled.trigger();
    });
    (trigger, inner)
}

/// `task_consumer sweep`: sweeps pending API-created works once (in the window, or of any age),
/// batch after batch, and reports. The database must answer: this is run by hand.
pub async fn sweep_once(
    settings: SweepSettings,
    shutdown: Shutdown,
) -> anyhow::Result<SweepReport> {
    // One connection, no more: the sweep uses one at a time, and a pool allowed more opens a
    // spare in the background, which the process could still be opening (inside OpenSSL) when
    // it exits, and crash there.
    let database = pp_lib::config::DatabaseConfig {
        pool_size: 1,
        ..settings.database.clone()
    };
    let pool = pp_lib::db::build_pool(&database)
        .with_context(|| format!("failed to reach the database {}", settings.database.url))?;
    let metrics = Metrics::new()?;
    // The finished works are published, so API replicas stop serving them as pending.
    let redis = Redis::start(&settings.redis, metrics.redis.clone())?;
    let cache = WorkCache::new(redis, settings.cache.work_cache_settings());
    let report = sweeper::sweep_once(&pool, &cache, settings.window(), settings.batch, &shutdown)
        .await
        .context("failed to sweep")?;
    Ok(report)
}

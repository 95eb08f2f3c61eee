//! Consuming work demands: deliveries in, one transaction per batch, acks after the commit.
//!
//! A reader task takes deliveries from the broker (manual acks, `prefetch` at most unacked) and
//! hands them to `workers` tasks. A worker takes what is waiting, up to `batch_size`, and:
//!
//! 1. rejects, without requeue, every message that can never succeed (not JSON, no or a bad
//!    `add_up_to`): the broker dead-letters it to `<queue>.dlq`, and the reason is logged;
//! 2. records the others in ONE database transaction (works, events, results; demands whose id
//!    already has a work write nothing) — retried with backoff while the database fails;
//! 3. acks them, only after the commit.
//!
//! A crash anywhere before the ack leaves the messages unacked: the broker delivers them again
//! and step 2 recognises them by `message_id`. So every demand takes effect exactly once.
//!
//! Message ids: a UUID `message_id` is the demand id; another non-empty `message_id` is mapped
//! to a stable UUID (v5); a message without one is accepted under a fresh id, with a warning,
//! since nothing identifies its redeliveries (our producers always set it).

use std::sync::{Arc, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::FieldTable;
use pp_lib::amqp::broker::BROKER_CALL_TIMEOUT;
use pp_lib::amqp::{Backoff, Broker, DemandId};
use pp_lib::db::{PgPool, with_connection};
use pp_lib::demand::WorkDemand;
use pp_lib::outage::Outage;
use pp_lib::shutdown::Shutdown;
use tokio::sync::{Mutex, mpsc};
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::settings::ConsumerConfig;

/// What the workers share.
struct Shared {
    pool: PgPool,
    metrics: Arc<Metrics>,
    config: ConsumerConfig,
    shutdown: Shutdown,
    /// Down while recording fails, so the outage is logged once for every worker.
    database: std::sync::Mutex<Outage>,
    /// After shutdown was asked for: when in-flight demands stop being retried. One deadline for
    /// the whole process, so a shutdown while the database is down takes one grace period.
    give_up_at: OnceLock<Instant>,
}

impl Shared {
    fn new(
        pool: PgPool,
        metrics: Arc<Metrics>,
        config: ConsumerConfig,
        shutdown: Shutdown,
    ) -> Self {
        let database = Outage::new(
            module_path!(),
            "consumer: the database",
            "keeping the demands unacknowledged and retrying with backoff",
        );
        Shared {
            pool,
            metrics,
            config,
            shutdown,
            database: std::sync::Mutex::new(database),
            give_up_at: OnceLock::new(),
        }
    }

    /// The database's outage, as the workers see it. Held for a log line, never across an await.
    fn database(&self) -> MutexGuard<'_, Outage> {
        self.database.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True once shutdown was asked for and its grace period is over.
    fn past_grace(&self) -> bool {
        self.shutdown.is_requested()
            && Instant::now()
                >= *self
                    .give_up_at
                    .get_or_init(|| Instant::now() + self.config.shutdown_grace)
    }
}

/// Consumes until shutdown, then stops taking deliveries, finishes and acks the ones taken, and
/// returns.
pub async fn consume(
    mut broker: Broker,
    pool: PgPool,
    config: ConsumerConfig,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) {
    let (deliveries, receiver) = mpsc::channel::<Delivery>(usize::from(config.prefetch).max(1));
    let receiver = Arc::new(Mutex::new(receiver));
    let shared = Arc::new(Shared::new(
        pool,
        metrics.clone(),
        config.clone(),
        shutdown.clone(),
    ));
    let workers: Vec<_> = (0..config.workers.max(1))
        .map(|_| tokio::spawn(work(receiver.clone(), shared.clone())))
        .collect();

    let consumer_tag = format!(
        "task_consumer-{}-{}",
        std::process::id(),
        Uuid::new_v4().simple()
    );
    // The session of the last connection, kept open until the workers have acked.
    let mut last_session = None;
    'connections: while let Some(session) = broker.connect(&shutdown).await {
        let channel = session.channel().clone();
        last_session = Some(session);
        let setup = async {
            channel
                .basic_qos(config.prefetch, BasicQosOptions::default())
                .await?;
            channel
                .basic_consume(
                    broker.topology().queue().into(),
                    consumer_tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
        };
        let mut stream = match setup.await {
            Ok(stream) => stream,
            Err(error) => {
                broker.lost(error);
                continue;
            }
        };
        metrics.broker_connected.set(1);
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                () = shutdown.requested() => {
                    cancel(&channel, &consumer_tag).await;
                    break 'connections;
                }
            };
            match next {
                Some(Ok(delivery)) => {
                    // The workers may be busy (the database down): keep watching for shutdown.
                    // A delivery dropped here is unacked, so the broker delivers it again.
                    tokio::select! {
                        sent = deliveries.send(delivery) => {
                            if sent.is_err() {
                                break 'connections;
                            }
                        }
                        () = shutdown.requested() => {
                            cancel(&channel, &consumer_tag).await;
                            break 'connections;
                        }
                    }
                }
                Some(Err(error)) => {
                    broker.lost(error);
                    break;
                }
                None => {
                    broker.lost("the broker ended the consumer");
                    break;
                }
            }
        }
        metrics.broker_connected.set(0);
    }
    metrics.broker_connected.set(0);
    drop(deliveries);
    for worker in workers {
        if let Err(error) = worker.await {
            log::error!("a consumer worker failed: {error}");
        }
    }
    if let Some(session) = last_session {
        session.close().await;
    }
}

/// Asks the broker for no more deliveries; the ones already taken are finished by the workers.
async fn cancel(channel: &lapin::Channel, consumer_tag: &str) {
    let cancelled = tokio::time::timeout(
        BROKER_CALL_TIMEOUT,
        channel.basic_cancel(consumer_tag.into(), BasicCancelOptions::default()),
    )
    .await;
    match cancelled {
        Ok(Ok(())) => {}
        Ok(Err(error)) => log::debug!("cancelling the consumer: {error}"),
        Err(_) => log::debug!("RabbitMQ did not answer the cancel"),
    }
}

/// One worker: batches from the shared receiver until it is closed and empty.
async fn work(receiver: Arc<Mutex<mpsc::Receiver<Delivery>>>, shared: Arc<Shared>) {
    let batch_size = usize::from(shared.config.batch_size).max(1);
    loop {
        let batch = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut batch = Vec::with_capacity(batch_size);
            batch.push(first);
            while batch.len() < batch_size {
                match receiver.try_recv() {
                    Ok(delivery) => batch.push(delivery),
                    Err(_) => break,
                }
            }
            batch
        };
        process(batch, &shared).await;
    }
}

/// Why a message can never succeed, or the demand it carries.
fn parse(delivery: &Delivery) -> Result<(DemandId, WorkDemand), String> {
    let demand = WorkDemand::from_json(&delivery.data).map_err(|error| error.to_string())?;
    let message_id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.as_str());
    Ok((DemandId::of(message_id), demand))
}

async fn process(batch: Vec<Delivery>, shared: &Shared) {
    let mut accepted: Vec<(Uuid, WorkDemand, Delivery)> = Vec::with_capacity(batch.len());
    for delivery in batch {
        match parse(&delivery) {
            Ok((id, demand)) => {
                if let DemandId::Fresh(id) = id {
                    log::warn!(
                        "message without message_id recorded as demand {id}: its redeliveries \
                         cannot be recognised"
                    );
                }
                accepted.push((id.id(), demand, delivery));
            }
            Err(reason) => dead_letter(delivery, &reason, shared).await,
        }
    }
    if accepted.is_empty() {
        return;
    }
    let demands: Arc<Vec<(Uuid, WorkDemand)>> = Arc::new(
        accepted
            .iter()
            .map(|(id, demand, _)| (*id, *demand))
            .collect(),
    );
    let mut backoff = Backoff::new(
        std::time::Duration::from_millis(100),
        shared.config.retry_max,
    );
    loop {
        if shared.past_grace() {
            log::warn!(
                "shutting down with {} demand(s) unrecorded: left unacknowledged, the broker \
                 will deliver them again",
                accepted.len()
            );
            return;
        }
        let pool = shared.pool.clone();
        let batch = demands.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            with_connection(&pool, |conn| {
                pp_lib::db::works::record_demands(conn, &batch)
            })
        })
        .await;
        match outcome {
            Ok(Ok(recorded)) => {
                shared.database().recovered();
                let created = recorded.created.len() as u64;
                shared.metrics.processed.inc_by(created);
                shared.metrics.duplicates.inc_by(recorded.duplicates as u64);
                shared.metrics.batch_size.observe(demands.len() as f64);
                if recorded.duplicates > 0 {
                    log::info!(
                        "{} redelivered demand(s) already recorded: acknowledged without writing",
                        recorded.duplicates
                    );
                }
                break;
            }
            Ok(Err(error)) => {
                shared.metrics.retries.inc();
                shared.database().failed(&error);
            }
            Err(error) => {
                // A panic while recording is a bug, not the message's fault: hand the messages
                // back to the broker rather than lose or dead-letter them.
                log::error!("recording a batch panicked: {error}; requeueing it");
                for (_, _, delivery) in accepted {
                    let requeue = BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    };
                    settle(delivery.acker.nack(requeue), "nack").await;
                }
                return;
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
    for (id, _, delivery) in accepted {
        // Recorded but not acked (the connection dropped) is safe: the redelivery will be
        // recognised as a duplicate.
        settle(
            delivery.acker.ack(BasicAckOptions::default()),
            &format!("ack of demand {id}"),
        )
        .await;
    }
}

async fn dead_letter(delivery: Delivery, reason: &str, shared: &Shared) {
    let message_id = delivery
        .properties
        .message_id()
        .as_ref()
        .map_or_else(|| "(none)".to_owned(), |id| id.as_str().to_owned());
    log::warn!(
        "dead-lettering message {message_id} ({} bytes): {reason}",
        delivery.data.len()
    );
    shared.metrics.dead_lettered.inc();
    let reject = BasicRejectOptions { requeue: false };
    settle(
        delivery.acker.reject(reject),
        &format!("reject of message {message_id}"),
    )
    .await;
}

/// Awaits an ack, nack or reject for at most [`BROKER_CALL_TIMEOUT`]. A failure only means the
/// broker will deliver the message again, which the deduplication absorbs: it is logged, no more.
async fn settle(call: impl Future<Output = Result<bool, lapin::Error>>, what: &str) {
    match tokio::time::timeout(BROKER_CALL_TIMEOUT, call).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => log::debug!("{what} failed: {error}"),
        Err(_) => log::debug!("{what}: RabbitMQ did not answer"),
    }
}

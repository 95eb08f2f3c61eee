//! Consuming work demands: deliveries in, batches recorded, acks after the commit.
//!
//! A reader task takes deliveries from the broker (manual acks, `prefetch` at most unacked) and
//! hands them to `workers` tasks. A worker takes what is waiting, up to `batch_size`, and:
//!
//! 1. judges each delivery ([`verdict::judge`]): a message that can never succeed (not JSON, no
//!    or a bad `add_up_to`) is dead-lettered at once, with the reason;
//! 2. records the demands ([`record`]) in ONE transaction (works, events, results; demands whose
//!    id already has a work write nothing). A failure that may pass (the database down, a
//!    timeout, a deadlock) is retried with backoff, unacknowledged. A failure the database gives
//!    for what the batch carries splits it: each half is recorded in its own transaction, and so
//!    on, until the demand that causes it is alone; it is dead-lettered with the database's
//!    reason, and every other one is recorded;
//! 3. acks the demands of each part only after the commit that recorded them.
//!
//! A crash anywhere before the ack leaves the messages unacked: the broker delivers them again
//! and step 2 recognises them by `message_id`. So every demand takes effect exactly once.
//!
//! Giving up: when recording keeps failing for longer than `--retry-for` (or past the shutdown
//! grace), the worker hands its batch back to the broker — nacked with requeue, never acked —
//! for itself or another consumer to take again later, and keeps its long backoff for the next.
//! On a quorum queue, which counts every requeue toward its delivery limit, a demand is handed
//! back as a confirmed copy instead, and the delivery acked: an outage never has the broker
//! dead-letter a good demand.
//!
//! Dead letters carry their reason: the message is published to `<queue>.dlq` as it came, with
//! an `x-pp-reason` header (see [`pp_lib::amqp::dead_lettering`]), on the channel it came from (in
//! confirm mode), and acked once that copy is confirmed. If the broker refuses the copy, the
//! original is rejected without requeue, and RabbitMQ dead-letters it itself (without the
//! header; the reason is in the log). If the channel fails, nothing more is done: the broker
//! delivers the message again, and it is dead-lettered again (the one way to a duplicate dead
//! letter; none is lost).
//!
//! Connections: a session that ends (the connection lost, or `basic.qos` / `basic.consume`
//! refused) is followed by a wait with backoff and jitter before the next one
//! ([`reconnect_delay`]), unless it had been consuming for [`HEALTHY_SESSION`]: a broker that
//! keeps refusing is asked less and less often, never in a hot loop.
//!
//! Message ids: a UUID `message_id` is the demand id; another non-empty `message_id` is mapped
//! to a stable UUID (v5); a message without one is accepted under a fresh id, with a warning,
//! since nothing identifies its redeliveries (our producers always set it).

use std::sync::{Arc, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use pp_lib::Error;
use pp_lib::amqp::broker::BROKER_CALL_TIMEOUT;
use pp_lib::amqp::dead_lettering::{
    DeadLetterPublished, dead_letter_properties, publish_copy, publish_dead_letter,
};
use pp_lib::amqp::{Backoff, Broker, DemandId};
use pp_lib::db::announce::Announcer;
use pp_lib::db::works::{WORKS_DONE, done_item};
use pp_lib::db::{PgPool, with_connection};
use pp_lib::demand::WorkDemand;
use pp_lib::outage::Outage;
use pp_lib::shutdown::Shutdown;
use tokio::sync::{Mutex, mpsc};
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::record::{Attempt, BatchOutcome, GiveUp, Parts, Retrying, attempt_batch, decide};
use crate::settings::ConsumerConfig;
use crate::verdict::{self, Verdict};

/// A session that consumed at least this long counts as healthy: when it is lost, the next
/// connection is made at once and the backoff starts again from its shortest wait.
pub const HEALTHY_SESSION: Duration = Duration::from_secs(30);
/// Shortest and longest wait between two sessions that ended early.
const RECONNECT_FIRST: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// How a session with the broker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// Connected, but `basic.qos` or `basic.consume` was refused.
    SetupFailed,
    /// Consuming, then the connection or the consumer was lost after this long.
    Lost { lasted: Duration },
}

/// How long to wait before the next session, after one that ended so. Pure: the reader sleeps
/// it, tests count it.
pub fn reconnect_delay(end: SessionEnd, backoff: &mut Backoff) -> Duration {
    match end {
        SessionEnd::Lost { lasted } if lasted >= HEALTHY_SESSION => {
            backoff.reset();
            Duration::ZERO
        }
        SessionEnd::Lost { .. } | SessionEnd::SetupFailed => backoff.next_delay(),
    }
}

/// The backoff between sessions the reader starts with.
pub fn reconnect_backoff() -> Backoff {
    Backoff::new(RECONNECT_FIRST, RECONNECT_MAX)
}

/// A delivery and the channel it came on: its ack goes back there, and so does its dead letter.
struct Taken {
    delivery: Delivery,
    channel: Channel,
}

/// A delivery judged to be a demand, waiting to be recorded.
struct Pending {
    id: Uuid,
    demand: WorkDemand,
    taken: Taken,
}

/// What the workers share.
struct Shared {
    pool: PgPool,
    metrics: Arc<Metrics>,
    config: ConsumerConfig,
    shutdown: Shutdown,
    /// The queue consumed, and its dead-letter queue.
    queue: String,
    dead_letter_queue: String,
    /// A quorum queue counts every hand-back toward its delivery limit: hand-backs go as copies.
    quorum: bool,
    /// Down while recording fails, so the outage is logged once for every worker.
    database: std::sync::Mutex<Outage>,
    /// After shutdown was asked for: when in-flight demands stop being retried. One deadline for
    /// the whole process, so a shutdown while the database is down takes one grace period.
    give_up_at: OnceLock<Instant>,
    /// Tells the API replicas of the works recorded, once committed ([`WORKS_DONE`]).
    announcer: Arc<Announcer>,
}

impl Shared {
    /// The database's outage, as the workers see it. Held for a log line, never across an await.
    fn database(&self) -> MutexGuard<'_, Outage> {
        self.database.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The end of the shutdown grace period, once shutdown was asked for.
    fn grace_deadline(&self) -> Option<Instant> {
        self.shutdown.is_requested().then(|| {
            *self
                .give_up_at
                .get_or_init(|| Instant::now() + self.config.shutdown_grace)
        })
    }
}

/// Consumes until shutdown, then stops taking deliveries, finishes and acks the ones taken, and
/// returns. A queue that exists with another type or other arguments (a configuration error)
/// ends it the same way, and is returned.
pub async fn consume(
    mut broker: Broker,
    pool: PgPool,
    config: ConsumerConfig,
    metrics: Arc<Metrics>,
    announcer: Arc<Announcer>,
    shutdown: Shutdown,
) -> Result<(), Error> {
    let (deliveries, receiver) = mpsc::channel::<Taken>(usize::from(config.prefetch).max(1));
    let receiver = Arc::new(Mutex::new(receiver));
    let database = Outage::new(
        module_path!(),
        "consumer: the database",
        "keeping the demands unacknowledged and retrying with backoff",
    );
    let shared = Arc::new(Shared {
        pool,
        metrics: metrics.clone(),
        config: config.clone(),
        shutdown: shutdown.clone(),
        queue: broker.topology().queue().to_owned(),
        dead_letter_queue: broker.topology().dead_letter_queue(),
        quorum: broker.topology().queue_type() == pp_lib::config::QueueType::Quorum,
        database: std::sync::Mutex::new(database),
        give_up_at: OnceLock::new(),
        announcer,
    });
    let workers: Vec<_> = (0..config.workers.max(1))
        .map(|_| tokio::spawn(work(receiver.clone(), shared.clone())))
        .collect();

    let consumer_tag = format!(
        "task_consumer-{}-{}",
        std::process::id(),
        Uuid::new_v4().simple()
    );
    let mut between_sessions = reconnect_backoff();
    // The session of the last connection, kept open until the workers have acked.
    let mut last_session = None;
    let mut refused = None;
    loop {
        let session = match broker.connect(&shutdown).await {
            Ok(Some(session)) => session,
            Ok(None) => break,
            Err(error) => {
                refused = Some(error);
                break;
            }
        };
        let channel = session.channel().clone();
        let end = match start_consuming(&channel, &config, broker.topology().queue(), &consumer_tag)
            .await
        {
            Err(error) => {
                metrics.consume_setup_failures.inc();
                broker.lost(format_args!("cannot start consuming: {error}"));
                // Nothing was delivered on it: it can go now.
                session.close().await;
                SessionEnd::SetupFailed
            }
            Ok(stream) => {
                last_session = Some(session);
                metrics.broker_connected.set(1);
                let started = Instant::now();
                let forwarded =
                    forward(stream, &channel, &deliveries, &shutdown, &consumer_tag).await;
                metrics.broker_connected.set(0);
                match forwarded {
                    Forwarded::Lost(why) => broker.lost(why),
                    Forwarded::Stopped => break,
                }
                SessionEnd::Lost {
                    lasted: started.elapsed(),
                }
            }
        };
        let delay = reconnect_delay(end, &mut between_sessions);
        if !delay.is_zero() {
            log::debug!("next connection to RabbitMQ in {delay:?}");
        }
        if !shutdown.sleep(delay).await {
            break;
        }
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
    refused.map_or(Ok(()), Err)
}

/// `basic.qos` and `basic.consume` on a new session's channel.
async fn start_consuming(
    channel: &Channel,
    config: &ConsumerConfig,
    queue: &str,
    consumer_tag: &str,
) -> Result<lapin::Consumer, lapin::Error> {
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await?;
    channel
        .basic_consume(
            queue.into(),
            consumer_tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// How a session's deliveries stopped coming.
enum Forwarded {
    /// The connection or the consumer was lost, for this reason.
    Lost(String),
    /// Shutdown was asked for (the consumer is cancelled), or the workers are gone.
    Stopped,
}

/// Hands the session's deliveries to the workers until the session is lost or shutdown comes.
async fn forward(
    mut stream: lapin::Consumer,
    channel: &Channel,
    deliveries: &mpsc::Sender<Taken>,
    shutdown: &Shutdown,
    consumer_tag: &str,
) -> Forwarded {
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            () = shutdown.requested() => {
                cancel(channel, consumer_tag).await;
                return Forwarded::Stopped;
            }
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => return Forwarded::Lost(error.to_string()),
            None => return Forwarded::Lost("the broker ended the consumer".to_owned()),
        };
        let taken = Taken {
            delivery,
            channel: channel.clone(),
        };
        // The workers may be busy (the database down): keep watching for shutdown. A delivery
        // dropped here is unacked, so the broker delivers it again.
        tokio::select! {
            sent = deliveries.send(taken) => if sent.is_err() {
                return Forwarded::Stopped;
            },
            () = shutdown.requested() => {
                cancel(channel, consumer_tag).await;
                return Forwarded::Stopped;
            }
        }
    }
}

/// Asks the broker for no more deliveries; the ones already taken are finished by the workers.
async fn cancel(channel: &Channel, consumer_tag: &str) {
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
async fn work(receiver: Arc<Mutex<mpsc::Receiver<Taken>>>, shared: Arc<Shared>) {
    let batch_size = usize::from(shared.config.batch_size).max(1);
    let mut retrying = Retrying::new(shared.config.retry_max, shared.config.retry_for);
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
                    Ok(taken) => batch.push(taken),
                    Err(_) => break,
                }
            }
            batch
        };
        process(batch, &shared, &mut retrying).await;
    }
}

/// Judges, records and settles one batch.
async fn process(batch: Vec<Taken>, shared: &Shared, retrying: &mut Retrying) {
    let mut parts = Parts::new(judge_all(batch, shared).await);
    let mut next = parts.next_part();
    while let Some(part) = next.take() {
        if let Some(deadline) = shared.grace_deadline() {
            retrying.stop_by(deadline);
        }
        if retrying.is_past_stop(Instant::now()) {
            let rest = part.into_iter().chain(parts.into_rest());
            hand_back(rest, GiveUp::Shutdown, None, shared).await;
            return;
        }
        match attempt(&part, shared, retrying).await {
            BatchOutcome::Recorded(recorded) => {
                let done = recorded.created.iter().map(done_item).collect();
                shared.announcer.announce_items(WORKS_DONE, done);
                acknowledge(part, recorded.created.len(), recorded.duplicates, shared).await;
                next = parts.next_part();
            }
            BatchOutcome::RetryLater { error, after } => {
                shared.metrics.retries.inc();
                shared.database().failed(&error);
                // Shutdown shortens the wait: the grace period is measured from it.
                shared.shutdown.sleep(after).await;
                next = Some(part);
            }
            BatchOutcome::Split { reason } => {
                shared.database().recovered();
                shared.metrics.split_batches.inc();
                log::info!(
                    "the database refused a batch of {} demand(s) ({reason}); recording each \
                     half on its own to find the demand that causes it",
                    part.len()
                );
                parts.split(part);
                next = parts.next_part();
            }
            BatchOutcome::Poison { reason } => {
                shared.database().recovered();
                for pending in part {
                    dead_letter(pending.taken, &reason, shared).await;
                }
                next = parts.next_part();
            }
            BatchOutcome::GaveUp { error, why } => {
                let rest = part.into_iter().chain(parts.into_rest());
                hand_back(rest, why, Some(&error), shared).await;
                return;
            }
        }
    }
}

/// Judges each delivery: the demands are returned to be recorded, poison is dead-lettered now.
async fn judge_all(batch: Vec<Taken>, shared: &Shared) -> Vec<Pending> {
    let mut pending = Vec::with_capacity(batch.len());
    for taken in batch {
        let verdict = verdict::judge(
            &taken.delivery.data,
            message_id_of(&taken.delivery.properties),
        );
        match verdict {
            Verdict::Demand { id, demand } => {
                if let DemandId::Fresh(id) = id {
                    log::warn!(
                        "message without message_id recorded as demand {id}: its redeliveries \
                         cannot be recognised"
                    );
                }
                pending.push(Pending {
                    id: id.id(),
                    demand,
                    taken,
                });
            }
            Verdict::Poison { reason } => dead_letter(taken, &reason, shared).await,
        }
    }
    pending
}

/// What the log says after the number of redeliveries a batch found already recorded (a fault
/// run adds them up).
pub const DUPLICATES_LOGGED: &str = "redelivered demand(s) already recorded";

/// Acks a part whose transaction committed (`created` new works, `duplicates` already there).
async fn acknowledge(part: Vec<Pending>, created: usize, duplicates: usize, shared: &Shared) {
    shared.database().recovered();
    shared.metrics.processed.inc_by(created as u64);
    shared.metrics.duplicates.inc_by(duplicates as u64);
    shared.metrics.batch_size.observe(part.len() as f64);
    if duplicates > 0 {
        log::info!("{duplicates} {DUPLICATES_LOGGED}: acknowledged without writing");
    }
    for pending in part {
        // Recorded but not acked (the connection dropped) is safe: the redelivery will be
        // recognised as a duplicate.
        settle(
            pending.taken.delivery.acker.ack(BasicAckOptions::default()),
            &format!("ack of demand {}", pending.id),
        )
        .await;
    }
}

/// One attempt to record `part`, on a database thread, and its outcome under the retry policy.
async fn attempt(part: &[Pending], shared: &Shared, retrying: &mut Retrying) -> BatchOutcome {
    let pool = shared.pool.clone();
    let demands: Vec<(Uuid, WorkDemand)> = part
        .iter()
        .map(|pending| (pending.id, pending.demand))
        .collect();
    let attempted = tokio::task::spawn_blocking(move || {
        with_connection(&pool, |conn| Ok(attempt_batch(conn, &demands)))
    })
    .await;
    let attempt = match attempted {
        Ok(Ok(attempt)) => attempt,
        // No connection from the pool: the database is down or busy.
        Ok(Err(error)) => Attempt::Transient(error),
        // A panic while recording is a bug, not the messages' fault: hand them back to the
        // broker rather than lose or dead-letter them.
        Err(panic) => {
            return BatchOutcome::GaveUp {
                error: Error::Bug(format!("recording a batch panicked: {panic}")),
                why: GiveUp::Panicked,
            };
        }
    };
    decide(attempt, retrying, Instant::now())
}

/// Hands deliveries back to the broker: nacked with requeue, for this or another consumer to
/// take again later. Never acked, never dead-lettered: nothing is lost.
async fn hand_back(
    pending: impl Iterator<Item = Pending>,
    why: GiveUp,
    error: Option<&Error>,
    shared: &Shared,
) {
    let pending: Vec<Pending> = pending.collect();
    if pending.is_empty() {
        return;
    }
    let cause = error.map_or_else(String::new, |error| format!(" ({error})"));
    match why {
        GiveUp::Shutdown => log::warn!(
            "shutting down with {} demand(s) unrecorded{cause}: handed back to RabbitMQ, which \
             will deliver them again",
            pending.len()
        ),
        GiveUp::Panicked => log::error!(
            "{why}{cause}: handing {} demand(s) back to RabbitMQ",
            pending.len()
        ),
        GiveUp::Patience { .. } => {
            if let Some(error) = error {
                shared.database().failed(error);
            }
            log::warn!(
                "gave up on {} demand(s): {why}{cause}; handed back to RabbitMQ (requeued, \
                 unacknowledged) to be tried again later",
                pending.len()
            );
        }
    }
    shared.metrics.handed_back.inc_by(pending.len() as u64);
    for pending in pending {
        give_back(pending.taken, pending.id, shared).await;
    }
}

/// The header a quorum queue adds to a message it delivers again: how often it did.
const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

/// Gives one delivery back to the broker. On a quorum queue, as a new message: a copy is
/// published to the work queue with confirm, then the delivery is acked. A quorum queue counts
/// every nack with requeue toward its delivery limit, so a database outage longer than the
/// limit's worth of `--retry-for` would have the broker dead-letter good demands; the copy's
/// count starts again from nothing. (Should the ack be lost, the broker delivers the original
/// again beside the copy, and the deduplication records it once.) Elsewhere, or when the copy
/// is not confirmed, the delivery is nacked with requeue.
async fn give_back(taken: Taken, id: Uuid, shared: &Shared) {
    let Taken { delivery, channel } = taken;
    if shared.quorum {
        let mut headers = FieldTable::default();
        if let Some(original) = delivery.properties.headers() {
            for (name, value) in original.inner() {
                if name.as_str() != DELIVERY_COUNT_HEADER {
                    headers.insert(name.clone(), value.clone());
                }
            }
        }
        let properties = delivery.properties.clone().with_headers(headers);
        let copied = publish_copy(&channel, &shared.queue, &delivery.data, properties).await;
        if let Ok(DeadLetterPublished::Confirmed) = copied {
            settle(
                delivery.acker.ack(BasicAckOptions::default()),
                &format!("ack of demand {id}, handed back as a copy"),
            )
            .await;
            return;
        }
        log::debug!("demand {id} could not be handed back as a copy ({copied:?}): requeued");
    }
    let requeue = BasicNackOptions {
        multiple: false,
        requeue: true,
    };
    settle(
        delivery.acker.nack(requeue),
        &format!("requeue of demand {id}"),
    )
    .await;
}

/// The `message_id` property, if the message has one.
fn message_id_of(properties: &BasicProperties) -> Option<&str> {
    properties.message_id().as_ref().map(|id| id.as_str())
}

/// Dead-letters a message with its reason (see the module's documentation).
async fn dead_letter(taken: Taken, reason: &str, shared: &Shared) {
    let Taken { delivery, channel } = taken;
    let message_id = message_id_of(&delivery.properties).unwrap_or("(no message_id)");
    log::warn!(
        "dead-lettering message {message_id} ({} bytes): {reason}",
        delivery.data.len()
    );
    let properties = dead_letter_properties(
        &delivery.properties,
        reason,
        &shared.queue,
        chrono::Utc::now(),
    );
    let published = publish_dead_letter(
        &channel,
        &shared.dead_letter_queue,
        &delivery.data,
        properties,
    )
    .await;
    match published {
        Ok(DeadLetterPublished::Confirmed) => {
            shared.metrics.dead_lettered.inc();
            settle(
                delivery.acker.ack(BasicAckOptions::default()),
                &format!("ack of dead-lettered message {message_id}"),
            )
            .await;
        }
        Ok(DeadLetterPublished::Refused) => {
            log::warn!(
                "RabbitMQ refused the dead letter of message {message_id}; rejecting it instead \
                 (dead-lettered by RabbitMQ, without the reason header)"
            );
            shared.metrics.dead_lettered.inc();
            let reject = BasicRejectOptions { requeue: false };
            settle(
                delivery.acker.reject(reject),
                &format!("reject of message {message_id}"),
            )
            .await;
        }
        Err(error) => {
            // Unacked on a failing channel: the broker delivers it again, and it comes back here.
            log::warn!(
                "dead-lettering message {message_id} failed ({error}); RabbitMQ will deliver it \
                 again"
            );
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_that_end_early_are_followed_by_growing_waits() {
        let mut backoff = reconnect_backoff();

        let waits: Vec<Duration> = (0..6)
            .map(|_| reconnect_delay(SessionEnd::SetupFailed, &mut backoff))
            .collect();

        assert!(
            waits
                .iter()
                .all(|wait| *wait >= RECONNECT_FIRST.mul_f64(0.8)),
            "never at once: {waits:?}"
        );
        assert!(waits[5] > waits[0] * 8, "growing: {waits:?}");
        let lost_early = reconnect_delay(
            SessionEnd::Lost {
                lasted: Duration::from_secs(1),
            },
            &mut backoff,
        );
        assert!(lost_early >= waits[5].mul_f64(0.6), "{lost_early:?}");
    }

    #[test]
    fn a_healthy_session_that_is_lost_is_followed_at_once_and_resets_the_wait() {
        let mut backoff = reconnect_backoff();
        for _ in 0..5 {
            reconnect_delay(SessionEnd::SetupFailed, &mut backoff);
        }

        let after_healthy = reconnect_delay(
            SessionEnd::Lost {
                lasted: HEALTHY_SESSION,
            },
            &mut backoff,
        );
        let next = reconnect_delay(SessionEnd::SetupFailed, &mut backoff);

        assert_eq!(after_healthy, Duration::ZERO);
        assert!(next <= RECONNECT_FIRST.mul_f64(1.2), "{next:?}");
    }
}

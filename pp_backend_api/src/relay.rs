//! The outbox relay: publishes the demands `POST /work/demand` committed to `demand_outbox`.
//!
//! It runs inside the API process (switch it off with `--outbox-relay off` where another replica
//! or process relays). Each round, in ONE database transaction, it claims up to `batch`
//! unpublished rows, oldest first, with `FOR UPDATE SKIP LOCKED` (so replicas relaying at once
//! take different rows), publishes them with publisher confirms, marks the confirmed ones
//! published and commits. A crash before the commit leaves the rows unpublished, to be published
//! again: at-least-once, and the consumer's deduplication on `message_id` (the row's id) makes it
//! exactly once in effect. Rounds run when a demand is accepted, by this process (the handler
//! wakes the relay) or by any other (PostgreSQL announces every insert into the outbox on
//! `pp_outbox`, and the API listens), and every `interval` otherwise, for an announcement
//! missed; a backlog is drained round after round.
//!
//! A round holds row locks and a pooled connection, so nothing may make it last: it is cut short
//! after `round_limit` (a broker that stopped answering, confirms that never come, nacks over and
//! over), and as soon as RabbitMQ blocks the connection (`connection.blocked`: a memory or disk
//! alarm, during which it reads nothing from publishers). A round cut short marks what was
//! confirmed and commits; the other rows go back to the outbox and are published again later
//! (same `message_id`: the consumer's deduplication absorbs a copy that did get through). While
//! the connection is blocked the relay claims nothing: it waits, outside any transaction, for
//! `connection.unblocked` (or the connection's end), then goes on. What to do after a round is
//! decided by [`next_step`], a pure function.
//!
//! The broker may be down: demands are still accepted (they wait in the table), the relay logs
//! the outage once and tries again with backoff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pp_lib::amqp::{
    Backoff, Broker, FlowWatch, Outgoing, PublishError, PublishOptions, Publisher, Reconnect,
    Topology,
};
use pp_lib::config::{AmqpConfig, parse_switch, positive_duration_setting};
use pp_lib::db::outbox::{claim_unpublished, mark_published};
use pp_lib::db::{PgPool, with_connection};
use pp_lib::demand::WorkDemand;
use pp_lib::outage::Outage;
use pp_lib::shutdown::Shutdown;
use tokio::sync::Notify;

use crate::metrics::Metrics;

/// The relay's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayConfig {
    /// Publish the demand outbox from this process: on or off.
    #[arg(
        long = "outbox-relay",
        env = "PP_OUTBOX_RELAY",
        default_value = "on",
        value_parser = parse_switch,
        action = clap::ArgAction::Set
    )]
    pub enabled: bool,
    /// Most outbox rows published per transaction.
    #[arg(long = "outbox-batch", env = "PP_OUTBOX_BATCH", default_value_t = 500,
          value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub batch: i64,
    /// How often the outbox is checked when no demand arrives (demands wake the relay at once).
    #[arg(long = "outbox-interval", env = "PP_OUTBOX_INTERVAL", default_value = "1s",
          value_parser = positive_duration_setting)]
    pub interval: Duration,
    /// Longest a round may hold its transaction (its rows locked, a pooled connection) while it
    /// waits for the broker; past it, the confirmed rows are marked and the rest go back to the
    /// outbox.
    #[arg(long = "outbox-round-limit", env = "PP_OUTBOX_ROUND_LIMIT", default_value = "5s",
          value_parser = positive_duration_setting)]
    pub round_limit: Duration,
    #[command(flatten)]
    pub amqp: AmqpConfig,
}

impl RelayConfig {
    /// A relay publishing to `amqp`, every other value at its default.
    pub fn to(amqp: AmqpConfig) -> Self {
        RelayConfig {
            amqp,
            ..pp_lib::config::defaults()
        }
    }

    /// No relay in this process (the dashboard still reads the default broker's queues).
    pub fn off() -> Self {
        RelayConfig {
            enabled: false,
            ..pp_lib::config::defaults()
        }
    }
}

/// Longest wait for the broker to come back inside a round (rows stay locked meanwhile).
const PUBLISH_PATIENCE: Duration = Duration::from_secs(2);

/// How a round ended.
#[derive(Debug)]
pub enum RoundOutcome {
    /// Every row claimed was published, confirmed and marked: this many (0 for an empty outbox).
    Published(usize),
    /// The round stopped before every row was confirmed: the confirmed ones are marked and
    /// committed, the others went back to the outbox.
    CutShort {
        confirmed: usize,
        returned: usize,
        cause: CutShort,
    },
}

/// Why a round stopped early.
#[derive(Debug)]
pub enum CutShort {
    /// `round_limit` passed before every confirm came.
    TimedOut(Duration),
    /// RabbitMQ blocked the connection, with this reason.
    Blocked(String),
    /// Publishing failed (the connection lost and not back within the round's patience).
    Failed(pp_lib::Error),
}

/// What the relay does after a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The round was full: another one at once, the backlog is not drained.
    Drain,
    /// The outbox is drained: wait for a demand or the interval.
    Idle,
    /// The connection is blocked: wait, outside any transaction, until it is not.
    WaitUnblocked,
    /// The connection stopped answering: drop it, wait with backoff, connect again.
    Reconnect,
    /// Publishing failed: wait with backoff.
    BackOff,
}

/// What to do after a round that ended so, with rounds of `batch` rows.
pub fn next_step(outcome: &RoundOutcome, batch: i64) -> Next {
    match outcome {
        RoundOutcome::Published(published) if (*published as i64) >= batch => Next::Drain,
        RoundOutcome::Published(_) => Next::Idle,
        RoundOutcome::CutShort { cause, .. } => match cause {
            CutShort::Blocked(_) => Next::WaitUnblocked,
            CutShort::TimedOut(_) => Next::Reconnect,
            CutShort::Failed(_) => Next::BackOff,
        },
    }
}

/// Relays until shutdown; the round in progress finishes first.
pub async fn relay(
    pool: PgPool,
    config: RelayConfig,
    wakeup: Arc<Notify>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) {
    log::info!(
        "outbox relay on: publishing to {} on {}",
        config.amqp.queue,
        config.amqp.nodes
    );
    let mut relay = Relay {
        publisher: None,
        backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
        publishing: Outage::new(
            module_path!(),
            "outbox relay: publishing",
            "the demands wait in the outbox until it is back",
        ),
        pool,
        config,
        metrics,
        shutdown,
    };
    loop {
        tokio::select! {
            () = wakeup.notified() => {}
            () = tokio::time::sleep(relay.config.interval) => {}
            () = relay.shutdown.requested() => break,
        }
        relay.drain().await;
    }
    if let Some(publisher) = relay.publisher.take() {
        publisher.close().await;
    }
    log::info!("outbox relay stopped");
}

/// The relay between rounds: its publisher (and connection), the backoff after a failure, and
/// the publishing outage it reports once.
struct Relay {
    pool: PgPool,
    config: RelayConfig,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    /// `None` before the first step, and after a round panicked: a new one is made then.
    publisher: Option<Publisher>,
    backoff: Backoff,
    publishing: Outage,
}

impl Relay {
    /// Steps until the outbox is drained, or a step says to wait.
    async fn drain(&mut self) {
        while !self.shutdown.is_requested() {
            match self.step().await {
                Next::Drain | Next::WaitUnblocked => {}
                Next::Idle => break,
                Next::Reconnect => {
                    if let Some(stuck) = self.publisher.as_mut() {
                        stuck.abandon("no confirm within the round limit");
                    }
                    self.shutdown.sleep(self.backoff.next_delay()).await;
                    break;
                }
                Next::BackOff => {
                    self.shutdown.sleep(self.backoff.next_delay()).await;
                    break;
                }
            }
        }
    }

    /// One step: connect (before locking rows, so an outage does not hold them); while the
    /// broker blocks the connection, wait, claiming nothing; else one round. What comes next.
    async fn step(&mut self) -> Next {
        let mut current = self.publisher.take().unwrap_or_else(|| {
            Publisher::new(Broker::new(
                self.config.amqp.nodes.clone(),
                Topology::from_config(&self.config.amqp),
                "pp_backend_api outbox relay",
            ))
        });
        let connected = current
            .ensure_connected(&Reconnect::Within(Duration::ZERO))
            .await;
        self.metrics
            .outbox_broker_connected
            .set(i64::from(current.is_connected()));
        if connected.is_err() {
            self.publisher = Some(current);
            return Next::BackOff;
        }
        if let Some(reason) = current.blocked_reason() {
            self.wait_unblocked(&current, &reason).await;
            self.publisher = Some(current);
            return Next::WaitUnblocked;
        }
        let (returned, outcome) = round(
            self.pool.clone(),
            self.config.batch,
            self.config.round_limit,
            current,
        )
        .await;
        self.publisher = returned;
        match outcome {
            Ok(outcome) => {
                self.record(&outcome);
                next_step(&outcome, self.config.batch)
            }
            Err(error) => {
                if error.is_transient() {
                    self.publishing.failed(&error);
                } else {
                    log::error!("outbox relay: {error}");
                }
                Next::BackOff
            }
        }
    }

    /// Waits, outside any transaction, until the broker reads from `publisher`'s connection
    /// again (or it ends, or shutdown comes).
    async fn wait_unblocked(&mut self, publisher: &Publisher, reason: &str) {
        self.publishing.failed(format_args!(
            "RabbitMQ blocked the connection ({reason}): claiming nothing until it is unblocked"
        ));
        self.metrics.outbox_broker_blocked.set(1);
        if let Some(flow) = publisher.flow() {
            tokio::select! {
                () = flow.unblocked() => {}
                () = self.shutdown.requested() => {}
            }
        }
        self.metrics.outbox_broker_blocked.set(0);
    }

    /// Records what a round did: what it published (counted), and the outage it ended or
    /// reported (with the backoff reset after a round that published everything).
    fn record(&mut self, outcome: &RoundOutcome) {
        match outcome {
            RoundOutcome::Published(published) => {
                self.backoff.reset();
                self.publishing.recovered();
                self.metrics.outbox_published.inc_by(*published as u64);
            }
            RoundOutcome::CutShort { confirmed, .. } => {
                self.metrics.outbox_published.inc_by(*confirmed as u64);
                self.publishing.failed(outcome);
            }
        }
    }
}

impl std::fmt::Display for RoundOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoundOutcome::Published(published) => write!(f, "{published} published"),
            RoundOutcome::CutShort {
                confirmed,
                returned,
                cause,
            } => write!(f, "{cause} ({confirmed} published, {returned} returned)"),
        }
    }
}

impl std::fmt::Display for CutShort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CutShort::TimedOut(limit) => write!(
                f,
                "RabbitMQ did not confirm within the round limit of {limit:?}"
            ),
            CutShort::Blocked(reason) => write!(f, "RabbitMQ blocked the connection ({reason})"),
            CutShort::Failed(error) => write!(f, "{error}"),
        }
    }
}

/// One transaction: claim, publish with confirms, mark the confirmed rows, commit; cut short
/// at `round_limit` or when the broker blocks the connection. Runs on the blocking pool (it
/// holds a database connection) and drives the publishing from there.
async fn round(
    pool: PgPool,
    batch: i64,
    round_limit: Duration,
    mut publisher: Publisher,
) -> (Option<Publisher>, Result<RoundOutcome, pp_lib::Error>) {
    let runtime = tokio::runtime::Handle::current();
    let joined = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + round_limit;
        let outcome = with_connection(&pool, |conn| {
            use diesel::Connection;
            conn.transaction(|conn| {
                let rows = claim_unpublished(conn, batch)?;
                if rows.is_empty() {
                    return Ok(RoundOutcome::Published(0));
                }
                let messages: Vec<Outgoing> = rows
                    .iter()
                    .map(|row| Outgoing {
                        id: row.id,
                        body: wire_body(&row.body),
                    })
                    .collect();
                let claimed = messages.len();
                let mut confirmed = Vec::with_capacity(claimed);
                let options = PublishOptions {
                    window: claimed,
                    rate: None,
                    reconnect: Reconnect::Within(PUBLISH_PATIENCE),
                };
                let flow = publisher.flow();
                let ended = runtime.block_on(async {
                    let publishing =
                        publisher.publish(messages, &options, |message| confirmed.push(message.id));
                    tokio::select! {
                        published = publishing => Ended::Published(published),
                        () = tokio::time::sleep_until(deadline.into()) => Ended::TimedOut,
                        reason = blocked(flow) => Ended::Blocked(reason),
                    }
                });
                // Whatever the broker confirmed is marked, however the round ended.
                mark_published(conn, &confirmed)?;
                let cause = match ended {
                    Ended::Published(Ok(_)) => return Ok(RoundOutcome::Published(confirmed.len())),
                    Ended::Published(Err(error)) => CutShort::Failed(error.reason),
                    Ended::TimedOut => CutShort::TimedOut(round_limit),
                    Ended::Blocked(reason) => CutShort::Blocked(reason),
                };
                Ok(RoundOutcome::CutShort {
                    confirmed: confirmed.len(),
                    returned: claimed - confirmed.len(),
                    cause,
                })
            })
        });
        (Some(publisher), outcome)
    })
    .await;
    match joined {
        Ok(result) => result,
        // The transaction rolled back; the publisher went with the closure, a new one is made.
        Err(error) => (
            None,
            Err(pp_lib::Error::Broker(format!(
                "a relay round panicked: {error}"
            ))),
        ),
    }
}

/// How the publishing of a round ended.
enum Ended {
    Published(Result<u64, PublishError>),
    TimedOut,
    Blocked(String),
}

/// Resolves when the broker blocks this connection (never without one).
async fn blocked(flow: Option<FlowWatch>) -> String {
    match flow {
        Some(flow) => flow.blocked().await,
        None => std::future::pending().await,
    }
}

/// The exact wire body for a stored demand: the original's `{"add_up_to":n,"done":false}`. A row
/// that is somehow not a valid demand is sent as stored, for the consumer to dead-letter.
fn wire_body(stored: &serde_json::Value) -> Vec<u8> {
    let raw = stored.to_string().into_bytes();
    match WorkDemand::from_json(&raw) {
        Ok(demand) => demand.to_json(),
        Err(_) => raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_round_the_relay_drains_rests_waits_or_backs_off() {
        let cut_short = |cause| RoundOutcome::CutShort {
            confirmed: 3,
            returned: 7,
            cause,
        };
        let cases = [
            (RoundOutcome::Published(500), Next::Drain),
            (RoundOutcome::Published(499), Next::Idle),
            (RoundOutcome::Published(0), Next::Idle),
            (
                cut_short(CutShort::Blocked("low on memory".to_owned())),
                Next::WaitUnblocked,
            ),
            (
                cut_short(CutShort::TimedOut(Duration::from_secs(5))),
                Next::Reconnect,
            ),
            (
                cut_short(CutShort::Failed(pp_lib::Error::broker("connection reset"))),
                Next::BackOff,
            ),
        ];
        for (outcome, next) in cases {
            assert_eq!(next_step(&outcome, 500), next, "{outcome:?}");
        }
    }

    #[test]
    fn stored_demands_go_out_in_the_original_shape() {
        let stored = serde_json::json!({"done": false, "add_up_to": 2});
        assert_eq!(wire_body(&stored), br#"{"add_up_to":2,"done":false}"#);
        let odd = serde_json::json!({"x": 1});
        assert_eq!(wire_body(&odd), br#"{"x":1}"#);
    }

    #[test]
    fn the_relay_is_switched_by_flag_or_environment() {
        use clap::Parser;
        let settings =
            crate::settings::Settings::try_parse_from(["pp_backend_api", "--outbox-relay", "off"])
                .expect("off is accepted");
        assert!(!settings.relay.enabled);
        let settings =
            crate::settings::Settings::try_parse_from(["pp_backend_api"]).expect("defaults parse");
        assert!(settings.relay.enabled, "on by default");
        assert!(
            crate::settings::Settings::try_parse_from([
                "pp_backend_api",
                "--outbox-relay",
                "maybe"
            ])
            .is_err()
        );
    }

    #[test]
    fn a_round_cut_short_says_why_and_what_went_back_to_the_outbox() {
        let blocked = RoundOutcome::CutShort {
            confirmed: 3,
            returned: 7,
            cause: CutShort::Blocked("low on memory".to_owned()),
        };
        let timed_out = CutShort::TimedOut(Duration::from_secs(5));

        assert_eq!(
            blocked.to_string(),
            "RabbitMQ blocked the connection (low on memory) (3 published, 7 returned)"
        );
        assert_eq!(
            timed_out.to_string(),
            "RabbitMQ did not confirm within the round limit of 5s"
        );
    }
}

//! The dashboard's own connection to RabbitMQ: queue depths for the overview, and the
//! dead-letter queue's page and actions (through `pp_lib::amqp::dead_letter_queue`).
//!
//! One connection per API process, made on first use through pp_lib's [`Broker`] (so the
//! topology is declared as everywhere else, and a cluster's nodes are tried in turn, a lost
//! session's node last) and made again after any failure. Calls run one at a time: a browse
//! holds messages while it reads them, and another browse meanwhile would see the queue without
//! them. Every call is bounded in time; while every node is down, a failed attempt is not
//! repeated for [`RETRY_PAUSE`], so a page polling the overview gets "down, because …" at once
//! instead of waiting for a connection timeout each time. The outage is logged once, by the
//! [`Broker`].

use std::time::{Duration, Instant};

use pp_lib::amqp::dead_letter_queue::{
    self, DeadLetterAction, DeadLetterPage, QueueDepth, Settled,
};
use pp_lib::amqp::{Broker, BrokerSession, Topology};
use pp_lib::config::AmqpConfig;
use tokio::sync::{Mutex, MutexGuard};

/// Longest wait for a connection, every node of a list tried in turn within it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for one call (a browse of hundreds of messages included).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failure, how long calls answer "down" without trying again.
pub const RETRY_PAUSE: Duration = Duration::from_secs(2);

/// The broker, as the dashboard uses it.
pub struct DashboardBroker {
    topology: Topology,
    state: Mutex<State>,
}

struct State {
    broker: Broker,
    session: Option<BrokerSession>,
    /// Set after a failure: until then, calls fail at once with the reason.
    paused_until: Option<(Instant, String)>,
}

impl DashboardBroker {
    pub fn new(amqp: &AmqpConfig) -> Self {
        let topology = Topology::from_config(amqp);
        DashboardBroker {
            state: Mutex::new(State {
                broker: Broker::new(
                    amqp.nodes.clone(),
                    topology.clone(),
                    "pp_backend_api dashboard",
                ),
                session: None,
                paused_until: None,
            }),
            topology,
        }
    }

    /// The work queue's and the dead-letter queue's depths.
    pub async fn depths(&self) -> Result<(QueueDepth, QueueDepth), String> {
        let queue = self.topology.queue();
        let dead_letter_queue = self.topology.dead_letter_queue();
        self.call(async |session| {
            let channel = session.channel();
            let work = dead_letter_queue::queue_depth(channel, queue).await;
            let dead = dead_letter_queue::queue_depth(channel, &dead_letter_queue).await;
            Ok((
                work.map_err(pp_lib::Error::broker)?,
                dead.map_err(pp_lib::Error::broker)?,
            ))
        })
        .await
    }

    /// The first `limit` dead letters, in the queue's order, each left in place.
    pub async fn browse(&self, limit: usize) -> Result<DeadLetterPage, String> {
        let queue = self.topology.dead_letter_queue();
        self.call(async |session| {
            dead_letter_queue::browse(session.connection(), &queue, limit).await
        })
        .await
    }

    /// Retries or discards the dead letter named `key`.
    pub async fn settle(&self, key: &str, action: DeadLetterAction) -> Result<Settled, String> {
        self.call(async |session| {
            dead_letter_queue::settle(session.connection(), &self.topology, key, action).await
        })
        .await
    }

    /// Sends up to `limit` dead letters back to the work queue.
    pub async fn retry_all(&self, limit: usize) -> Result<usize, String> {
        self.call(async |session| {
            dead_letter_queue::retry_all(session.connection(), &self.topology, limit).await
        })
        .await
    }

    /// Runs `operation` on the live session, bounded by [`CALL_TIMEOUT`]; a failure closes the
    /// session and pauses the calls.
    async fn call<T>(
        &self,
        operation: impl AsyncFnOnce(&BrokerSession) -> Result<T, pp_lib::Error>,
    ) -> Result<T, String> {
        let mut state = self.connected().await?;
        let outcome = match state.session.as_ref() {
            Some(session) => bounded(operation(session)).await,
            None => Err("no RabbitMQ session".to_owned()),
        };
        state.finish(outcome).await
    }

    /// The state, locked for one call, with a live session (made now if needed); or why not.
    async fn connected(&self) -> Result<MutexGuard<'_, State>, String> {
        let mut state = self.state.lock().await;
        if let Some((until, reason)) = &state.paused_until {
            if Instant::now() < *until {
                return Err(reason.clone());
            }
            state.paused_until = None;
        }
        if state.session.as_ref().is_some_and(BrokerSession::is_open) {
            return Ok(state);
        }
        if let Some(stale) = state.session.take() {
            stale.close().await;
        }
        // Each node in turn, from the one after a lost session's; the broker logs the outage.
        let attempt = state.broker.connect_within(CONNECT_TIMEOUT).await;
        match attempt {
            Ok(session) => {
                state.session = Some(session);
                Ok(state)
            }
            Err(error) => Err(state.paused(error.to_string())),
        }
    }
}

/// `call`, bounded by [`CALL_TIMEOUT`], its error as text for a person.
async fn bounded<T>(call: impl Future<Output = Result<T, pp_lib::Error>>) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("RabbitMQ did not answer within {CALL_TIMEOUT:?}")),
    }
}

impl State {
    /// Passes a call's outcome on; after a failure the session is closed (the next call makes a
    /// new one) and calls pause.
    async fn finish<T>(&mut self, outcome: Result<T, String>) -> Result<T, String> {
        match outcome {
            Ok(value) => Ok(value),
            Err(reason) => {
                if let Some(session) = self.session.take() {
                    session.close().await;
                }
                // The next connection goes to the next node first.
                self.broker.lost(&reason);
                Err(self.paused(reason))
            }
        }
    }

    /// Calls answer with `reason` for a while.
    fn paused(&mut self, reason: String) -> String {
        self.paused_until = Some((Instant::now() + RETRY_PAUSE, reason.clone()));
        reason
    }
}

//! Publishing demands with publisher confirms.
//!
//! [`Publisher::publish`] keeps up to `window` messages published but not yet confirmed, so the
//! broker's confirms flow back while more messages go out (waiting for each confirm in turn would
//! cap the rate at one message per round trip). A message counts only when the broker acks it.
//! When the connection fails, every unconfirmed message is published again, in order, on the next
//! connection, with the same `message_id`; a nacked message is published again after a pause.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use lapin::options::BasicPublishOptions;
use lapin::{Confirmation, PublisherConfirm};
use uuid::Uuid;

use crate::amqp::broker::{Broker, BrokerSession, FlowWatch};
use crate::amqp::message::demand_properties;
use crate::demand::WorkDemand;
use crate::error::Error;
use crate::shutdown::Shutdown;

/// A message to publish: its id (the `message_id`) and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub id: Uuid,
    pub body: Vec<u8>,
}

impl Outgoing {
    /// A demand under a fresh id.
    pub fn demand(demand: &WorkDemand) -> Self {
        Outgoing::demand_with_id(Uuid::new_v4(), demand)
    }

    pub fn demand_with_id(id: Uuid, demand: &WorkDemand) -> Self {
        Outgoing {
            id,
            body: demand.to_json(),
        }
    }
}

/// What to do when the broker is unreachable.
#[derive(Debug, Clone)]
pub enum Reconnect {
    /// Keep trying, with backoff, until shutdown is asked for (long-running publishers).
    UntilShutdown(Shutdown),
    /// Try for at most this long per outage, then give up (bursts, relays that retry later).
    Within(Duration),
}

/// How to publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Most messages published and not yet confirmed.
    pub window: usize,
    /// Messages per second at most; `None` for as fast as the broker confirms.
    pub rate: Option<f64>,
    pub reconnect: Reconnect,
}

impl PublishOptions {
    pub fn new(reconnect: Reconnect) -> Self {
        PublishOptions {
            window: DEFAULT_WINDOW,
            rate: None,
            reconnect,
        }
    }
}

/// Default number of unconfirmed messages in flight.
pub const DEFAULT_WINDOW: usize = 1_000;

/// Longest wait for one confirm. The broker confirms in milliseconds; a connection that died
/// without lapin noticing must not stall publishing forever.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause before publishing again a message the broker nacked.
const NACK_PAUSE: Duration = Duration::from_millis(200);

/// Publishing stopped before every message was confirmed.
#[derive(Debug, thiserror::Error)]
#[error("{confirmed} message(s) confirmed, then: {reason}")]
pub struct PublishError {
    /// How many messages the broker confirmed before the failure.
    pub confirmed: u64,
    pub reason: Error,
}

/// Publishes to the work queue over a supervised connection, kept between calls.
#[derive(Debug)]
pub struct Publisher {
    broker: Broker,
    session: Option<BrokerSession>,
    republished: u64,
    /// When set and pulled, no new message is published: the ones in flight are confirmed and
    /// `publish` returns. It cuts short a wait for the rate, however long.
    shutdown: Option<Shutdown>,
}

impl Publisher {
    pub fn new(broker: Broker) -> Self {
        Publisher {
            broker,
            session: None,
            republished: 0,
            shutdown: None,
        }
    }

    /// The same publisher, which stops publishing new messages when `shutdown` is pulled.
    pub fn stopping_on(self, shutdown: Shutdown) -> Self {
        Publisher {
            shutdown: Some(shutdown),
            ..self
        }
    }

    /// Messages published a second time because a connection was lost before their confirm.
    pub fn republished(&self) -> u64 {
        self.republished
    }

    /// True when a connection is open now.
    pub fn is_connected(&self) -> bool {
        self.session.as_ref().is_some_and(BrokerSession::is_open)
    }

    /// The broker's reason, while it blocks the current connection (a memory or disk alarm).
    pub fn blocked_reason(&self) -> Option<String> {
        self.session
            .as_ref()
            .and_then(BrokerSession::blocked_reason)
    }

    /// The flow of the current connection, if there is one.
    pub fn flow(&self) -> Option<FlowWatch> {
        self.session.as_ref().map(BrokerSession::flow)
    }

    /// Drops the current connection, if any, without waiting for the broker: for a connection
    /// that stopped answering, whose polite close would only time out. Whatever it had
    /// unconfirmed is for the caller to publish again.
    pub fn abandon(&mut self) {
        if let Some(session) = self.session.take() {
            tokio::spawn(session.close());
        }
    }

    /// Connects now, if not connected, under `reconnect`'s rules.
    pub async fn ensure_connected(&mut self, reconnect: &Reconnect) -> Result<(), Error> {
        if self.is_connected() {
            return Ok(());
        }
        if let Some(stale) = self.session.take() {
            stale.close().await;
        }
        let session = match reconnect {
            Reconnect::UntilShutdown(shutdown) => self
                .broker
                .connect(shutdown)
                .await
                .ok_or_else(|| Error::broker("shutting down before RabbitMQ answered"))?,
            Reconnect::Within(patience) => self.broker.connect_within(*patience).await?,
        };
        self.session = Some(session);
        Ok(())
    }

    /// Publishes every message and returns once the broker confirmed them all (their number).
    /// `on_confirmed` is called for each confirmed message, in order.
    pub async fn publish(
        &mut self,
        messages: impl IntoIterator<Item = Outgoing>,
        options: &PublishOptions,
        mut on_confirmed: impl FnMut(&Outgoing),
    ) -> Result<u64, PublishError> {
        let mut source = messages.into_iter();
        let mut again: VecDeque<Outgoing> = VecDeque::new();
        let mut in_flight: VecDeque<(Outgoing, PublisherConfirm)> = VecDeque::new();
        let window = options.window.max(1);
        let started = Instant::now();
        let mut sent: u64 = 0;
        let mut confirmed: u64 = 0;
        let mut stopped = false;
        loop {
            if let Err(reason) = self.ensure_connected(&options.reconnect).await {
                return Err(PublishError { confirmed, reason });
            }
            let Some(session) = self.session.as_ref() else {
                continue;
            };
            let channel = session.channel().clone();
            let queue = self.broker.topology().queue().to_owned();
            let mut failure: Option<Error> = None;
            while !stopped && in_flight.len() < window {
                if self.shutdown.as_ref().is_some_and(Shutdown::is_requested) {
                    stopped = true;
                    break;
                }
                let Some(message) = again.pop_front().or_else(|| source.next()) else {
                    break;
                };
                if let Some(rate) = options.rate.filter(|rate| *rate > 0.0) {
                    // Checked: a rate too slow for the clock waits a century, never panics.
                    let offset = Duration::try_from_secs_f64(sent as f64 / rate)
                        .unwrap_or(crate::config::MAX_DURATION_SETTING)
                        .min(crate::config::MAX_DURATION_SETTING);
                    let due = tokio::time::sleep_until((started + offset).into());
                    if let Some(shutdown) = &self.shutdown {
                        tokio::select! {
                            () = due => {}
                            () = shutdown.requested() => {
                                stopped = true;
                                break;
                            }
                        }
                    } else {
                        due.await;
                    }
                }
                let published = channel
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        &message.body,
                        demand_properties(message.id),
                    )
                    .await;
                match published {
                    Ok(confirm) => {
                        sent += 1;
                        in_flight.push_back((message, confirm));
                    }
                    Err(error) => {
                        again.push_front(message);
                        failure = Some(Error::broker(error));
                        break;
                    }
                }
            }
            if failure.is_none() {
                let Some((message, confirm)) = in_flight.pop_front() else {
                    return Ok(confirmed);
                };
                let confirmation = match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
                    Ok(confirmation) => confirmation.map_err(Error::broker),
                    Err(_) => Err(Error::broker(format!(
                        "no confirm within {CONFIRM_TIMEOUT:?}"
                    ))),
                };
                match confirmation {
                    Ok(Confirmation::Ack(_)) => {
                        confirmed += 1;
                        on_confirmed(&message);
                    }
                    Ok(Confirmation::Nack(_)) => {
                        log::warn!(
                            "RabbitMQ refused message {}; publishing it again",
                            message.id
                        );
                        again.push_back(message);
                        tokio::time::sleep(NACK_PAUSE).await;
                    }
                    Ok(Confirmation::NotRequested) => {
                        // Sessions of a publishing broker are always in confirm mode.
                        let reason = Error::broker("the channel is not in confirm mode");
                        return Err(PublishError { confirmed, reason });
                    }
                    Err(error) => {
                        // Published, never confirmed: it goes out again with the rest.
                        self.republished += 1;
                        again.push_front(message);
                        failure = Some(error);
                    }
                }
            }
            if let Some(error) = failure {
                // Nothing in flight will be confirmed now: publish it all again, in order.
                self.republished += in_flight.len() as u64;
                while let Some((message, _)) = in_flight.pop_back() {
                    again.push_front(message);
                }
                self.broker.lost(error);
                if let Some(session) = self.session.take() {
                    session.close().await;
                }
            }
        }
    }

    /// Closes the connection, if any.
    pub async fn close(mut self) {
        if let Some(session) = self.session.take() {
            session.close().await;
        }
    }
}

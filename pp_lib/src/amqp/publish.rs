//! Publishing demands with publisher confirms.
//!
//! [`Publisher::publish`] keeps up to `window` messages published but not yet confirmed, so the
//! broker's confirms flow back while more messages go out (waiting for each confirm in turn would
//! cap the rate at one message per round trip). A message counts only when the broker acks it.
//! When the connection fails, every unconfirmed message is published again, in order, on the next
//! connection, with the same `message_id`; so is every unconfirmed message after a nack, or after
//! a message came back because no queue took it (publishes are mandatory), on a new connection
//! after a pause.

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

/// Pause before publishing again what was in flight when the broker nacked a message; it
/// doubles with each nack in a row, up to [`LONGEST_NACK_PAUSE`], and an ack resets it.
const NACK_PAUSE: Duration = Duration::from_millis(200);
const LONGEST_NACK_PAUSE: Duration = Duration::from_secs(5);

/// The pause after `nacks` nacks in a row (1 or more).
fn nack_pause(nacks: u32) -> Duration {
    NACK_PAUSE
        .saturating_mul(1 << nacks.saturating_sub(1).min(16))
        .min(LONGEST_NACK_PAUSE)
}

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
    /// Refusals in a row (nacks, returned messages), for the pause after the next one.
    nacks: u32,
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
            nacks: 0,
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

    /// Messages published a second time because a connection was lost before their confirm, or
    /// the broker nacked them or one ahead of them.
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
    /// unconfirmed is for the caller to publish again. The loss is reported (`why`), so the next
    /// connection goes to another node of a list, not back to the stalled one.
    pub fn abandon(&mut self, why: impl std::fmt::Display) {
        if let Some(session) = self.session.take() {
            self.broker.lost(why);
            tokio::spawn(session.close());
        }
    }

    /// Whether the broker has the features this queue needs ([`Broker::check_features`]).
    pub async fn check_features(&self) -> Result<(), Error> {
        self.broker.check_features().await
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
                .await?
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
        let mut sending = Sending::new(messages.into_iter(), options.window);
        let started = Instant::now();
        loop {
            if let Err(reason) = self.ensure_connected(&options.reconnect).await {
                let confirmed = sending.confirmed;
                return Err(PublishError { confirmed, reason });
            }
            let interrupted = match self.send_window(&mut sending, options, started).await {
                Err(error) => Interrupted {
                    error,
                    unconfirmed: None,
                },
                Ok(()) => match sending.take_oldest() {
                    None => return Ok(sending.confirmed),
                    Some((message, confirm)) => {
                        match self
                            .confirm(&mut sending, message, confirm, &mut on_confirmed)
                            .await?
                        {
                            None => continue,
                            Some(interrupted) => interrupted,
                        }
                    }
                },
            };
            // Nothing in flight will be confirmed now: it all goes out again first, in order.
            self.republished += sending.lost(interrupted.unconfirmed);
            self.broker.lost(interrupted.error);
            if let Some(session) = self.session.take() {
                session.close().await;
            }
        }
    }

    /// Publishes on the current session until the window is full, nothing is left, or publishing
    /// stops; a message the channel refused goes back to the front.
    async fn send_window(
        &self,
        sending: &mut Sending<impl Iterator<Item = Outgoing>, PublisherConfirm>,
        options: &PublishOptions,
        started: Instant,
    ) -> Result<(), Error> {
        let Some(session) = self.session.as_ref() else {
            return Ok(());
        };
        let channel = session.channel().clone();
        let queue = self.broker.topology().queue();
        while let Some((message, due)) = sending.next(options.rate) {
            let on_time = match due {
                Some(due) => self.wait_until(started + due).await,
                None => true,
            };
            if !on_time || self.shutdown.as_ref().is_some_and(Shutdown::is_requested) {
                sending.not_published(message);
                sending.stop();
                return Ok(());
            }
            let published = channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    // A message no queue takes comes back (basic.return) instead of being
                    // confirmed and dropped: the queue was deleted, or a producer was left
                    // on a queue that is gone.
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &message.body,
                    demand_properties(message.id),
                )
                .await;
            match published {
                Ok(confirm) => sending.published(message, confirm),
                Err(error) => {
                    sending.not_published(message);
                    return Err(Error::broker(error));
                }
            }
        }
        Ok(())
    }

    /// Waits until `due`; false when shutdown came first.
    async fn wait_until(&self, due: Instant) -> bool {
        let due = tokio::time::sleep_until(due.into());
        match &self.shutdown {
            Some(shutdown) => tokio::select! {
                () = due => true,
                () = shutdown.requested() => false,
            },
            None => {
                due.await;
                true
            }
        }
    }

    /// Waits for the confirm of the oldest message in flight: `None` when it was acked, the
    /// interruption when the connection failed or the broker nacked or returned it.
    async fn confirm(
        &mut self,
        sending: &mut Sending<impl Iterator<Item = Outgoing>, PublisherConfirm>,
        message: Outgoing,
        confirm: PublisherConfirm,
        on_confirmed: &mut impl FnMut(&Outgoing),
    ) -> Result<Option<Interrupted>, PublishError> {
        let confirmation = match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
            Ok(confirmation) => confirmation.map_err(Error::broker),
            Err(_) => Err(Error::broker(format!(
                "no confirm within {CONFIRM_TIMEOUT:?}"
            ))),
        };
        match confirmation {
            Ok(Confirmation::Ack(Some(_returned))) => {
                self.refused(message, "no queue took it (returned)").await
            }
            Ok(Confirmation::Ack(None)) => {
                self.nacks = 0;
                sending.acked();
                on_confirmed(&message);
                Ok(None)
            }
            // A nack says the queue could not take the message: a quorum queue whose leader
            // this node cannot reach, or that lost its majority, or a full queue. RabbitMQ 3.10
            // nacks every later publish on a channel opened while a quorum queue was electing
            // its leader, yet enqueues them: so a nack ends the session, and what was in
            // flight goes out again on a new one, on the next node (the consumers' dedup absorbs
            // whatever of it was enqueued after all).
            Ok(Confirmation::Nack(_)) => self.refused(message, "nacked").await,
            // Sessions of a publishing broker are always in confirm mode.
            Ok(Confirmation::NotRequested) => Err(PublishError {
                confirmed: sending.confirmed,
                reason: Error::broker("the channel is not in confirm mode"),
            }),
            // Published, never confirmed: it goes out again with the rest.
            Err(error) => Ok(Some(Interrupted {
                error,
                unconfirmed: Some(message),
            })),
        }
    }

    /// The broker did not take `message` (`how`): it and what was in flight go out again on a
    /// new connection, which declares the queue again, after a pause that grows with each
    /// refusal in a row.
    async fn refused(
        &mut self,
        message: Outgoing,
        how: &str,
    ) -> Result<Option<Interrupted>, PublishError> {
        self.nacks = self.nacks.saturating_add(1);
        let pause = nack_pause(self.nacks);
        log::warn!(
            "RabbitMQ refused message {} ({how}); publishing it and those after it again on a \
             new connection in {pause:?}",
            message.id
        );
        // Cut short when asked to stop: what was in flight stays unconfirmed then.
        self.wait_until(Instant::now() + pause).await;
        Ok(Some(Interrupted {
            error: Error::broker(format!("RabbitMQ refused message {} ({how})", message.id)),
            unconfirmed: Some(message),
        }))
    }

    /// Closes the connection, if any.
    pub async fn close(mut self) {
        if let Some(session) = self.session.take() {
            session.close().await;
        }
    }
}

/// Why publishing on a connection stopped: the error, and the message whose confirm it cut off.
struct Interrupted {
    error: Error,
    unconfirmed: Option<Outgoing>,
}

/// One call of [`Publisher::publish`]: what waits to go out, what is out waiting for its confirm
/// (with `C`, the handle of that confirm), and how far it got. Its steps are pure, so the order
/// of a publication is tested without a broker: first out, first confirmed; what a lost
/// connection (or a nack) left unconfirmed goes out again first, in its order.
#[derive(Debug)]
struct Sending<I, C> {
    source: I,
    again: VecDeque<Outgoing>,
    in_flight: VecDeque<(Outgoing, C)>,
    window: usize,
    /// New messages taken from `source` so far (what goes out again is not counted: the rate
    /// paces new messages only, so a reconnection's resend does not put off the ones after it).
    drawn: u64,
    confirmed: u64,
    stopped: bool,
}

impl<I: Iterator<Item = Outgoing>, C> Sending<I, C> {
    fn new(source: I, window: usize) -> Self {
        Sending {
            source,
            again: VecDeque::new(),
            in_flight: VecDeque::new(),
            window: window.max(1),
            drawn: 0,
            confirmed: 0,
            stopped: false,
        }
    }

    /// The next message to publish, and when it is due from the start at `rate` new messages a
    /// second: one to publish again first (due at once), else a new one (`None` as its time when
    /// there is no rate); none while the window is full, once publishing stopped, or when none is
    /// left.
    fn next(&mut self, rate: Option<f64>) -> Option<(Outgoing, Option<Duration>)> {
        if self.stopped || self.in_flight.len() >= self.window {
            return None;
        }
        if let Some(again) = self.again.pop_front() {
            return Some((again, None));
        }
        let message = self.source.next()?;
        let due = due(self.drawn, rate);
        self.drawn += 1;
        Some((message, due))
    }

    fn published(&mut self, message: Outgoing, confirm: C) {
        self.in_flight.push_back((message, confirm));
    }

    /// `message` was not published: it is the next to go.
    fn not_published(&mut self, message: Outgoing) {
        self.again.push_front(message);
    }

    /// No new message goes out: those in flight are confirmed, and publishing returns.
    fn stop(&mut self) {
        self.stopped = true;
    }

    /// The oldest message in flight, whose confirm comes first; `None` once all are confirmed.
    fn take_oldest(&mut self) -> Option<(Outgoing, C)> {
        self.in_flight.pop_front()
    }

    fn acked(&mut self) {
        self.confirmed += 1;
    }

    /// The connection is gone: `unconfirmed` (the oldest, whose confirm it cut off) and every
    /// message still in flight go out again first, in their order. How many were published and
    /// will be published again.
    fn lost(&mut self, unconfirmed: Option<Outgoing>) -> u64 {
        let mut again = self.in_flight.len() as u64;
        while let Some((message, _)) = self.in_flight.pop_back() {
            self.again.push_front(message);
        }
        if let Some(message) = unconfirmed {
            again += 1;
            self.again.push_front(message);
        }
        again
    }
}

/// When new message number `index` (from 0) is due, from the start, at `rate` messages a second
/// (`None`: at once, there is no rate). Checked: a rate too slow for the clock waits a century,
/// never panics.
fn due(index: u64, rate: Option<f64>) -> Option<Duration> {
    let rate = rate.filter(|rate| *rate > 0.0)?;
    Some(
        Duration::try_from_secs_f64(index as f64 / rate)
            .unwrap_or(crate::config::MAX_DURATION_SETTING)
            .min(crate::config::MAX_DURATION_SETTING),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(count: u128) -> Vec<Outgoing> {
        (0..count)
            .map(|n| Outgoing {
                id: Uuid::from_u128(n),
                body: Vec::new(),
            })
            .collect()
    }

    fn id(message: &Outgoing) -> u128 {
        message.id.as_u128()
    }

    /// Publishes what `sending` gives until it gives nothing; the ids published.
    fn publish_all(sending: &mut Sending<std::vec::IntoIter<Outgoing>, ()>) -> Vec<u128> {
        publish_all_at(sending, None)
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// The same, at `rate`: each id with when it was due.
    fn publish_all_at(
        sending: &mut Sending<std::vec::IntoIter<Outgoing>, ()>,
        rate: Option<f64>,
    ) -> Vec<(u128, Option<Duration>)> {
        let mut published = Vec::new();
        while let Some((message, due)) = sending.next(rate) {
            published.push((id(&message), due));
            sending.published(message, ());
        }
        published
    }

    #[test]
    fn no_more_than_the_window_is_out_unconfirmed() {
        let mut sending = Sending::new(messages(10).into_iter(), 4);

        assert_eq!(publish_all(&mut sending), [0, 1, 2, 3]);
        let (oldest, ()) = sending.take_oldest().expect("one in flight");
        sending.acked();

        assert_eq!(id(&oldest), 0);
        assert_eq!(publish_all(&mut sending), [4]);
        assert_eq!(sending.confirmed, 1);
    }

    #[test]
    fn what_a_lost_connection_left_unconfirmed_goes_again_first_in_order() {
        let mut sending = Sending::new(messages(8).into_iter(), 4);
        publish_all(&mut sending);
        let (oldest, ()) = sending.take_oldest().expect("in flight");

        let again = sending.lost(Some(oldest));

        assert_eq!(again, 4, "the unconfirmed one and the three behind it");
        assert_eq!(publish_all(&mut sending), [0, 1, 2, 3]);
        assert_eq!(sending.drawn, 4, "taken from the source once");
    }

    #[test]
    fn the_pause_after_a_nack_doubles_with_each_one_in_a_row_up_to_the_longest() {
        let pauses: Vec<u128> = [1, 2, 3, 6, 40, u32::MAX]
            .into_iter()
            .map(|nacks| nack_pause(nacks).as_millis())
            .collect();

        assert_eq!(pauses, [200, 400, 800, 5_000, 5_000, 5_000]);
    }

    #[test]
    fn once_stopped_nothing_new_goes_out() {
        let mut sending: Sending<_, ()> = Sending::new(messages(3).into_iter(), 8);
        let (first, _) = sending.next(None).expect("a message");
        sending.not_published(first);
        sending.stop();

        assert!(sending.next(None).is_none());
    }

    #[test]
    fn new_messages_are_due_at_the_rate_and_a_rate_too_slow_for_the_clock_waits_a_century() {
        let mut sending = Sending::new(messages(3).into_iter(), 8);

        let dues: Vec<_> = publish_all_at(&mut sending, Some(2.0))
            .into_iter()
            .map(|(_, due)| due)
            .collect();

        assert_eq!(
            dues,
            [0, 500, 1_000].map(|millis| Some(Duration::from_millis(millis)))
        );
        assert_eq!(due(3, None), None);
        assert_eq!(
            due(3, Some(1e-300)),
            Some(crate::config::MAX_DURATION_SETTING)
        );
    }

    #[test]
    fn what_goes_out_again_is_due_at_once_and_does_not_put_off_the_new_ones() {
        let mut sending = Sending::new(messages(6).into_iter(), 4);
        publish_all_at(&mut sending, Some(2.0));
        sending.lost(None);

        let published = publish_all_at(&mut sending, Some(2.0));

        assert_eq!(
            published,
            [(0, None), (1, None), (2, None), (3, None)],
            "the unconfirmed, at once"
        );
        while sending.take_oldest().is_some() {
            sending.acked();
        }
        assert_eq!(
            publish_all_at(&mut sending, Some(2.0)),
            [
                (4, Some(Duration::from_millis(2_000))),
                (5, Some(Duration::from_millis(2_500)))
            ],
            "the new ones at their own time"
        );
    }
}

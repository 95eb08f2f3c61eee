//! The supervised broker connection: connect → channel → confirm mode → declare the topology,
//! again and again, with backoff, for as long as the process needs it.
//!
//! lapin's own recovery is not relied on (it does not survive every broker restart). Instead a
//! [`Broker`] makes fresh [`BrokerSession`]s: its user runs on a session until an operation fails
//! (a publish, the consumer stream ending), reports it with [`Broker::lost`], and asks for a new
//! one. With several nodes (`AMQP_URL` lists a cluster's), the first attempt goes to the first
//! node, and each failed attempt's successor to the next node round the list; after a lost
//! session the next attempt goes to another node drawn at random, so the processes of a lost node
//! spread over the others instead of all landing on the one after it (where one more fault would
//! stop them all). The backoff grows after a whole round failed, so a dead node costs one attempt
//! and the live ones are found at once. Heartbeats (10 s unless the URL sets `heartbeat=`) make a silent broker fail a session
//! within seconds. Each outage is logged once when it starts and once when it ends, however many
//! attempts it takes (an [`Outage`]).
//!
//! A session also follows RabbitMQ's `connection.blocked` / `connection.unblocked` notices (a
//! memory or disk alarm): while blocked, the broker reads nothing from a publishing connection,
//! so a publisher holding anything meanwhile (a transaction, row locks) should first wait, with
//! [`FlowWatch::unblocked`], and a publish in progress can be abandoned with
//! [`FlowWatch::blocked`].

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ConnectionStatus, Event};
use rand::Rng;
use tokio::sync::watch;

use crate::amqp::topology::Topology;
use crate::config::{AmqpNodes, QueueType, SecretUrl};
use crate::error::Error;
use crate::outage::{Outage, Transition};
use crate::shutdown::Shutdown;

/// Heartbeat interval asked for unless the URL sets one.
pub const DEFAULT_HEARTBEAT_SECS: u16 = 10;
/// Largest AMQP frame asked for unless the URL sets `frame_max=`. lapin keeps 32 frames of
/// buffer in each direction, zero-filled: 8 MiB per connection at RabbitMQ's default 128 KiB,
/// 1 MiB at this size. Our messages are tens of bytes, and a larger one is split into frames.
pub const DEFAULT_FRAME_MAX: u32 = 16 * 1024;
/// Longest wait for one connection attempt (TCP, AMQP handshake, channel, declarations) to a
/// lone node.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for one attempt to a node of a list: a node that takes connections but answers
/// nothing (frozen, swapping, cut off behind a firewall that drops) costs this, and a round of
/// three fits well inside the 10 s a burst waits by default. A healthy node connects in a few
/// milliseconds on a LAN; it is far above that.
pub const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What RabbitMQ says when it refuses a queue whose type's feature flag is off.
const FEATURE_FLAG_DISABLED: &str = "feature flag is disabled";

/// The longest the check at start waits for one node.
pub const START_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The shortest an attempt is given when little patience is left: enough for a healthy node.
const MIN_ATTEMPT: Duration = Duration::from_millis(500);

/// Longest wait for the broker to answer a call made while stopping or acknowledging (a cancel,
/// a close, an ack): a connection that died unnoticed must not hold a shutdown.
pub const BROKER_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Exponential backoff with jitter between connection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The next wait: it doubles each time up to the maximum, with ±20 % jitter so that many
    /// clients do not retry in step.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = rand::rng().random_range(0.8..1.2);
        base.mul_f64(jitter)
    }

    /// Back to the initial wait, after a success.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
    }
}

/// Whether the broker lets a connection publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    Open,
    /// `connection.blocked` received, not yet followed by `connection.unblocked`: the broker
    /// reads nothing from this connection (publishes, confirms asked for, heartbeats).
    Blocked {
        reason: String,
    },
}

/// How often a wait on the flow looks at the connection itself, so that a connection lost while
/// blocked ends the wait.
const FLOW_POLL: Duration = Duration::from_millis(250);

/// A view of one session's flow that outlives borrows of the session: a publisher lends it to
/// whoever must stop when the broker blocks the connection.
#[derive(Debug, Clone)]
pub struct FlowWatch {
    status: ConnectionStatus,
    flow: watch::Receiver<Flow>,
}

impl FlowWatch {
    /// The reason the broker gave, while the connection is blocked.
    pub fn blocked_reason(&self) -> Option<String> {
        if !self.status.blocked() {
            return None;
        }
        Some(match &*self.flow.borrow() {
            Flow::Blocked { reason } if !reason.is_empty() => reason.clone(),
            _ => "no reason given".to_owned(),
        })
    }

    /// Resolves when the broker blocks the connection, with its reason. Never resolves for a
    /// connection that is lost instead.
    pub async fn blocked(&self) -> String {
        let mut flow = self.flow.clone();
        loop {
            if let Some(reason) = self.blocked_reason() {
                return reason;
            }
            if !self.status.connected() {
                return std::future::pending().await;
            }
            tokio::select! {
                _ = flow.changed() => {}
                () = tokio::time::sleep(FLOW_POLL) => {}
            }
        }
    }

    /// Resolves once the connection is no longer blocked: unblocked, or lost.
    pub async fn unblocked(&self) {
        let mut flow = self.flow.clone();
        while self.status.blocked() && self.status.connected() {
            tokio::select! {
                _ = flow.changed() => {}
                () = tokio::time::sleep(FLOW_POLL) => {}
            }
        }
    }
}

/// Follows the connection's events: its blocked/unblocked notices become the [`Flow`].
fn watch_flow(connection: &Connection) -> FlowWatch {
    let (sender, flow) = watch::channel(Flow::Open);
    let events = connection.events_listener();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Event::ConnectionBlocked(reason)) => {
                        sender.send_replace(Flow::Blocked { reason });
                    }
                    Some(Event::ConnectionUnblocked) => {
                        sender.send_replace(Flow::Open);
                    }
                    Some(_) => {}
                    None => return,
                },
                // Nobody watches any more: the session is gone.
                () = sender.closed() => return,
            }
        }
    });
    FlowWatch {
        status: connection.status().clone(),
        flow,
    }
}

/// One live connection with one channel, in confirm mode when asked, topology declared.
#[derive(Debug)]
pub struct BrokerSession {
    connection: Connection,
    channel: Channel,
    flow: FlowWatch,
}

impl BrokerSession {
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The connection, for channels of their own (browsing the dead-letter queue needs one it
    /// can close).
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// True while both the connection and the channel are usable.
    pub fn is_open(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }

    /// The broker's reason, while it blocks this connection (`connection.blocked`).
    pub fn blocked_reason(&self) -> Option<String> {
        self.flow.blocked_reason()
    }

    /// A handle on this connection's flow, to wait for it to be blocked or unblocked.
    pub fn flow(&self) -> FlowWatch {
        self.flow.clone()
    }

    /// Closes the connection politely (unacknowledged deliveries go back to their queue),
    /// waiting at most [`BROKER_CALL_TIMEOUT`] for the broker: a half-dead connection is dropped.
    pub async fn close(self) {
        if !self.connection.status().connected() {
            return;
        }
        match tokio::time::timeout(
            BROKER_CALL_TIMEOUT,
            self.connection.close(200, "bye".into()),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(error)) => log::debug!("closing the RabbitMQ connection: {error}"),
            Err(_) => log::debug!("RabbitMQ did not answer the close; dropping the connection"),
        }
    }
}

/// Makes broker sessions, with backoff, and logs outages once each.
#[derive(Debug)]
pub struct Broker {
    nodes: AmqpNodes,
    /// The node the next attempt goes to (counted round the list).
    next_node: usize,
    /// Attempts failed in a row since the last session.
    failures: usize,
    topology: Topology,
    name: String,
    confirms: bool,
    backoff: Backoff,
    /// Down from the first failed attempt (or lost session) to the next session.
    outage: Outage,
}

impl Broker {
    /// A supervisor for connections named `name` (shown in RabbitMQ's management UI), with
    /// publisher confirms on.
    pub fn new(nodes: AmqpNodes, topology: Topology, name: impl Into<String>) -> Self {
        let outage = Outage::new(
            module_path!(),
            format!("RabbitMQ at {nodes}"),
            if nodes.len() > 1 {
                "reconnecting to each node in turn, with backoff"
            } else {
                "reconnecting with backoff"
            },
        );
        Broker {
            nodes,
            next_node: 0,
            failures: 0,
            topology,
            name: name.into(),
            confirms: true,
            backoff: Backoff::default(),
            outage,
        }
    }

    /// Consumers do not need publisher confirms.
    pub fn without_confirms(mut self) -> Self {
        self.confirms = false;
        self
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The node the next attempt goes to.
    pub fn next_node(&self) -> &SecretUrl {
        self.nodes.at(self.next_node)
    }

    /// One attempt, to the next node, bounded by the connect timeout.
    pub async fn try_connect(&self) -> Result<BrokerSession, Error> {
        self.try_connect_for(self.connect_timeout()).await
    }

    /// The longest an attempt to one node may take: shorter when another node can be tried.
    pub fn connect_timeout(&self) -> Duration {
        if self.nodes.len() > 1 {
            NODE_CONNECT_TIMEOUT
        } else {
            DEFAULT_CONNECT_TIMEOUT
        }
    }

    /// The check a process makes at start, before it opens anything else: the queue's features
    /// ([`Broker::check_features`]), then one attempt at each node in turn, each for at most
    /// [`START_CHECK_TIMEOUT`], until one connects (its session is closed again). A queue that
    /// exists with another type is the error returned; nodes that cannot be reached are no
    /// error here (the process rides the outage out, and logs it, once it runs).
    pub async fn check_at_start(&mut self) -> Result<(), Error> {
        self.check_features().await?;
        for _ in 0..self.nodes.len() {
            let timeout = self.connect_timeout().min(START_CHECK_TIMEOUT);
            match self.try_connect_for(timeout).await {
                Ok(session) => {
                    session.close().await;
                    return Ok(());
                }
                Err(error @ Error::Config(_)) => return Err(error),
                Err(_) => self.next_node = (self.next_node + 1) % self.nodes.len(),
            }
        }
        Ok(())
    }

    /// For a quorum queue, checks on one connection to the next node that the cluster has the
    /// `stream_queue` feature flag on: at-least-once dead-lettering needs it, and without it
    /// RabbitMQ declares the queue all the same and dead-letters at most once, silently (a dead
    /// letter can then be lost). RabbitMQ tells no client its feature flags, but refuses to
    /// declare a stream while that one is off: a stream `<queue>.stream-probe` is declared and
    /// deleted at once. The flag off is a configuration error, with the command that turns it
    /// on; anything else (a node down, a slow cluster, no permission) is left to the
    /// connections that follow.
    pub async fn check_features(&self) -> Result<(), Error> {
        if self.topology.queue_type() != QueueType::Quorum {
            return Ok(());
        }
        let url = with_session_defaults(self.next_node().expose());
        let probe = format!("{}.stream-probe", self.topology.queue());
        let declared = async {
            let properties = ConnectionProperties::default()
                .with_connection_name(format!("{} feature check", self.name).into());
            let connection = Connection::connect(&url, properties).await?;
            let channel = connection.create_channel().await?;
            let mut arguments = FieldTable::default();
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("stream".into()),
            );
            let declared = channel
                .queue_declare(
                    probe.as_str().into(),
                    QueueDeclareOptions::durable(),
                    arguments,
                )
                .await;
            if declared.is_ok() {
                let _ = channel
                    .queue_delete(probe.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
            // Refused, the connection is closed already.
            let _ = connection.close(200, "checked".into()).await;
            declared.map(|_| ())
        };
        match tokio::time::timeout(self.connect_timeout(), declared).await {
            Ok(Err(error)) if error.to_string().contains(FEATURE_FLAG_DISABLED) => {
                Err(Error::Config(format!(
                    "the quorum queue {} dead-letters at least once, which needs RabbitMQ's \
                     stream_queue feature flag, and it is off on {} (RabbitMQ would dead-letter \
                     at most once, silently): turn it on with `rabbitmqctl enable_feature_flag \
                     stream_queue`",
                    self.topology.queue(),
                    self.next_node()
                )))
            }
            _ => Ok(()),
        }
    }

    /// One attempt, to the next node, for at most `timeout`.
    async fn try_connect_for(&self, timeout: Duration) -> Result<BrokerSession, Error> {
        let url = self.next_node();
        match tokio::time::timeout(timeout, self.open(url)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::broker(format!(
                "no answer from {url} within {timeout:?}"
            ))),
        }
    }

    /// The wait before the next attempt: none while some node of this round is still untried,
    /// the backoff's next delay once every node has failed.
    fn delay_after_failure(&mut self) -> Duration {
        if self.failures.is_multiple_of(self.nodes.len()) {
            self.backoff.next_delay()
        } else {
            Duration::ZERO
        }
    }

    /// Connects, retrying with backoff until it succeeds or shutdown is asked for (`None`). A
    /// queue that exists with another type or other arguments is no outage but a configuration
    /// error, which no retry mends: it is returned at once.
    pub async fn connect(&mut self, shutdown: &Shutdown) -> Result<Option<BrokerSession>, Error> {
        loop {
            if shutdown.is_requested() {
                return Ok(None);
            }
            let attempt = tokio::select! {
                attempt = self.try_connect() => attempt,
                () = shutdown.requested() => return Ok(None),
            };
            match attempt {
                Ok(session) => return Ok(Some(self.connected(session))),
                Err(error @ Error::Config(_)) => return Err(error),
                Err(error) => {
                    self.failed(&error);
                    let delay = self.delay_after_failure();
                    if !delay.is_zero() && !shutdown.sleep(delay).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Connects, retrying with backoff for at most `patience` (at least one attempt, none of
    /// them past it).
    pub async fn connect_within(&mut self, patience: Duration) -> Result<BrokerSession, Error> {
        let deadline = Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = self.connect_timeout().min(left.max(MIN_ATTEMPT));
            match self.try_connect_for(timeout).await {
                Ok(session) => return Ok(self.connected(session)),
                Err(error @ Error::Config(_)) => return Err(error),
                Err(error) => {
                    self.failed(&error);
                    let delay = self.delay_after_failure();
                    if Instant::now() + delay >= deadline {
                        return Err(error);
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Reports that a session stopped working; the next `connect` makes a new one, on another
    /// node first (drawn at random among the others).
    pub fn lost(&mut self, reason: impl std::fmt::Display) {
        self.next_node = another_node(self.next_node, self.nodes.len());
        let reason = match Error::broker(reason) {
            Error::Broker(text) => text,
            other => other.to_string(),
        };
        self.outage.failed(format_args!(
            "lost the connection: {}",
            without_name(&reason)
        ));
    }

    fn connected(&mut self, session: BrokerSession) -> BrokerSession {
        self.backoff.reset();
        self.failures = 0;
        let node = self.next_node().clone();
        // The end of an outage is logged by the outage; a first connection, and each node
        // taken over from another, are worth a line too.
        if self.outage.recovered() == Transition::StillUp || self.nodes.len() > 1 {
            log::info!(
                "connected to RabbitMQ at {node} (queue {})",
                self.topology.queue()
            );
        }
        session
    }

    fn failed(&mut self, error: &Error) {
        self.failures += 1;
        self.next_node = (self.next_node + 1) % self.nodes.len();
        self.outage.failed(without_name(&error.to_string()));
    }

    async fn open(&self, node: &SecretUrl) -> Result<BrokerSession, Error> {
        let url = with_session_defaults(node.expose());
        let properties =
            ConnectionProperties::default().with_connection_name(self.name.as_str().into());
        let connection = Connection::connect(&url, properties)
            .await
            .map_err(|error| Error::broker(format!("cannot connect to {node}: {error}")))?;
        // Listening from the start: RabbitMQ sends `connection.blocked` at any time after.
        let flow = watch_flow(&connection);
        let setup = async {
            let channel = connection.create_channel().await?;
            if self.confirms {
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await?;
            }
            self.topology.declare(&channel).await?;
            Ok::<_, lapin::Error>(channel)
        };
        match setup.await {
            Ok(channel) => Ok(BrokerSession {
                connection,
                channel,
                flow,
            }),
            Err(error) => {
                let _ = tokio::time::timeout(
                    BROKER_CALL_TIMEOUT,
                    connection.close(200, "setup failed".into()),
                )
                .await;
                let explained = format!("{} (on {node})", self.topology.explain(&error));
                if Topology::is_mismatch(&error) {
                    Err(Error::Config(explained))
                } else {
                    Err(Error::broker(explained))
                }
            }
        }
    }
}

/// A reason without the `RabbitMQ: ` our broker errors start with: the outage names RabbitMQ
/// already.
fn without_name(reason: &str) -> &str {
    reason.trim_start_matches("RabbitMQ: ")
}

/// Adds `heartbeat=` and `frame_max=` to an AMQP URL that does not set them.
fn with_session_defaults(url: &str) -> String {
    let mut url = url.to_owned();
    for (key, value) in [
        ("heartbeat", DEFAULT_HEARTBEAT_SECS.to_string()),
        ("frame_max", DEFAULT_FRAME_MAX.to_string()),
    ] {
        if !url.contains(&format!("{key}=")) {
            let separator = if url.contains('?') { '&' } else { '?' };
            url = format!("{url}{separator}{key}={value}");
        }
    }
    url
}

/// A node of `count` other than `current`, drawn at random (`current` itself when it is the only
/// one).
fn another_node(current: usize, count: usize) -> usize {
    if count < 2 {
        return 0;
    }
    (current + 1 + rand::rng().random_range(0..count - 1)) % count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_lost_session_any_other_node_may_come_next_and_never_the_same() {
        let drawn: std::collections::BTreeSet<usize> =
            (0..200).map(|_| another_node(1, 3)).collect();

        assert_eq!(drawn, [0, 2].into(), "both others, never node 1 again");
        assert_eq!(another_node(0, 2), 1);
        assert_eq!(another_node(1, 2), 0);
        assert_eq!(another_node(0, 1), 0);
    }

    #[test]
    fn session_defaults_are_added_once() {
        assert_eq!(
            with_session_defaults("amqp://h:5672/%2f"),
            "amqp://h:5672/%2f?heartbeat=10&frame_max=16384"
        );
        assert_eq!(
            with_session_defaults("amqp://h/%2f?frame_max=8192"),
            "amqp://h/%2f?frame_max=8192&heartbeat=10"
        );
        assert_eq!(
            with_session_defaults("amqp://h/%2f?heartbeat=30"),
            "amqp://h/%2f?heartbeat=30&frame_max=16384"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let delays: Vec<Duration> = (0..5).map(|_| backoff.next_delay()).collect();
        let bounds = [100, 200, 400, 400, 400];
        for (delay, bound) in delays.iter().zip(bounds) {
            let bound = Duration::from_millis(bound);
            assert!(
                *delay >= bound.mul_f64(0.8) && *delay <= bound.mul_f64(1.2),
                "{delays:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(120));
    }
}

//! A work queue of the test's own on the shared RabbitMQ, and the ways tests put messages in it
//! and take them out.

use std::time::Duration;

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, BasicRejectOptions, ConfirmSelectOptions,
    QueueDeleteOptions,
};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use uuid::Uuid;

use crate::amqp::dead_letter_queue::{DeadLetter, REASON_HEADER, queue_depth};
use crate::amqp::dead_lettering::header_text;
use crate::amqp::{Broker, Outgoing, PublishOptions, Publisher, Reconnect, Topology};
use crate::config::{AmqpConfig, AmqpNodes, DEFAULT_AMQP_URL, QueueType, SecretUrl};
use crate::demand::WorkDemand;
use crate::testkit::wait::{at_least, eventually};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest the deletion of a test's queues may take: a test never hangs in its cleanup.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(15);

/// The broker the tests use: `AMQP_URL`, else the default.
pub fn amqp_url() -> SecretUrl {
    let _ = crate::config::load_dotenv();
    let text = std::env::var("AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned());
    text.parse()
        .unwrap_or_else(|error| panic!("AMQP_URL is not usable: {error}"))
}

/// A uniquely named work queue and dead-letter queue, deleted on drop.
#[derive(Debug)]
pub struct TestQueue {
    topology: Topology,
    /// The broker's node, or a cluster's nodes, tried in turn.
    nodes: AmqpNodes,
}

/// A message taken from a queue, as it came.
#[derive(Debug, Clone)]
pub struct Taken {
    pub body: Vec<u8>,
    pub properties: BasicProperties,
}

impl Taken {
    /// Its `message_id`, when it has one.
    pub fn message_id(&self) -> Option<String> {
        self.properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned())
    }

    /// Its `message_id` as the UUID pp publishes under; panics when it has none or another.
    pub fn id(&self) -> Uuid {
        let text = self.message_id().expect("a message_id");
        Uuid::parse_str(&text).unwrap_or_else(|_| panic!("message_id {text} is not a UUID"))
    }

    /// A header's text.
    pub fn header(&self, name: &str) -> Option<String> {
        header_text(&self.properties, name)
    }

    /// Why the consumer dead-lettered it (`x-pp-reason`).
    pub fn reason(&self) -> Option<String> {
        self.header(REASON_HEADER)
    }

    /// The message as the dashboard reads a dead letter.
    pub fn read(&self) -> DeadLetter {
        DeadLetter::read(&self.body, &self.properties)
    }
}

impl TestQueue {
    /// Names a fresh queue and declares it (with its `.dlq`) on the shared broker. Panics,
    /// naming `make setup`, when RabbitMQ cannot be reached.
    pub async fn create() -> TestQueue {
        TestQueue::create_on(amqp_url()).await
    }

    /// The same on the broker at `url` (a [`super::TestBrokerNode`] of the test's own, say).
    pub async fn create_on(url: SecretUrl) -> TestQueue {
        TestQueue::create_typed(url, QueueType::Classic).await
    }

    /// A fresh quorum queue (and quorum dead-letter queue) on the shared broker.
    pub async fn create_quorum() -> TestQueue {
        TestQueue::create_typed(amqp_url(), QueueType::Quorum).await
    }

    /// A fresh quorum queue on a cluster of the test's own ([`super::TestCluster`]): reached
    /// through any of its `nodes`, as pp's processes reach it.
    pub async fn create_quorum_on(nodes: AmqpNodes) -> TestQueue {
        TestQueue::create_on_nodes(nodes, QueueType::Quorum).await
    }

    async fn create_typed(url: SecretUrl, queue_type: QueueType) -> TestQueue {
        TestQueue::create_on_nodes(AmqpNodes::one(url), queue_type).await
    }

    /// A fresh queue of `queue_type` (with its dead-letter queue) reached through any of
    /// `nodes`.
    pub async fn create_on_nodes(nodes: AmqpNodes, queue_type: QueueType) -> TestQueue {
        let queue = TestQueue {
            topology: Topology::new(super::unique_name(), queue_type),
            nodes,
        };
        let (connection, channel) = queue.open().await;
        queue
            .topology
            .declare(&channel)
            .await
            .unwrap_or_else(|error| panic!("cannot declare {}: {error}", queue.name()));
        let _ = connection.close(200, "declared".into()).await;
        queue
    }

    pub fn name(&self) -> &str {
        self.topology.queue()
    }

    /// The dead-letter queue's name.
    pub fn dlq(&self) -> String {
        self.topology.dead_letter_queue()
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The broker's URL (a cluster's first node's).
    pub fn url(&self) -> &SecretUrl {
        self.nodes.first()
    }

    /// Settings pointing at this queue on the test broker (every node of a cluster).
    pub fn config(&self) -> AmqpConfig {
        AmqpConfig {
            nodes: self.nodes.clone(),
            queue: self.name().to_owned(),
            queue_type: self.topology.queue_type(),
        }
    }

    /// Settings pointing at this queue through another URL (a [`super::TcpProxy`] in front of
    /// the broker, say).
    pub fn config_via(&self, url: SecretUrl) -> AmqpConfig {
        AmqpConfig {
            nodes: AmqpNodes::one(url),
            queue: self.name().to_owned(),
            queue_type: self.topology.queue_type(),
        }
    }

    /// Opens a connection and a channel to the test broker (the first node of a cluster that
    /// answers).
    pub async fn open(&self) -> (Connection, Channel) {
        let mut failures = Vec::new();
        for url in self.nodes.iter() {
            match open_channel(url).await {
                Ok(opened) => return opened,
                Err(error) => failures.push(format!("{url}: {error}")),
            }
        }
        panic!(
            "cannot connect to RabbitMQ ({})\n\
             Is RabbitMQ running? Run `make setup` first (or set AMQP_URL).",
            failures.join("; ")
        )
    }

    /// Publishes `demands` under fresh ids, the way the producer does, every one confirmed;
    /// returns the ids.
    pub async fn publish_demands(&self, demands: &[WorkDemand]) -> Vec<Uuid> {
        let messages: Vec<Outgoing> = demands.iter().map(Outgoing::demand).collect();
        let ids = messages.iter().map(|message| message.id).collect();
        self.publish(messages).await;
        ids
    }

    /// Publishes `messages` (ids and bodies of the test's choosing) the way the producer does,
    /// every one confirmed.
    pub async fn publish(&self, messages: Vec<Outgoing>) {
        let count = messages.len() as u64;
        let broker = Broker::new(self.nodes.clone(), self.topology.clone(), "test");
        let mut publisher = Publisher::new(broker);
        let options = PublishOptions::new(Reconnect::Within(Duration::from_secs(10)));
        let confirmed = publisher
            .publish(messages, &options, |_| {})
            .await
            .expect("every message is confirmed");
        publisher.close().await;
        assert_eq!(confirmed, count);
    }

    /// Publishes raw bytes to the work queue with these properties, waiting for the broker to
    /// have them (for messages a real producer would never send).
    pub async fn publish_raw(&self, body: &[u8], properties: BasicProperties) {
        let (connection, channel) = self.open().await;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        let confirm = channel
            .basic_publish(
                "".into(),
                self.name().into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack(), "the broker refused the message");
        let _ = connection.close(200, "published".into()).await;
    }

    /// Puts a message in the dead-letter queue the way RabbitMQ puts a rejected one there:
    /// published to the work queue, taken, and rejected without requeue (so it carries `x-death`).
    /// Returns once the dead-letter queue holds one more message; nothing may consume the work
    /// queue meanwhile.
    pub async fn dead_letter(&self, body: &[u8], properties: BasicProperties) {
        let dlq = self.dlq();
        let before = self.ready_count(&dlq).await;
        self.publish_raw(body, properties).await;
        let (connection, channel) = self.open().await;
        let taken = channel
            .basic_get(self.name().into(), BasicGetOptions { no_ack: false })
            .await
            .expect("get")
            .expect("the message just published");
        taken
            .delivery
            .acker
            .reject(BasicRejectOptions { requeue: false })
            .await
            .expect("reject");
        let _ = connection.close(200, "dead-lettered".into()).await;
        // Dead-lettering is asynchronous in the broker.
        self.eventually_holds(&dlq, before + 1).await;
    }

    /// Messages waiting in `queue` (the work queue or the dead-letter queue), ready for delivery.
    pub async fn ready_count(&self, queue: &str) -> u32 {
        let (connection, channel) = self.open().await;
        let depth = queue_depth(&channel, queue)
            .await
            .unwrap_or_else(|error| panic!("cannot inspect {queue}: {error}"));
        let _ = connection.close(200, "inspected".into()).await;
        depth.messages
    }

    /// Waits until `queue` holds `expected` ready messages; fails at once if it holds more.
    pub async fn eventually_holds(&self, queue: &str, expected: u32) {
        let what = format!("{expected} message(s) in {queue}");
        eventually(&what, async || {
            let ready = self.ready_count(queue).await;
            assert!(
                ready <= expected,
                "{ready} messages in {queue}, not {expected}"
            );
            at_least(ready, expected)
        })
        .await;
    }

    /// Takes every message `queue` holds now (acknowledged as taken: they are gone).
    pub async fn take_all(&self, queue: &str) -> Vec<Taken> {
        let (connection, channel) = self.open().await;
        let mut taken = Vec::new();
        while let Some(message) = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap_or_else(|error| panic!("cannot read {queue}: {error}"))
        {
            taken.push(Taken {
                body: message.delivery.data.clone(),
                properties: message.delivery.properties.clone(),
            });
        }
        let _ = connection.close(200, "taken".into()).await;
        taken
    }

    /// Takes every message of the dead-letter queue.
    pub async fn take_dead_letters(&self) -> Vec<Taken> {
        self.take_all(&self.dlq()).await
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        let nodes = self.nodes.clone();
        let queues = [self.topology.queue().to_owned(), self.dlq()];
        // Drop cannot await, and may run inside a runtime: delete from a thread of its own.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            // The timer is made inside the runtime: it needs one.
            runtime
                .block_on(async {
                    tokio::time::timeout(CLEANUP_TIMEOUT, delete_queues(nodes, queues)).await
                })
                .map_err(|_| format!("RabbitMQ did not answer within {CLEANUP_TIMEOUT:?}"))?
        })
        .join();
        match deleted {
            Ok(Ok(())) => {}
            Ok(Err(error)) => left_behind(&format!("test queue {}: {error}", self.name())),
            Err(_) => left_behind(&format!(
                "test queue {}: its deletion panicked",
                self.name()
            )),
        }
    }
}

/// A test's queue could not be deleted: the test fails (a passing test's warnings are never
/// seen), unless it is failing already.
fn left_behind(what: &str) {
    if std::thread::panicking() {
        eprintln!("warning: left behind {what}");
    } else {
        panic!("left behind {what}");
    }
}

/// A connection and a channel to `url`, within [`CONNECT_TIMEOUT`].
async fn open_channel(url: &SecretUrl) -> Result<(Connection, Channel), String> {
    let attempt = async {
        let connection = Connection::connect(url.expose(), ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        Ok::<_, lapin::Error>((connection, channel))
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(opened)) => Ok(opened),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// Deletes `queues` through the first of `nodes` that answers.
async fn delete_queues(nodes: AmqpNodes, queues: [String; 2]) -> Result<(), String> {
    let mut failures = Vec::new();
    let mut opened = None;
    for url in nodes.iter() {
        match open_channel(url).await {
            Ok(pair) => {
                opened = Some(pair);
                break;
            }
            Err(error) => failures.push(format!("{url}: {error}")),
        }
    }
    let Some((connection, channel)) = opened else {
        return Err(failures.join("; "));
    };
    for queue in queues {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .map_err(|error| error.to_string())?;
    }
    let _ = connection.close(200, "cleaned up".into()).await;
    Ok(())
}

//! The dead-letter queue, for people: how deep the queues are, what the dead letters say, and
//! sending one (or all) back to the work queue or discarding it. The dashboard's broker page runs
//! on these.
//!
//! Everything is plain AMQP 0-9-1, so it needs no management plugin:
//!
//! - depths and consumers come from a passive `queue.declare`, which changes nothing;
//! - browsing takes messages with `basic.get` without acknowledging them, then closes its
//!   channel: RabbitMQ hands every unacknowledged message back to its queue, and a classic queue
//!   puts a returned message back in its original place, so a browse neither loses nor reorders
//!   anything (a quorum queue keeps them too, but may put returned messages at its back);
//! - acting on one message walks the queue the same way up to it, acts on it alone, and lets the
//!   others return;
//! - a retry publishes the body with the same properties (the `message_id` too, so the
//!   consumer's deduplication still holds) to the work queue, waits for the broker's confirm and
//!   only then acknowledges the dead letter: a failure in between leaves it in both queues, never
//!   in neither, and the consumer records it once.
//!
//! A message is named by its `message_id`; one without (a foreign producer's) by a hash of its
//! body and properties, which stays the same however often it is browsed.

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use serde::{Deserialize, Serialize};

use crate::amqp::Topology;
use crate::error::Error;

/// Bytes of a body shown; a longer body is cut (and says so).
pub const BODY_SHOWN_BYTES: usize = 4_096;

/// The header the consumer sets, when it rejects a message, to the text of why.
pub const REASON_HEADER: &str = "x-pp-reason";

/// A queue's depth as the broker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueDepth {
    #[cfg_attr(feature = "openapi", schema(example = "pp_work_queue"))]
    pub name: String,
    /// Messages ready for delivery (not those delivered and not yet acknowledged).
    pub messages: u32,
    /// Consumers attached.
    pub consumers: u32,
}

/// The depth of `queue`, by a passive declare (an error, and a closed channel, if the queue does
/// not exist).
pub async fn queue_depth(channel: &Channel, queue: &str) -> Result<QueueDepth, lapin::Error> {
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(QueueDepth {
        name: queue.to_owned(),
        messages: declared.message_count(),
        consumers: declared.consumer_count(),
    })
}

/// One dead-lettering of a message, from its `x-death` header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Death {
    /// `rejected`, `expired`, `maxlen` or `delivery_limit`.
    #[cfg_attr(feature = "openapi", schema(example = "rejected"))]
    pub reason: String,
    /// The queue it was dead-lettered from.
    pub queue: String,
    /// How many times, from that queue for that reason.
    pub count: i64,
    /// When it last was (epoch seconds).
    pub time: Option<i64>,
}

/// A message of the dead-letter queue, as a person reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLetter {
    /// What actions name it by: its `message_id`, or `~` and a hash of its content when it has
    /// none.
    pub key: String,
    pub message_id: Option<String>,
    /// The body as text (invalid UTF-8 replaced), at most 4,096 bytes of it.
    #[cfg_attr(
        feature = "openapi",
        schema(example = "{\"add_up_to\": -1, \"done\": false}")
    )]
    pub body: String,
    /// The body's whole length in bytes.
    pub body_bytes: usize,
    /// True when `body` shows only the start of it.
    pub body_truncated: bool,
    pub content_type: Option<String>,
    /// When it was first published (its `timestamp` property, epoch seconds).
    pub published_at: Option<i64>,
    /// Why the consumer rejected it (its `x-pp-reason` header), when it says.
    pub reason: Option<String>,
    /// Its dead-letterings (`x-death`), the latest first.
    pub deaths: Vec<Death>,
}

impl DeadLetter {
    /// Reads a message taken from the dead-letter queue.
    pub fn read(body: &[u8], properties: &BasicProperties) -> DeadLetter {
        let message_id = properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned())
            .filter(|id| !id.is_empty());
        let headers = properties.headers().as_ref();
        let shown = &body[..body.len().min(BODY_SHOWN_BYTES)];
        DeadLetter {
            key: message_id
                .clone()
                .unwrap_or_else(|| format!("~{:016x}", content_hash(body, properties))),
            message_id,
            body: String::from_utf8_lossy(shown).into_owned(),
            body_bytes: body.len(),
            body_truncated: shown.len() < body.len(),
            content_type: properties
                .content_type()
                .as_ref()
                .map(|kind| kind.as_str().to_owned()),
            published_at: properties
                .timestamp()
                .and_then(|seconds| i64::try_from(seconds).ok()),
            reason: headers
                .and_then(|headers| headers.inner().get(REASON_HEADER))
                .and_then(text_of),
            deaths: headers
                .and_then(|headers| headers.inner().get("x-death"))
                .map(deaths_of)
                .unwrap_or_default(),
        }
    }
}

/// FNV-1a over the body and the properties (headers included): the same message always gives
/// the same value, and a redelivery changes neither.
fn content_hash(body: &[u8], properties: &BasicProperties) -> u64 {
    let properties = format!("{properties:?}");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in body.iter().chain(properties.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A header's value as text, when it is a string.
pub(crate) fn text_of(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
        _ => None,
    }
}

fn integer_of(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

fn deaths_of(value: &AMQPValue) -> Vec<Death> {
    let AMQPValue::FieldArray(entries) = value else {
        return Vec::new();
    };
    entries
        .as_slice()
        .iter()
        .filter_map(|entry| match entry {
            AMQPValue::FieldTable(table) => Some(table.inner()),
            _ => None,
        })
        .map(|table| Death {
            reason: table.get("reason").and_then(text_of).unwrap_or_default(),
            queue: table.get("queue").and_then(text_of).unwrap_or_default(),
            count: table.get("count").and_then(integer_of).unwrap_or(1),
            time: table.get("time").and_then(integer_of),
        })
        .collect()
}

/// Dead letters from the head of the queue, and how many the queue held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLetterPage {
    /// The first messages of the queue, in its order.
    pub letters: Vec<DeadLetter>,
    /// Messages in the queue when the browse began (more than `letters` when it stopped at its
    /// limit).
    pub total: u32,
}

/// The first `limit` messages of `queue`, in order, every one left in its place.
pub async fn browse(
    connection: &Connection,
    queue: &str,
    limit: usize,
) -> Result<DeadLetterPage, Error> {
    let channel = connection.create_channel().await.map_err(Error::broker)?;
    let taken = async {
        let mut letters = Vec::new();
        let mut total = 0;
        while letters.len() < limit {
            let Some(message) = get(&channel, queue).await? else {
                break;
            };
            if letters.is_empty() {
                total = message.message_count.saturating_add(1);
            }
            letters.push(DeadLetter::read(
                &message.delivery.data,
                &message.delivery.properties,
            ));
        }
        Ok(DeadLetterPage { letters, total })
    }
    .await;
    // Closing the channel hands back, in place, every message it took.
    release(channel, "browsed").await;
    taken
}

/// What to do with a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterAction {
    /// Publish it to the work queue again (confirmed), then remove it.
    Retry,
    /// Remove it.
    Discard,
}

/// What [`settle`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Retried,
    Discarded,
    /// No message of the queue has this key (someone else acted on it, or it never was).
    NotFound,
}

/// Finds the dead letter named `key` in `topology`'s dead-letter queue and retries or discards
/// it; every other message stays where it was. Looks at no more messages than the queue held
/// when it began.
pub async fn settle(
    connection: &Connection,
    topology: &Topology,
    key: &str,
    action: DeadLetterAction,
) -> Result<Settled, Error> {
    let queue = topology.dead_letter_queue();
    let channel = connection.create_channel().await.map_err(Error::broker)?;
    let outcome = async {
        let mut left: Option<u32> = None;
        while left != Some(0) {
            let Some(message) = get(&channel, &queue).await? else {
                break;
            };
            left = Some(
                left.unwrap_or(message.message_count.saturating_add(1))
                    .saturating_sub(1),
            );
            let delivery = &message.delivery;
            if DeadLetter::read(&delivery.data, &delivery.properties).key != key {
                continue;
            }
            if action == DeadLetterAction::Retry {
                republish(
                    connection,
                    topology,
                    &[(&delivery.data, &delivery.properties)],
                )
                .await?;
            }
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
                .await
                .map_err(Error::broker)?;
            return Ok(match action {
                DeadLetterAction::Retry => Settled::Retried,
                DeadLetterAction::Discard => Settled::Discarded,
            });
        }
        Ok(Settled::NotFound)
    }
    .await;
    release(channel, "settled").await;
    outcome
}

/// Sends every dead letter (up to `limit`, and no more than the queue held when it began) back to
/// the work queue, in order, each removed only once the broker confirmed its copy. Returns how
/// many were sent back.
pub async fn retry_all(
    connection: &Connection,
    topology: &Topology,
    limit: usize,
) -> Result<usize, Error> {
    let queue = topology.dead_letter_queue();
    let channel = connection.create_channel().await.map_err(Error::broker)?;
    let outcome = async {
        let mut taken = Vec::new();
        let mut left: Option<u32> = None;
        while left != Some(0) && taken.len() < limit {
            let Some(message) = get(&channel, &queue).await? else {
                break;
            };
            left = Some(
                left.unwrap_or(message.message_count.saturating_add(1))
                    .saturating_sub(1),
            );
            taken.push(message.delivery);
        }
        let Some(last) = taken.last() else {
            return Ok(0);
        };
        let messages: Vec<(&[u8], &BasicProperties)> = taken
            .iter()
            .map(|delivery| (delivery.data.as_slice(), &delivery.properties))
            .collect();
        republish(connection, topology, &messages).await?;
        // Every copy is confirmed: remove them all at once.
        channel
            .basic_ack(last.delivery_tag, BasicAckOptions { multiple: true })
            .await
            .map_err(Error::broker)?;
        Ok(taken.len())
    }
    .await;
    release(channel, "retried").await;
    outcome
}

async fn get(
    channel: &Channel,
    queue: &str,
) -> Result<Option<lapin::message::BasicGetMessage>, Error> {
    channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .map_err(Error::broker)
}

/// Publishes copies to the work queue on a confirming channel of their own and returns once the
/// broker confirmed every one; any refusal is an error (and nothing is acknowledged then).
async fn republish(
    connection: &Connection,
    topology: &Topology,
    messages: &[(&[u8], &BasicProperties)],
) -> Result<(), Error> {
    let channel = connection.create_channel().await.map_err(Error::broker)?;
    let published = async {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut confirms = Vec::with_capacity(messages.len());
        for (body, properties) in messages {
            confirms.push(
                channel
                    .basic_publish(
                        "".into(),
                        topology.queue().into(),
                        BasicPublishOptions::default(),
                        body,
                        (*properties).clone(),
                    )
                    .await?,
            );
        }
        let mut refused = 0;
        for confirm in confirms {
            if !confirm.await?.is_ack() {
                refused += 1;
            }
        }
        Ok::<usize, lapin::Error>(refused)
    }
    .await;
    release(channel, "republished").await;
    match published {
        Ok(0) => Ok(()),
        Ok(refused) => Err(Error::broker(format!(
            "the broker refused {refused} of {} copies sent to {}",
            messages.len(),
            topology.queue()
        ))),
        Err(error) => Err(Error::broker(error)),
    }
}

/// Closes a channel, which returns to their queue the messages it took and did not acknowledge.
/// A channel that cannot be closed politely goes with its connection, with the same effect.
async fn release(channel: Channel, why: &str) {
    let closed = tokio::time::timeout(
        crate::amqp::broker::BROKER_CALL_TIMEOUT,
        channel.close(200, why.into()),
    )
    .await;
    if !matches!(closed, Ok(Ok(()))) {
        log::debug!("closing a dead-letter channel ({why}) failed: {closed:?}");
    }
}

#[cfg(test)]
mod tests {
    use lapin::types::{FieldArray, LongString, ShortString};

    use super::*;

    fn death(reason: &str, queue: &str, count: i64, time: u64) -> AMQPValue {
        let mut table = FieldTable::default();
        table.insert("reason".into(), AMQPValue::LongString(reason.into()));
        table.insert("queue".into(), AMQPValue::LongString(queue.into()));
        table.insert("count".into(), AMQPValue::LongLongInt(count));
        table.insert("time".into(), AMQPValue::Timestamp(time));
        AMQPValue::FieldTable(table)
    }

    #[test]
    fn a_dead_letter_shows_its_id_body_reason_and_deaths() {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![death(
                "rejected",
                "pp_work_queue",
                2,
                1_795_000_000,
            )])),
        );
        headers.insert(
            REASON_HEADER.into(),
            AMQPValue::LongString(LongString::from("add_up_to must be zero or more, got -1")),
        );
        let properties = BasicProperties::default()
            .with_message_id(ShortString::from("m-1"))
            .with_content_type("application/json".into())
            .with_timestamp(1_794_999_999)
            .with_headers(headers);

        let letter = DeadLetter::read(br#"{"add_up_to":-1}"#, &properties);

        assert_eq!(letter.key, "m-1");
        assert_eq!(letter.body, r#"{"add_up_to":-1}"#);
        assert!(!letter.body_truncated);
        assert_eq!(
            letter.reason.as_deref(),
            Some("add_up_to must be zero or more, got -1")
        );
        assert_eq!(
            letter.deaths,
            vec![Death {
                reason: "rejected".to_owned(),
                queue: "pp_work_queue".to_owned(),
                count: 2,
                time: Some(1_795_000_000),
            }]
        );
        assert_eq!(letter.published_at, Some(1_794_999_999));
    }

    #[test]
    fn a_message_without_an_id_is_named_by_its_content() {
        let properties = BasicProperties::default();

        let first = DeadLetter::read(b"not json", &properties);
        let again = DeadLetter::read(b"not json", &properties);
        let other = DeadLetter::read(b"not json either", &properties);

        assert!(first.key.starts_with('~'), "{}", first.key);
        assert_eq!(first.key, again.key);
        assert_ne!(first.key, other.key);
    }

    #[test]
    fn long_and_binary_bodies_are_shown_cut_and_readable() {
        let mut body = vec![b'a'; BODY_SHOWN_BYTES + 10];
        body[0] = 0xff;

        let letter = DeadLetter::read(&body, &BasicProperties::default());

        assert!(letter.body_truncated);
        assert_eq!(letter.body_bytes, BODY_SHOWN_BYTES + 10);
        assert!(letter.body.starts_with('\u{FFFD}'));
    }
}

//! Dead letters that say why: a message that can never succeed is published to `<queue>.dlq`
//! as it came (body, properties, `message_id`), with headers naming the reason, the queue it was
//! taken from and when, and only once the broker confirmed that copy is the original acked.
//!
//! A bare `basic.reject` would let RabbitMQ move the message itself (with its `x-death` header),
//! but a reject carries no reason, and an operator reading the dead-letter queue needs one. The
//! price is one window: a consumer that dies after the copy is confirmed and before the ack
//! leaves the original unacked, the broker delivers it again, and it is dead-lettered a second
//! time. Nothing is lost, and a duplicate dead letter (same `message_id`) is the worst case.
//!
//! - [`REASON_HEADER`] (`x-pp-reason`): the reason, one line, at most [`MAX_REASON_LEN`] bytes.
//! - [`DEAD_LETTERED_AT_HEADER`] (`x-pp-dead-lettered-at`): when, RFC 3339 in UTC.
//! - [`QUEUE_HEADER`] (`x-pp-queue`): the queue the message was taken from.

use chrono::{DateTime, SecondsFormat, Utc};
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation};

use crate::amqp::broker::BROKER_CALL_TIMEOUT;
use crate::error::{Error, redact_secrets};

/// Header carrying why the message was dead-lettered (the dashboard reads it, see
/// [`crate::amqp::dead_letter_queue`]).
pub use crate::amqp::dead_letter_queue::REASON_HEADER;
/// Header carrying when the message was dead-lettered (RFC 3339, UTC).
pub const DEAD_LETTERED_AT_HEADER: &str = "x-pp-dead-lettered-at";
/// Header carrying the queue the message was taken from.
pub const QUEUE_HEADER: &str = "x-pp-queue";
/// Longest reason kept in the header, in bytes: a database error can be long, a header is read
/// in a table cell.
pub const MAX_REASON_LEN: usize = 500;

/// The reason as the header carries it: one line, no secret, at most [`MAX_REASON_LEN`] bytes
/// (cut at a character boundary, with `…`).
pub fn reason_line(reason: &str) -> String {
    let line = redact_secrets(reason)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if line.len() <= MAX_REASON_LEN {
        return line;
    }
    let ellipsis = '…';
    let mut end = MAX_REASON_LEN - ellipsis.len_utf8();
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &line[..end])
}

/// The properties of the dead letter: the original's, its headers kept, and the three of this
/// module added (replacing those of an earlier dead-lettering, if the message had one).
pub fn dead_letter_properties(
    original: &BasicProperties,
    reason: &str,
    queue: &str,
    at: DateTime<Utc>,
) -> BasicProperties {
    let mut headers = original.headers().clone().unwrap_or_default();
    let text = |value: String| AMQPValue::LongString(value.as_str().into());
    headers.insert(REASON_HEADER.into(), text(reason_line(reason)));
    headers.insert(
        DEAD_LETTERED_AT_HEADER.into(),
        text(at.to_rfc3339_opts(SecondsFormat::Millis, true)),
    );
    headers.insert(QUEUE_HEADER.into(), text(queue.to_owned()));
    original.clone().with_headers(headers)
}

/// The text of a header, if the message has it and it is a string.
pub fn header_text(properties: &BasicProperties, name: &str) -> Option<String> {
    let headers: &FieldTable = properties.headers().as_ref()?;
    headers
        .inner()
        .get(name)
        .and_then(super::dead_letter_queue::text_of)
}

/// What the broker did with a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterPublished {
    /// Confirmed in the dead-letter queue: the original may be acked.
    Confirmed,
    /// The broker refused it (a nack, or no queue to route it to): the original must be
    /// dead-lettered some other way.
    Refused,
}

/// Publishes the dead letter of a message (its body and these properties, see
/// [`dead_letter_properties`]) to `dead_letter_queue` on `channel`, which must be in confirm
/// mode, and waits at most [`BROKER_CALL_TIMEOUT`] for the broker's confirm. An error means the
/// channel failed or the broker did not answer: the original must stay unacked (the broker
/// delivers it again).
pub async fn publish_dead_letter(
    channel: &Channel,
    dead_letter_queue: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<DeadLetterPublished, Error> {
    publish_copy(channel, dead_letter_queue, body, properties).await
}

/// Publishes a copy of a message (`body`, `properties`) to `queue` on `channel`, in confirm
/// mode, and waits at most [`BROKER_CALL_TIMEOUT`] for the broker's confirm: a dead letter to
/// the dead-letter queue, or a demand handed back to the work queue as a new message.
pub async fn publish_copy(
    channel: &Channel,
    queue: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<DeadLetterPublished, Error> {
    let published = async {
        channel
            .basic_publish(
                "".into(),
                queue.into(),
                // Mandatory: a missing queue comes back as a return instead of vanishing.
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await?
            .await
    };
    match tokio::time::timeout(BROKER_CALL_TIMEOUT, published).await {
        Ok(Ok(Confirmation::Ack(None))) => Ok(DeadLetterPublished::Confirmed),
        Ok(Ok(Confirmation::Ack(Some(_)) | Confirmation::Nack(_))) => {
            Ok(DeadLetterPublished::Refused)
        }
        Ok(Ok(Confirmation::NotRequested)) => Err(Error::broker(
            "the channel is not in confirm mode: a dead letter cannot be confirmed",
        )),
        Ok(Err(error)) => Err(Error::broker(error)),
        Err(_) => Err(Error::broker(format!(
            "no confirm of the copy within {BROKER_CALL_TIMEOUT:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amqp::demand_properties;

    #[test]
    fn a_dead_letter_keeps_the_originals_properties_and_says_why() {
        let id = uuid::Uuid::new_v4();
        let mut headers = FieldTable::default();
        headers.insert("x-trace".into(), AMQPValue::LongString("abc".into()));
        let original = demand_properties(id).with_headers(headers);
        let at = DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
            .expect("a valid instant")
            .with_timezone(&Utc);

        let letter = dead_letter_properties(&original, "add_up_to must be zero or more", "q", at);

        assert_eq!(letter.message_id(), original.message_id());
        assert_eq!(letter.delivery_mode(), original.delivery_mode());
        assert_eq!(letter.content_type(), original.content_type());
        assert_eq!(letter.timestamp(), original.timestamp());
        assert_eq!(
            header_text(&letter, REASON_HEADER).as_deref(),
            Some("add_up_to must be zero or more")
        );
        assert_eq!(
            header_text(&letter, DEAD_LETTERED_AT_HEADER).as_deref(),
            Some("2026-11-28T10:00:00.000Z")
        );
        assert_eq!(header_text(&letter, QUEUE_HEADER).as_deref(), Some("q"));
        assert_eq!(
            header_text(&letter, "x-trace").as_deref(),
            Some("abc"),
            "the original's headers are kept"
        );
    }

    #[test]
    fn reasons_are_one_short_line_without_secrets() {
        let cases = [
            ("plain", "plain".to_owned()),
            ("two\n  lines\tand tabs", "two lines and tabs".to_owned()),
            (
                "cannot reach postgres://pp:s3cret@db/pp",
                "cannot reach postgres://pp:***@db/pp".to_owned(),
            ),
        ];
        for (reason, expected) in cases {
            assert_eq!(reason_line(reason), expected, "{reason:?}");
        }
        let long = "é".repeat(MAX_REASON_LEN);
        let cut = reason_line(&long);
        assert!(cut.len() <= MAX_REASON_LEN, "{} bytes", cut.len());
        assert!(cut.ends_with('…'), "{cut}");
    }
}

//! The queues, declared the same way by every process that touches them.
//!
//! - `<queue>` (`pp_work_queue` by default): durable, carries the work demands. A message the
//!   consumer rejects without requeue is dead-lettered, through the default exchange, to
//! - `<queue>.dlq`: durable, holds the messages that can never succeed, for an operator to read.
//!
//! Both are classic queues by default, quorum queues when configured (for clusters: replicated
//! by Raft on every node, a publish confirmed once a majority has it). A quorum work queue also
//! has the broker count each message's deliveries: one handed back [`DELIVERY_LIMIT`] times
//! (a consumer that dies on it, again and again, before it can judge it) is dead-lettered by the
//! broker itself, behind the consumer's own poison handling. And it dead-letters at least once
//! (`x-dead-letter-strategy`, RabbitMQ 3.10+): a dead letter leaves the work queue only once the
//! dead-letter queue has confirmed it, which asks `x-overflow=reject-publish` (a full queue
//! refuses publishes, never drops its head).
//!
//! Declaring is idempotent, so the producer, the consumer and the API's outbox relay all declare
//! on every (re)connection and whichever starts first creates them. RabbitMQ cannot change a
//! queue's type or arguments: a queue that exists otherwise is refused (406), and the error says
//! how to move (README: "Moving to quorum queues").

use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};

use crate::config::{AmqpConfig, QueueType};

/// Suffix of the dead-letter queue's name.
pub const DEAD_LETTER_SUFFIX: &str = ".dlq";

/// Deliveries of one message a quorum work queue allows before it dead-letters it.
pub const DELIVERY_LIMIT: i64 = 20;

/// The work queue and its dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    queue: String,
    queue_type: QueueType,
}

impl Topology {
    pub fn new(queue: impl Into<String>, queue_type: QueueType) -> Self {
        Topology {
            queue: queue.into(),
            queue_type,
        }
    }

    pub fn from_config(config: &AmqpConfig) -> Self {
        Topology::new(config.queue.clone(), config.queue_type)
    }

    /// Classic or quorum.
    pub fn queue_type(&self) -> QueueType {
        self.queue_type
    }

    /// Name of the work queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Name of the dead-letter queue: the work queue's name and `.dlq`.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}{DEAD_LETTER_SUFFIX}", self.queue)
    }

    /// Declares the dead-letter queue, then the work queue pointing at it.
    ///
    /// A queue that exists with other arguments (declared by an older version without
    /// dead-lettering, say) makes the broker refuse with PRECONDITION_FAILED and close the
    /// channel; the error says so, and the operator deletes or renames the old queue.
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let mut dead_letter_arguments = FieldTable::default();
        self.add_type(&mut dead_letter_arguments);
        channel
            .queue_declare(
                self.dead_letter_queue().as_str().into(),
                QueueDeclareOptions::durable(),
                dead_letter_arguments,
            )
            .await?;
        let mut arguments = FieldTable::default();
        self.add_type(&mut arguments);
        // The default exchange routes by queue name: a rejected message goes to `<queue>.dlq`.
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(self.dead_letter_queue().as_str().into()),
        );
        if self.queue_type == QueueType::Quorum {
            arguments.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(DELIVERY_LIMIT),
            );
            arguments.insert(
                "x-dead-letter-strategy".into(),
                AMQPValue::LongString("at-least-once".into()),
            );
            arguments.insert(
                "x-overflow".into(),
                AMQPValue::LongString("reject-publish".into()),
            );
        }
        channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions::durable(),
                arguments,
            )
            .await?;
        Ok(())
    }

    /// Whether declaring failed because a queue exists with another type or other arguments
    /// (RabbitMQ's 406 PRECONDITION_FAILED): a configuration error, which no retry mends.
    pub fn is_mismatch(error: &lapin::Error) -> bool {
        let text = error.to_string();
        text.contains("PRECONDITION_FAILED") || text.contains("PRECONDITION-FAILED")
    }

    /// What to say when declaring failed with `error`: a queue that exists with another type or
    /// other arguments is named, with the way out.
    pub fn explain(&self, error: &lapin::Error) -> String {
        let text = error.to_string();
        if Topology::is_mismatch(error) {
            let wanted = match self.queue_type {
                QueueType::Classic => "classic",
                QueueType::Quorum => "quorum",
            };
            format!(
                "queue {} (or {}) exists with another type or other arguments than a {wanted} \
                 queue of this version of pp, and RabbitMQ cannot change a queue: drain it and \
                 delete it, or give PP_QUEUE a new name (README: \"Moving to quorum queues\"); \
                 RabbitMQ said: {text}",
                self.queue,
                self.dead_letter_queue()
            )
        } else {
            format!("cannot set up queue {}: {text}", self.queue)
        }
    }

    fn add_type(&self, arguments: &mut FieldTable) {
        let queue_type = match self.queue_type {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        };
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(queue_type.into()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_declare_names_the_queue_and_the_way_out() {
        let topology = Topology::new("pp_work_queue", QueueType::Quorum);
        let refused = lapin::Error::from(lapin::ErrorKind::InvalidChannelState(
            lapin::ChannelState::Error,
            "declaring",
        ));
        assert!(
            topology
                .explain(&refused)
                .starts_with("cannot set up queue pp_work_queue")
        );
    }

    #[test]
    fn the_dead_letter_queue_is_named_after_the_queue() {
        let topology = Topology::new("pp_work_queue", QueueType::Classic);
        assert_eq!(topology.queue(), "pp_work_queue");
        assert_eq!(topology.dead_letter_queue(), "pp_work_queue.dlq");
    }
}

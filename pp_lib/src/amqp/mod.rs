//! RabbitMQ, shared by the producer, the consumer and the API's outbox relay (feature `amqp`).
//!
//! - [`topology`]: the work queue and its dead-letter queue, declared identically everywhere.
//! - [`broker`]: the connection supervisor (connect, channel, confirms, declare; backoff and
//!   heartbeats; one log line per outage).
//! - [`publish`]: publishing with publisher confirms, a window of messages in flight, and
//!   republishing whatever a lost connection left unconfirmed.
//! - [`dead_letter_queue`]: the dead-letter queue for people: depths, browsing in place, retrying or
//!   discarding one message or all.
//! - [`message`]: the properties of a demand message and the id a delivery is recorded under.
//! - [`dead_lettering`]: how the consumer dead-letters a message that can never succeed: copied to
//!   `<queue>.dlq` with the reason in its headers (`x-pp-reason`), then acked.
//!
//! The guarantee they build: a message counts as published only once the broker confirmed it;
//! anything unconfirmed is published again (same `message_id`), and the consumer's deduplication
//! on `message_id` turns that at-least-once delivery into exactly-once effects.

pub mod broker;
pub mod dead_letter_queue;
pub mod dead_lettering;
pub mod message;
pub mod publish;
pub mod topology;

pub use broker::{Backoff, Broker, BrokerSession, Flow, FlowWatch};
pub use message::{DemandId, demand_properties};
pub use publish::{Outgoing, PublishError, PublishOptions, Publisher, Reconnect};
pub use topology::Topology;

//! task_producer: publishes pp work demands to RabbitMQ, on a schedule or all at once. Every
//! message is the original project's body, persistent, with a UUID `message_id`, and counts only
//! once the broker confirmed it.
//!
//! - [`settings`]: the command line: `run` ([`settings::ScheduleSettings`]) and `burst`
//!   ([`settings::BurstSettings`]).
//! - [`schedule`]: the original's schedule, a few demands every few seconds until shutdown,
//!   riding out broker outages.
//! - [`burst`]: a given number of demands as fast as allowed, with progress and a report.

pub mod burst;
pub mod schedule;
pub mod settings;

use pp_lib::amqp::{Broker, Topology};
use pp_lib::config::AmqpConfig;
use pp_lib::demand::WorkDemand;

/// The supervised broker connection the producer publishes through.
pub fn broker(amqp: &AmqpConfig) -> Broker {
    Broker::new(
        amqp.nodes.clone(),
        Topology::from_config(amqp),
        "task_producer",
    )
}

/// A demand for `add_up_to`, or a random one (as the original) when none is given.
pub fn demand(add_up_to: Option<i32>) -> WorkDemand {
    add_up_to
        .and_then(|n| WorkDemand::new(n).ok())
        .unwrap_or_else(WorkDemand::random)
}

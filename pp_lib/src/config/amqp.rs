//! RabbitMQ: where it is, and which queue carries the work demands.

use crate::config::SecretUrl;

/// The broker every binary uses unless told otherwise: the local one `make setup` starts.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The work queue's name unless told otherwise.
pub const DEFAULT_QUEUE: &str = "pp_work_queue";

/// Type of the work queue: classic on one node, quorum for a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueType {
    Classic,
    Quorum,
}

/// RabbitMQ: where it is and which queue carries the work demands.
#[derive(Debug, Clone, clap::Args)]
pub struct AmqpConfig {
    /// RabbitMQ URL, e.g. amqp://user:password@host:5672/%2f.
    #[arg(
        id = "amqp_url",
        long = "amqp-url",
        env = "AMQP_URL",
        default_value = DEFAULT_AMQP_URL,
        hide_env_values = true
    )]
    pub url: SecretUrl,
    /// Name of the work queue; its dead-letter queue is this name with `.dlq` appended.
    #[arg(long = "queue", env = "PP_QUEUE", default_value = DEFAULT_QUEUE)]
    pub queue: String,
    /// Queue type: classic (one node) or quorum (replicated, for clusters).
    #[arg(long = "queue-type", env = "PP_QUEUE_TYPE", value_enum, default_value_t = QueueType::Classic)]
    pub queue_type: QueueType,
}

//! RabbitMQ: where it is (one node, or the nodes of a cluster), and which queue carries the work
//! demands.

use std::fmt;
use std::str::FromStr;

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

/// Nodes one `AMQP_URL` may list, at most.
pub const MAX_NODES: usize = 32;

/// The RabbitMQ nodes a process may connect to, in the order it tries them: `AMQP_URL`, one URL
/// or several separated by commas (the nodes of a cluster; a comma in a password is written
/// `%2C`). Shown redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpNodes(Vec<SecretUrl>);

impl AmqpNodes {
    /// One node.
    pub fn one(url: SecretUrl) -> Self {
        AmqpNodes(vec![url])
    }

    /// The first node, the one tried first.
    pub fn first(&self) -> &SecretUrl {
        // A list is never empty: FromStr and `one` make at least one.
        &self.0[0]
    }

    /// The node at `index`, counted round the list.
    pub fn at(&self, index: usize) -> &SecretUrl {
        &self.0[index % self.0.len()]
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never: a list holds a node at least.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &SecretUrl> {
        self.0.iter()
    }
}

impl FromStr for AmqpNodes {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut nodes = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err("an AMQP URL in the list is empty (a comma too many?)".to_owned());
            }
            let url: SecretUrl = part.parse()?;
            if !matches!(url.scheme(), "amqp" | "amqps") {
                return Err(format!("`{url}` is not an AMQP URL (amqp:// or amqps://)"));
            }
            nodes.push(url);
        }
        if nodes.len() > MAX_NODES {
            return Err(format!(
                "{} AMQP URLs: at most {MAX_NODES} nodes",
                nodes.len()
            ));
        }
        Ok(AmqpNodes(nodes))
    }
}

impl fmt::Display for AmqpNodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, url) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{url}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for AmqpNodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpNodes({self})")
    }
}

/// RabbitMQ: where it is and which queue carries the work demands.
#[derive(Debug, Clone, clap::Args)]
pub struct AmqpConfig {
    /// RabbitMQ URL, e.g. amqp://user:password@host:5672/%2f; for a cluster, its nodes'
    /// URLs separated by commas, tried in turn.
    #[arg(
        id = "amqp_url",
        long = "amqp-url",
        env = "AMQP_URL",
        default_value = DEFAULT_AMQP_URL,
        hide_env_values = true
    )]
    pub nodes: AmqpNodes,
    /// Name of the work queue; its dead-letter queue is this name with `.dlq` appended.
    #[arg(long = "queue", env = "PP_QUEUE", default_value = DEFAULT_QUEUE)]
    pub queue: String,
    /// Queue type: classic (one node) or quorum (replicated, for clusters).
    #[arg(long = "queue-type", env = "PP_QUEUE_TYPE", value_enum, default_value_t = QueueType::Classic)]
    pub queue_type: QueueType,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_nodes_is_read_in_order_and_shown_redacted() {
        let nodes: AmqpNodes = "amqp://u:secret@a:5672/%2f, amqps://u:secret@b:5671/%2f"
            .parse()
            .expect("two nodes");
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes.first().expose(), "amqp://u:secret@a:5672/%2f");
        assert_eq!(
            nodes.at(3).expose(),
            "amqps://u:secret@b:5671/%2f",
            "round the list"
        );
        assert_eq!(
            nodes.to_string(),
            "amqp://u:***@a:5672/%2f,amqps://u:***@b:5671/%2f"
        );
        assert!(!format!("{nodes:?}").contains("secret"));
    }

    #[test]
    fn a_list_that_names_no_broker_is_refused_without_its_password() {
        for bad in [
            "",
            "amqp://a/%2f,",
            ",amqp://a/%2f",
            "amqp://u:secret@a/%2f,,amqp://b/%2f",
            "postgres://u:secret@db/pp",
            "not a url",
        ] {
            let refused = bad.parse::<AmqpNodes>().expect_err(bad);
            assert!(!refused.contains("secret"), "{bad}: {refused}");
        }
        let many = vec!["amqp://h/%2f"; MAX_NODES + 1].join(",");
        assert!(many.parse::<AmqpNodes>().is_err());
    }
}

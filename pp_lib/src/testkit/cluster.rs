//! A RabbitMQ cluster of the test's own: [`TestBrokerNode`]s started side by side and joined,
//! for the tests that kill a node under a running pipeline. The shared broker is never touched.

use std::thread;
use std::time::Duration;

use super::broker_node::TestBrokerNode;
use crate::config::AmqpNodes;

/// How long the losing side of an autoheal waits, stopped, for the winner's go-ahead before it
/// starts again regardless (60 s in RabbitMQ 3.10). The winner sends it once it has seen every
/// loser stop, and at times it misses a stop (seen: a frozen node, resumed, stopped within 50 ms
/// of the winner's decision): the cluster is whole again only after this wait.
pub const AUTOHEAL_RESTART_WAIT: Duration = Duration::from_secs(60);

/// Nodes joined into one cluster; dropping it stops every node and removes its files.
#[derive(Debug)]
pub struct TestCluster {
    nodes: Vec<TestBrokerNode>,
}

impl TestCluster {
    /// Starts `size` nodes (at once, each on a thread) and joins the others to the first.
    /// Blocks: call it from a blocking thread in async tests ([`TestCluster::start_async`]).
    pub fn start(size: usize) -> TestCluster {
        assert!(size >= 1, "a cluster has a node at least");
        let started: Vec<thread::JoinHandle<TestBrokerNode>> = (0..size)
            .map(|_| thread::spawn(TestBrokerNode::start))
            .collect();
        let nodes: Vec<TestBrokerNode> = started
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect();
        for node in &nodes[1..] {
            node.join(&nodes[0]);
        }
        TestCluster { nodes }
    }

    /// [`TestCluster::start`] on a blocking thread.
    pub async fn start_async(size: usize) -> TestCluster {
        tokio::task::spawn_blocking(move || TestCluster::start(size))
            .await
            .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
    }

    /// Every node's URL, in order: what `AMQP_URL` lists.
    pub fn nodes(&self) -> AmqpNodes {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|node| node.url().expose().to_owned())
            .collect();
        urls.join(",").parse().expect("node URLs are AMQP URLs")
    }

    pub fn node(&self, index: usize) -> &TestBrokerNode {
        &self.nodes[index]
    }

    /// How many nodes it has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never: a cluster has a node at least.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node that holds most of `queue`'s consumers now (`None` when it has none). Every node
    /// must be running and answering.
    pub fn node_with_most_consumers(&self, queue: &str) -> Option<usize> {
        most(self.nodes.iter().map(|node| node.consumers_of(queue)))
    }

    /// The node that holds most client connections now (`None` when none has any). Every node
    /// must be running and answering.
    pub fn node_with_most_connections(&self) -> Option<usize> {
        most(self.nodes.iter().map(TestBrokerNode::connections))
    }

    /// Waits until every node answers and sees every node running: after a node was killed,
    /// frozen or restarted, the cluster is whole again. (A node may still list the partition it
    /// saw: RabbitMQ keeps that record until the node restarts, and the side that won an
    /// autoheal does not restart.) Patient enough for an autoheal whose winner missed the
    /// loser's stop: the loser then waits out [`AUTOHEAL_RESTART_WAIT`] before it starts again.
    pub fn wait_until_whole(&self) {
        let mut all: Vec<String> = self
            .nodes
            .iter()
            .map(|node| node.name().to_owned())
            .collect();
        all.sort();
        for node in &self.nodes {
            crate::testkit::wait::eventually_blocking_within(
                AUTOHEAL_RESTART_WAIT + crate::testkit::wait::PATIENCE,
                &format!("{} to see the whole cluster", node.name()),
                || match node.cluster_view() {
                    Some(view) if view.running == all => Ok(()),
                    other => Err(other),
                },
            );
        }
    }

    /// Restarts every node, one after the other, the way RabbitMQ advises for an upgrade: a node
    /// is stopped only once stopping it leaves each quorum queue a majority of its members
    /// running (the node restarted before it has caught up), and booted again at once.
    pub fn restart_one_after_another(&self) {
        for node in &self.nodes {
            crate::testkit::wait::eventually_blocking(
                &format!("{} to be safe to stop", node.name()),
                || {
                    if node.is_quorum_critical() {
                        Err("a quorum queue would lose its majority")
                    } else {
                        Ok(())
                    }
                },
            );
            node.stop();
            node.boot();
        }
        self.wait_until_whole();
    }

    /// Which node leads the quorum queue `queue`, as a running node other than `except` sees
    /// it (`None` when no running node names a leader).
    pub fn leader_of(&self, queue: &str, except: Option<usize>) -> Option<usize> {
        let (_, asked) = self
            .nodes
            .iter()
            .enumerate()
            .find(|(index, _)| Some(*index) != except)?;
        let listed = asked.ctl(&["list_queues", "-q", "name", "leader"]);
        let text = String::from_utf8_lossy(&listed.stdout);
        let leader = text
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .find(|(name, _)| name.trim() == queue)
            .map(|(_, leader)| leader.trim().to_owned())?;
        self.nodes.iter().position(|node| node.name() == leader)
    }
}

/// The index of the largest count, when it is above zero (the first of equals).
fn most(counts: impl Iterator<Item = usize>) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (index, count) in counts.enumerate() {
        if count > 0 && best.is_none_or(|(_, most)| count > most) {
            best = Some((index, count));
        }
    }
    best.map(|(index, _)| index)
}

#[cfg(test)]
mod tests {
    use super::most;

    #[test]
    fn the_node_with_most_is_the_first_of_the_largest_count_above_zero() {
        assert_eq!(most([0, 0, 0].into_iter()), None, "no node has any");
        assert_eq!(most([0, 3, 1].into_iter()), Some(1));
        assert_eq!(most([2, 2, 1].into_iter()), Some(0), "the first of equals");
        assert_eq!(most(std::iter::empty()), None);
    }
}

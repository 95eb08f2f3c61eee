//! What goes wrong during a chaos run, and when: real SIGKILLs of pp's processes, real restarts
//! of the shared services, or, on a RabbitMQ cluster of the run's own, nodes killed, frozen and
//! restarted; on a schedule given as shares of the run.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pp_lib::testkit::TestCluster;
use pp_lib::testkit::broker_node::NET_TICKTIME_SECONDS;
use tokio::time::Instant;

use crate::processes::{Process, Services};

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    KillConsumerA,
    RestartRabbitMq,
    CrashRestartPostgres,
    KillApi,
    StopRedis,
    KillConsumerB,
    /// SIGKILL the node that leads the work queue, and boot it again.
    KillLeader,
    /// SIGKILL the node that holds most of the queue's consumers, and boot it again.
    KillConsumersNode,
    /// SIGSTOP the node that holds most connections for longer than the cluster's net tick
    /// time (its peers declare it down, its clients' heartbeats time out), then SIGCONT.
    FreezeNode,
    /// Restart each node, one after the other, each once the queue keeps a majority without it.
    RestartEveryNode,
}

/// The shared services' fault run (`make chaos`).
pub const SHARED: &[(f64, Fault)] = &[
    (0.10, Fault::KillConsumerA),
    (0.20, Fault::RestartRabbitMq),
    (0.35, Fault::CrashRestartPostgres),
    (0.50, Fault::KillApi),
    (0.60, Fault::StopRedis),
    (0.75, Fault::KillConsumerB),
];

/// The cluster's (`make cluster-chaos`). A fault that takes longer than its share (a node's
/// boot does) delays the next; the load runs until the last is over.
pub const CLUSTER: &[(f64, Fault)] = &[
    (0.10, Fault::KillLeader),
    (0.30, Fault::KillConsumersNode),
    (0.50, Fault::FreezeNode),
    (0.65, Fault::RestartEveryNode),
];

/// The cluster's short run, what CI runs: the leader killed once.
pub const CLUSTER_SHORT: &[(f64, Fault)] = &[(0.25, Fault::KillLeader)];

/// How long a killed process stays dead, and PostgreSQL stays down, before they come back.
const DEAD_FOR: Duration = Duration::from_secs(1);

/// How long Redis stays away: long enough for the breakers to open.
const REDIS_AWAY_FOR: Duration = Duration::from_secs(5);

/// How long a killed node stays dead before it boots again (a boot itself takes seconds more).
const NODE_DEAD_FOR: Duration = Duration::from_secs(2);

/// How long a node stays frozen: past the net tick time, so that its peers declare it down.
const FROZEN_FOR: Duration = Duration::from_secs(NET_TICKTIME_SECONDS + 5);

impl Fault {
    /// How long after it strikes no progress is expected: a frozen node cannot be told from a
    /// slow one until the cluster declares it down, at the net tick time; every other fault must
    /// be ridden out at once.
    pub fn grace(self) -> Duration {
        match self {
            Fault::FreezeNode => Duration::from_secs(NET_TICKTIME_SECONDS),
            _ => Duration::ZERO,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Fault::KillConsumerA => "consumer A SIGKILLed, restarted 1 s later",
            Fault::RestartRabbitMq => "RabbitMQ restarted",
            Fault::CrashRestartPostgres => "PostgreSQL crash-stopped and restarted",
            Fault::KillApi => "API SIGKILLed, restarted 1 s later",
            Fault::StopRedis => "Redis stopped for 5 s",
            Fault::KillConsumerB => "consumer B SIGKILLed, restarted 1 s later",
            Fault::KillLeader => "the node leading the queue SIGKILLed, booted again",
            Fault::KillConsumersNode => "the node the consumers are on SIGKILLed, booted again",
            Fault::FreezeNode => "the busiest node SIGSTOPped past the net tick time, resumed",
            Fault::RestartEveryNode => "every node restarted, one after the other",
        }
    }
}

/// The broker under fault: the shared services (restarted by their commands), or a cluster of
/// the run's own and the queue on it.
pub enum Broker {
    Shared(Services),
    Cluster {
        cluster: Arc<TestCluster>,
        queue: String,
    },
}

/// pp's processes, and the services, under fault.
pub struct Targets<'a> {
    pub apis: &'a mut [Process],
    pub consumers: &'a mut [Process],
    pub broker: &'a Broker,
}

impl Targets<'_> {
    /// Makes `fault` happen, and undoes it as the schedule says (a process started again, a
    /// service or node brought back); what it did, in words.
    pub async fn strike(&mut self, fault: Fault) -> anyhow::Result<String> {
        match fault {
            Fault::KillConsumerA => restart_killed(&mut self.consumers[0]).await?,
            Fault::KillConsumerB => restart_killed(&mut self.consumers[1]).await?,
            Fault::KillApi => restart_killed(&mut self.apis[0]).await?,
            Fault::RestartRabbitMq | Fault::CrashRestartPostgres | Fault::StopRedis => {
                let Broker::Shared(services) = self.broker else {
                    anyhow::bail!("{} needs the shared services", fault.describe());
                };
                strike_service(fault, services).await?;
            }
            Fault::KillLeader
            | Fault::KillConsumersNode
            | Fault::FreezeNode
            | Fault::RestartEveryNode => {
                let Broker::Cluster { cluster, queue } = self.broker else {
                    anyhow::bail!("{} needs a cluster", fault.describe());
                };
                return strike_node(fault, cluster.clone(), queue.clone()).await;
            }
        }
        Ok(fault.describe().to_owned())
    }
}

/// A fault of a shared service: taken down, and brought back.
async fn strike_service(fault: Fault, services: &Services) -> anyhow::Result<()> {
    match fault {
        Fault::RestartRabbitMq => {
            services.rabbitmq.down().await?;
            services.rabbitmq.up().await
        }
        Fault::CrashRestartPostgres => {
            services.postgres.down().await?;
            tokio::time::sleep(DEAD_FOR).await;
            services.postgres.up().await
        }
        Fault::StopRedis => {
            services.redis.down().await?;
            tokio::time::sleep(REDIS_AWAY_FOR).await;
            services.redis.up().await
        }
        other => anyhow::bail!("{} is not a fault of a service", other.describe()),
    }
}

async fn restart_killed(process: &mut Process) -> anyhow::Result<()> {
    process.kill().await;
    tokio::time::sleep(DEAD_FOR).await;
    process.start()
}

/// A fault of a cluster's node, on a blocking thread (the node's commands block); what it did.
async fn strike_node(
    fault: Fault,
    cluster: Arc<TestCluster>,
    queue: String,
) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let name = |index: usize| format!("node {} of {}", index + 1, cluster.len());
        let done = match fault {
            Fault::KillLeader => {
                let leader = cluster
                    .leader_of(&queue, None)
                    .context("no node leads the queue")?;
                kill_and_boot(&cluster, leader);
                format!(
                    "{} (leading the queue) SIGKILLed, booted again",
                    name(leader)
                )
            }
            Fault::KillConsumersNode => {
                let node = cluster
                    .node_with_most_consumers(&queue)
                    .context("no node holds a consumer of the queue")?;
                let consumers = cluster.node(node).consumers_of(&queue);
                kill_and_boot(&cluster, node);
                format!(
                    "{} (holding {consumers} of the queue's consumers) SIGKILLed, booted again",
                    name(node)
                )
            }
            Fault::FreezeNode => {
                let node = cluster
                    .node_with_most_connections()
                    .context("no node holds a connection")?;
                let connections = cluster.node(node).connections();
                cluster.node(node).pause();
                std::thread::sleep(FROZEN_FOR);
                cluster.node(node).resume();
                cluster.wait_until_whole();
                format!(
                    "{} (holding {connections} connections) SIGSTOPped for {} s, resumed",
                    name(node),
                    FROZEN_FOR.as_secs()
                )
            }
            Fault::RestartEveryNode => {
                cluster.restart_one_after_another();
                format!("all {} nodes restarted, one after the other", cluster.len())
            }
            other => anyhow::bail!("{} is not a fault of a node", other.describe()),
        };
        Ok(format!("{done} ({:.1} s)", started.elapsed().as_secs_f64()))
    })
    .await
    .map_err(|panicked| anyhow::anyhow!("the cluster's fault failed: {panicked}"))?
}

fn kill_and_boot(cluster: &TestCluster, node: usize) {
    cluster.node(node).kill();
    std::thread::sleep(NODE_DEAD_FOR);
    cluster.node(node).boot();
    cluster.wait_until_whole();
}

//! What goes wrong during a chaos run, and when: real SIGKILLs of pp's processes and real
//! restarts of the shared services, on a schedule given as shares of the run.

use std::time::Duration;

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
}

/// When each fault strikes, as a share of the run.
pub const SCHEDULE: [(f64, Fault); 6] = [
    (0.10, Fault::KillConsumerA),
    (0.20, Fault::RestartRabbitMq),
    (0.35, Fault::CrashRestartPostgres),
    (0.50, Fault::KillApi),
    (0.60, Fault::StopRedis),
    (0.75, Fault::KillConsumerB),
];

/// How long a killed process stays dead, and PostgreSQL stays down, before they come back.
const DEAD_FOR: Duration = Duration::from_secs(1);

/// How long Redis stays away: long enough for the breakers to open.
const REDIS_AWAY_FOR: Duration = Duration::from_secs(5);

impl Fault {
    pub fn describe(self) -> &'static str {
        match self {
            Fault::KillConsumerA => "consumer A SIGKILLed, restarted 1 s later",
            Fault::RestartRabbitMq => "RabbitMQ restarted",
            Fault::CrashRestartPostgres => "PostgreSQL crash-stopped and restarted",
            Fault::KillApi => "API SIGKILLed, restarted 1 s later",
            Fault::StopRedis => "Redis stopped for 5 s",
            Fault::KillConsumerB => "consumer B SIGKILLed, restarted 1 s later",
        }
    }
}

/// Every fault of the schedule, in words.
pub fn described() -> String {
    SCHEDULE
        .iter()
        .map(|(_, fault)| fault.describe())
        .collect::<Vec<_>>()
        .join("; ")
}

/// pp's processes under fault.
pub struct Targets<'a> {
    pub api: &'a mut Process,
    pub consumer_a: &'a mut Process,
    pub consumer_b: &'a mut Process,
    pub services: &'a Services,
}

impl Targets<'_> {
    /// Makes `fault` happen, and undoes it as the schedule says (a process started again, a
    /// service brought back).
    pub async fn strike(&mut self, fault: Fault) -> anyhow::Result<()> {
        match fault {
            Fault::KillConsumerA => restart_killed(self.consumer_a).await,
            Fault::KillConsumerB => restart_killed(self.consumer_b).await,
            Fault::KillApi => restart_killed(self.api).await,
            Fault::RestartRabbitMq => {
                self.services.rabbitmq.down().await?;
                self.services.rabbitmq.up().await
            }
            Fault::CrashRestartPostgres => {
                self.services.postgres.down().await?;
                tokio::time::sleep(DEAD_FOR).await;
                self.services.postgres.up().await
            }
            Fault::StopRedis => {
                self.services.redis.down().await?;
                tokio::time::sleep(REDIS_AWAY_FOR).await;
                self.services.redis.up().await
            }
        }
    }
}

async fn restart_killed(process: &mut Process) -> anyhow::Result<()> {
    process.kill().await;
    tokio::time::sleep(DEAD_FOR).await;
    process.start()
}

//! The consumer's settings: flags, else environment variables, else these defaults.

use std::net::SocketAddr;
use std::time::Duration;

use pp_lib::config::{AmqpConfig, CacheConfig, DatabaseConfig, RedisConfig, parse_duration};

/// Where the Prometheus endpoint listens; `off` for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddr(pub Option<SocketAddr>);

impl std::str::FromStr for MetricsAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(MetricsAddr(None));
        }
        text.parse()
            .map(|addr| MetricsAddr(Some(addr)))
            .map_err(|_| format!("`{text}` is not an address like 127.0.0.1:9187, nor `off`"))
    }
}

/// How deliveries are taken and recorded.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumerConfig {
    /// Most deliveries the broker hands over before they are acknowledged (basic.qos).
    #[arg(long, env = "PP_CONSUMER_PREFETCH", default_value_t = 512)]
    pub prefetch: u16,
    /// Most demands recorded in one database transaction.
    #[arg(long = "batch-size", env = "PP_CONSUMER_BATCH_SIZE", default_value_t = 128,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch_size: u16,
    /// Batches recorded at the same time, each on its own database connection.
    #[arg(long, env = "PP_CONSUMER_WORKERS", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: u16,
    /// Longest wait between two attempts to record a batch while the database fails.
    #[arg(long = "retry-max", env = "PP_CONSUMER_RETRY_MAX", default_value = "10s",
          value_parser = parse_duration)]
    pub retry_max: Duration,
    /// How long a batch keeps being retried while recording fails for a reason that may pass
    /// (the database down, timeouts) before it is handed back to RabbitMQ: requeued, never
    /// acked, for this or another consumer to try again later.
    #[arg(long = "retry-for", env = "PP_CONSUMER_RETRY_FOR", default_value = "5m",
          value_parser = parse_duration)]
    pub retry_for: Duration,
    /// On SIGINT/SIGTERM, how long in-flight demands may keep retrying before they are left
    /// unacknowledged (the broker then delivers them again to another consumer).
    #[arg(long = "shutdown-grace", env = "PP_CONSUMER_SHUTDOWN_GRACE", default_value = "30s",
          value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

/// The sweeper: finishes pending works created over HTTP.
#[derive(Debug, Clone, clap::Args)]
pub struct SweeperConfig {
    /// Time between two sweeps (0 turns the sweeper off).
    #[arg(long = "sweep-every", env = "PP_SWEEP_EVERY", default_value = "5s",
          value_parser = parse_duration)]
    pub every: Duration,
    /// Only works created within this window are swept (the original's "last 6 hours").
    #[arg(long = "sweep-window", env = "PP_SWEEP_WINDOW", default_value = "6h",
          value_parser = parse_duration)]
    pub window: Duration,
    /// Most works claimed per transaction.
    #[arg(long = "sweep-batch", env = "PP_SWEEP_BATCH", default_value_t = 100,
          value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub batch: i64,
}

/// Everything `task_consumer run` reads.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    #[command(flatten)]
    pub amqp: AmqpConfig,
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub consumer: ConsumerConfig,
    #[command(flatten)]
    pub sweeper: SweeperConfig,
    #[command(flatten)]
    pub redis: RedisConfig,
    #[command(flatten)]
    pub cache: CacheConfig,
    /// Address of the Prometheus endpoint (GET /metrics), or `off`.
    #[arg(
        long = "metrics-addr",
        env = "PP_CONSUMER_METRICS_ADDR",
        default_value = "127.0.0.1:9187"
    )]
    pub metrics_addr: MetricsAddr,
}

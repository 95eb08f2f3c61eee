//! The consumer's command line and settings: flags, else environment variables, else these
//! defaults. `task_consumer` alone is `task_consumer run`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pp_lib::config::{
    AmqpConfig, CacheConfig, DatabaseConfig, RedisConfig, SweepWindow, duration_setting,
    positive_duration_setting,
};

/// Turns pp work demands from RabbitMQ into computed, event-logged work, and sweeps API-created
/// work.
///
/// Without a command, runs `run`: consumes and sweeps until SIGINT/SIGTERM.
///
/// Examples:
///   task_consumer                                  consume and sweep, settings from the environment
///   task_consumer run --prefetch 512 --workers 4   the same, with flags
///   task_consumer sweep --all-pending              finish every pending API-created work, then exit
#[derive(Debug, Parser)]
#[command(
    name = "task_consumer",
    version,
    about,
    long_about,
    verbatim_doc_comment
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume demands and sweep until SIGINT/SIGTERM (a second signal stops at once). The
    /// default when no command is given.
    ///
    /// Example: task_consumer run --queue pp_work_queue --metrics-addr 127.0.0.1:9187
    Run(Box<Settings>),
    /// Sweep pending API-created works once, batch after batch, print a summary line and exit:
    /// those within --sweep-window, or all of them, whatever their age, with --all-pending.
    ///
    /// Example: task_consumer sweep --all-pending --sweep-batch 1000
    Sweep(Box<SweepSettings>),
}

impl Cli {
    /// The command given, or `run` with its settings from the environment and the defaults.
    pub fn into_command(self) -> Result<Command, clap::Error> {
        match self.command {
            Some(command) => Ok(command),
            None => match Cli::try_parse_from(["task_consumer", "run"])?.command {
                Some(command) => Ok(command),
                None => Err(clap::Error::raw(
                    clap::error::ErrorKind::MissingSubcommand,
                    "no command to run",
                )),
            },
        }
    }
}

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
    #[arg(long, env = "PP_CONSUMER_PREFETCH", default_value_t = 512,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,
    /// Most demands recorded in one database transaction.
    #[arg(long = "batch-size", env = "PP_CONSUMER_BATCH_SIZE", default_value_t = 128,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch_size: u16,
    /// Batches recorded at the same time, each on its own database connection.
    #[arg(long, env = "PP_CONSUMER_WORKERS", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
    /// Longest wait between two attempts to record a batch while the database fails.
    #[arg(long = "retry-max", env = "PP_CONSUMER_RETRY_MAX", default_value = "10s",
          value_parser = positive_duration_setting)]
    pub retry_max: Duration,
    /// How long a batch keeps being retried while recording fails for a reason that may pass
    /// (the database down, timeouts) before it is handed back to RabbitMQ: requeued, never
    /// acked, for this or another consumer to try again later.
    #[arg(long = "retry-for", env = "PP_CONSUMER_RETRY_FOR", default_value = "5m",
          value_parser = duration_setting)]
    pub retry_for: Duration,
    /// On SIGINT/SIGTERM, how long in-flight demands may keep retrying before they are left
    /// unacknowledged (the broker then delivers them again to another consumer).
    #[arg(long = "shutdown-grace", env = "PP_CONSUMER_SHUTDOWN_GRACE", default_value = "30s",
          value_parser = duration_setting)]
    pub shutdown_grace: Duration,
}

/// The sweeper: finishes pending works created over HTTP.
#[derive(Debug, Clone, clap::Args)]
pub struct SweeperConfig {
    /// Time between two sweeps, the safety net: a work created over HTTP wakes the sweeper at
    /// once (PostgreSQL announces it). 0 turns the sweeper off.
    #[arg(long = "sweep-every", env = "PP_SWEEP_EVERY", default_value = "5s",
          value_parser = duration_setting)]
    pub every: Duration,
    #[command(flatten)]
    pub window: SweepWindow,
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

/// Everything `task_consumer sweep` reads.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepSettings {
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// Sweep every pending API-created work, whatever its age (the window is ignored).
    #[arg(long = "all-pending")]
    pub all_pending: bool,
    // The window to sweep (ignored with --all-pending): PP_SWEEP_WINDOW, as for `run`.
    #[command(flatten)]
    pub window: SweepWindow,
    /// Most works claimed per transaction.
    #[arg(long = "sweep-batch", env = "PP_SWEEP_BATCH", default_value_t = 100,
          value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub batch: i64,
    #[command(flatten)]
    pub redis: RedisConfig,
    #[command(flatten)]
    pub cache: CacheConfig,
}

impl SweepSettings {
    /// The window to sweep: `None` for every age.
    pub fn window(&self) -> Option<Duration> {
        (!self.all_pending).then_some(self.window.duration)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn run_settings(args: &[&str]) -> Settings {
        let cli = Cli::try_parse_from(args).expect("valid flags");
        match cli.into_command().expect("a command") {
            Command::Run(settings) => *settings,
            Command::Sweep(_) => panic!("{args:?} is not a sweep"),
        }
    }

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn each_groups_defaults_are_its_flags() {
        let consumer: ConsumerConfig = pp_lib::config::defaults();
        let sweeper: SweeperConfig = pp_lib::config::defaults();
        let run: Settings = pp_lib::config::defaults();

        assert_eq!(
            (consumer.prefetch, consumer.batch_size, consumer.workers),
            (512, 128, 4)
        );
        assert_eq!(consumer.retry_for, Duration::from_secs(300));
        assert_eq!(sweeper.every, Duration::from_secs(5));
        assert_eq!(sweeper.batch, 100);
        assert_eq!(
            run.metrics_addr,
            MetricsAddr(Some("127.0.0.1:9187".parse().expect("an address")))
        );
    }

    #[test]
    fn settings_parse_and_bad_values_are_refused() {
        let settings = run_settings(&[
            "task_consumer",
            "run",
            "--prefetch",
            "10",
            "--batch-size",
            "5",
            "--metrics-addr",
            "off",
            "--sweep-every",
            "0",
            "--retry-for",
            "1m",
        ]);
        assert_eq!(settings.consumer.prefetch, 10);
        assert_eq!(settings.consumer.batch_size, 5);
        assert_eq!(settings.consumer.retry_for, Duration::from_secs(60));
        assert_eq!(settings.metrics_addr.0, None);
        assert!(settings.sweeper.every.is_zero());
        for bad in [
            vec!["task_consumer", "run", "--batch-size", "0"],
            vec!["task_consumer", "run", "--metrics-addr", "nowhere"],
            vec!["task_consumer", "run", "--workers", "0"],
            vec!["task_consumer", "run", "--retry-for", "soon"],
            vec!["task_consumer", "sweep", "--sweep-batch", "10001"],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn no_command_is_run_with_its_defaults() {
        let alone = run_settings(&["task_consumer"]);
        let run = run_settings(&["task_consumer", "run"]);

        assert_eq!(alone.consumer.prefetch, run.consumer.prefetch);
        assert_eq!(alone.consumer.workers, run.consumer.workers);
        assert_eq!(alone.sweeper.window, run.sweeper.window);
        assert_eq!(run.sweeper.window, SweepWindow::default());
        assert_eq!(alone.amqp.queue, run.amqp.queue);
        assert_eq!(alone.metrics_addr, run.metrics_addr);
    }

    #[test]
    fn sweep_takes_the_window_unless_all_pending_is_asked_for() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args)
            .expect("valid flags")
            .into_command()
            .expect("a command")
        {
            Command::Sweep(settings) => *settings,
            Command::Run(_) => panic!("{args:?} is a sweep"),
        };

        let windowed = parse(&["task_consumer", "sweep", "--sweep-window", "2h"]);
        let all = parse(&[
            "task_consumer",
            "sweep",
            "--all-pending",
            "--sweep-batch",
            "10000",
        ]);

        assert_eq!(windowed.window(), Some(Duration::from_secs(7_200)));
        assert_eq!(all.window(), None);
        assert_eq!(all.batch, 10_000);
    }

    #[test]
    fn help_names_the_default_command() {
        let help = Cli::command().render_long_help().to_string();

        assert!(help.contains("Without a command, runs `run`"), "{help}");
        assert!(help.contains("sweep"), "{help}");
    }
}

//! The command line: `task_producer run` (a schedule, also what `task_producer` alone does) and
//! `task_producer burst` (a count), each with the shared RabbitMQ settings of pp_lib flattened
//! in.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pp_lib::config::{AmqpConfig, Rate, duration_setting, positive_duration_setting};

/// Publishes pp work demands to RabbitMQ, on a schedule or in a burst.
///
/// Without a command, runs `run`: the schedule, until SIGINT/SIGTERM.
///
/// Examples:
///   task_producer                         one random demand every 4 s, until Ctrl-C
///   task_producer run --every 1s          the same, one every second
///   task_producer burst --count 20000     20,000 random demands, as fast as confirmed
#[derive(Debug, Parser)]
#[command(
    name = "task_producer",
    version,
    about,
    long_about,
    verbatim_doc_comment
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The command given, or `run` with its settings from the environment and the defaults.
    pub fn into_command(self) -> Result<Command, clap::Error> {
        match self.command {
            Some(command) => Ok(command),
            None => match Cli::try_parse_from(["task_producer", "run"])?.command {
                Some(command) => Ok(command),
                None => Err(clap::Error::raw(
                    clap::error::ErrorKind::MissingSubcommand,
                    "no command to run",
                )),
            },
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish on a schedule until SIGINT/SIGTERM; rides out broker outages (reconnects with
    /// backoff, loses nothing it generated). The default when no command is given.
    ///
    /// Example: task_producer run --every 500ms --per-tick 10
    Run(ScheduleSettings),
    /// Publish COUNT demands as fast as allowed and exit: 0 when the broker confirmed every one,
    /// 3 when it cannot be reached, 1 otherwise.
    ///
    /// Example: task_producer burst --count 1000 --rate 200 --add-up-to 10
    Burst(BurstSettings),
}

/// `run`: a few demands every few seconds.
#[derive(Debug, Clone, Args)]
pub struct ScheduleSettings {
    #[command(flatten)]
    pub amqp: AmqpConfig,
    /// Time between two ticks (e.g. 4s, 500ms).
    #[arg(long, env = "PP_PRODUCER_EVERY", default_value = "4s", value_parser = positive_duration_setting)]
    pub every: Duration,
    /// Demands published per tick.
    #[arg(long, env = "PP_PRODUCER_PER_TICK", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub per_tick: u32,
    /// add_up_to of every demand (default: random in 1..100, as the original).
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
    pub add_up_to: Option<i32>,
}

/// `burst`: a count of demands, as fast as allowed.
#[derive(Debug, Clone, Args)]
pub struct BurstSettings {
    #[command(flatten)]
    pub amqp: AmqpConfig,
    /// How many demands to publish.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// Most demands per unit of time: per second when bare (`200`), or `3000/m`, `10/h`,
    /// `1000/d`; from one a day to a million a second (default: no limit).
    #[arg(long)]
    pub rate: Option<Rate>,
    /// add_up_to of every demand (default: random in 1..100, as the original).
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
    pub add_up_to: Option<i32>,
    /// Most demands published and not yet confirmed.
    #[arg(long, default_value_t = pp_lib::amqp::publish::DEFAULT_WINDOW as u32,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub window: u32,
    /// How long to keep trying when the broker cannot be reached, before giving up.
    #[arg(long, default_value = "10s", value_parser = duration_setting)]
    pub patience: Duration,
    /// Write the message id of every confirmed demand to this file, one per line, as the
    /// broker confirms them (for audits: what was acknowledged and must be recorded).
    #[arg(long = "ids-file", value_name = "PATH")]
    pub ids_file: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_command_is_run_with_its_defaults() {
        let command = Cli::try_parse_from(["task_producer"])
            .and_then(Cli::into_command)
            .expect("no command is valid");
        let given = Cli::try_parse_from(["task_producer", "run"])
            .and_then(Cli::into_command)
            .expect("run is valid");

        let (Command::Run(alone), Command::Run(run)) = (command, given) else {
            panic!("both are the schedule");
        };
        assert_eq!(alone.every, run.every);
        assert_eq!(alone.per_tick, run.per_tick);
        assert_eq!(alone.amqp.queue, run.amqp.queue);
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Without a command, runs `run`"), "{help}");
    }

    #[test]
    fn bad_flags_are_refused() {
        for args in [
            vec!["task_producer", "burst"],
            vec!["task_producer", "burst", "--count", "0"],
            vec![
                "task_producer",
                "burst",
                "--count",
                "5",
                "--add-up-to",
                "-1",
            ],
            vec!["task_producer", "run", "--every", "soon"],
        ] {
            assert!(Cli::try_parse_from(&args).is_err(), "{args:?}");
        }
    }
}

//! `task_producer`: publishes pp work demands to RabbitMQ, on a schedule (`run`) or all at once
//! (`burst`). Every message is the original project's body, persistent, with a UUID
//! `message_id`, and counts only once the broker confirmed it.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use pp_lib::amqp::{Broker, Outgoing, PublishOptions, Publisher, Reconnect, Topology};
use pp_lib::config::{AmqpConfig, parse_duration};
use pp_lib::demand::WorkDemand;
use pp_lib::shutdown::{self, Shutdown};

/// Exit code when the broker could not be reached at all.
const EXIT_UNREACHABLE: u8 = 3;

/// Publishes pp work demands to RabbitMQ, on a schedule or in a burst.
///
/// Examples:
///   task_producer run                     one random demand every 4 s, until Ctrl-C
///   task_producer burst --count 20000     20,000 random demands, as fast as confirmed
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish on a schedule until SIGINT/SIGTERM; rides out broker outages (reconnects with
    /// backoff, loses nothing it generated).
    ///
    /// Example: task_producer run --every 500ms --per-tick 10
    Run {
        #[command(flatten)]
        amqp: AmqpConfig,
        /// Time between two ticks (e.g. 4s, 500ms).
        #[arg(long, env = "PP_PRODUCER_EVERY", default_value = "4s", value_parser = parse_duration)]
        every: Duration,
        /// Demands published per tick.
        #[arg(long, env = "PP_PRODUCER_PER_TICK", default_value_t = 1)]
        per_tick: u32,
        /// add_up_to of every demand (default: random in 1..100, as the original).
        #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
        add_up_to: Option<i32>,
    },
    /// Publish COUNT demands as fast as allowed and exit: 0 when the broker confirmed every one,
    /// 3 when it cannot be reached, 1 otherwise.
    ///
    /// Example: task_producer burst --count 1000 --rate 200 --add-up-to 10
    Burst {
        #[command(flatten)]
        amqp: AmqpConfig,
        /// How many demands to publish.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        count: u64,
        /// Most demands per second (default: no limit).
        #[arg(long)]
        rate: Option<f64>,
        /// add_up_to of every demand (default: random in 1..100, as the original).
        #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
        add_up_to: Option<i32>,
        /// Most demands published and not yet confirmed.
        #[arg(long, default_value_t = pp_lib::amqp::publish::DEFAULT_WINDOW)]
        window: usize,
        /// How long to keep trying when the broker cannot be reached, before giving up.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        patience: Duration,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    pp_lib::logging::init();
    if let Err(error) = pp_lib::config::load_dotenv() {
        eprintln!("task_producer: error: {error}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let shutdown = shutdown::on_signals();
    let broker = |amqp: &AmqpConfig| {
        Broker::new(
            amqp.url.clone(),
            Topology::from_config(amqp),
            "task_producer",
        )
    };
    match cli.command {
        Command::Run {
            amqp,
            every,
            per_tick,
            add_up_to,
        } => run(broker(&amqp), every, per_tick, add_up_to, shutdown).await,
        Command::Burst {
            amqp,
            count,
            rate,
            add_up_to,
            window,
            patience,
        } => {
            let options = PublishOptions {
                window,
                rate: rate.filter(|rate| *rate > 0.0),
                reconnect: Reconnect::Within(patience),
            };
            burst(broker(&amqp), count, add_up_to, options, shutdown).await
        }
    }
}

fn demand(add_up_to: Option<i32>) -> WorkDemand {
    add_up_to
        .and_then(|n| WorkDemand::new(n).ok())
        .unwrap_or_else(WorkDemand::random)
}

/// The original's schedule: `per_tick` demands every `every`, until shutdown.
async fn run(
    broker: Broker,
    every: Duration,
    per_tick: u32,
    add_up_to: Option<i32>,
    shutdown: Shutdown,
) -> ExitCode {
    let mut publisher = Publisher::new(broker);
    let options = PublishOptions::new(Reconnect::UntilShutdown(shutdown.clone()));
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(1)));
    // After an outage, carry on at the normal pace rather than catching up in a rush.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut published: u64 = 0;
    log::info!("publishing {per_tick} demand(s) every {every:?}; Ctrl-C stops");
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.requested() => break,
        }
        let batch: Vec<Outgoing> = (0..per_tick)
            .map(|_| Outgoing::demand(&demand(add_up_to)))
            .collect();
        let outcome = publisher
            .publish(batch, &options, |message| {
                log::info!(
                    "published demand {} {}",
                    message.id,
                    String::from_utf8_lossy(&message.body)
                );
            })
            .await;
        match outcome {
            Ok(count) => published += count,
            Err(error) => {
                published += error.confirmed;
                if shutdown.is_requested() {
                    log::info!("stopping before the broker came back: {}", error.reason);
                    break;
                }
                log::error!("publishing failed: {error}");
            }
        }
    }
    publisher.close().await;
    log::info!("stopped after publishing {published} demand(s)");
    ExitCode::SUCCESS
}

/// Publishes `count` demands and reports the confirmed count and rate.
async fn burst(
    broker: Broker,
    count: u64,
    add_up_to: Option<i32>,
    options: PublishOptions,
    shutdown: Shutdown,
) -> ExitCode {
    let mut publisher = Publisher::new(broker);
    if let Err(error) = publisher.ensure_connected(&options.reconnect).await {
        eprintln!("task_producer: error: {error}");
        return ExitCode::from(EXIT_UNREACHABLE);
    }
    let progress = Progress::new(count);
    let started = Instant::now();
    let stop = shutdown.clone();
    let messages = (0..count)
        .map_while(|_| (!stop.is_requested()).then(|| Outgoing::demand(&demand(add_up_to))));
    let outcome = publisher
        .publish(messages, &options, |_| progress.confirmed())
        .await;
    let elapsed = started.elapsed();
    progress.finish();
    let republished = publisher.republished();
    publisher.close().await;
    let confirmed = match &outcome {
        Ok(confirmed) => *confirmed,
        Err(error) => error.confirmed,
    };
    let rate = confirmed as f64 / elapsed.as_secs_f64().max(1e-9);
    println!(
        "confirmed {confirmed} of {count} demands in {:.2}s ({rate:.0} msg/s{})",
        elapsed.as_secs_f64(),
        if republished > 0 {
            format!(", {republished} published again after a lost connection")
        } else {
            String::new()
        }
    );
    match outcome {
        Ok(confirmed) if confirmed == count => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!("task_producer: error: interrupted before every demand was published");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("task_producer: error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A progress bar on a terminal; a line every tenth of the way otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: std::cell::Cell<u64>,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) =
                ProgressStyle::with_template("{bar:40} {pos}/{len} confirmed  {per_sec}  eta {eta}")
            {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            bar,
            total,
            done: std::cell::Cell::new(0),
        }
    }

    fn confirmed(&self) {
        let done = self.done.get() + 1;
        self.done.set(done);
        match &self.bar {
            Some(bar) => bar.inc(1),
            None => {
                let step = (self.total / 10).max(1);
                if done.is_multiple_of(step) || done == self.total {
                    eprintln!("confirmed {done}/{}", self.total);
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
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

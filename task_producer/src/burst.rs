//! `task_producer burst`: publishes a given number of demands as fast as allowed (at most
//! `rate` a second, at most `window` unconfirmed), shows progress on stderr, and reports how many
//! the broker confirmed, how fast, and how many went out again after a lost connection.

use std::cell::Cell;
use std::fmt;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use pp_lib::amqp::{Outgoing, PublishError, PublishOptions, Publisher, Reconnect};
use pp_lib::shutdown::Shutdown;

use crate::settings::BurstSettings;

/// What the report says after the number of demands published again (a fault run reads it).
pub const REPUBLISHED_REPORTED: &str = "published again after a lost connection";

/// What a burst achieved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstReport {
    /// Demands asked for.
    pub count: u64,
    /// Demands the broker confirmed.
    pub confirmed: u64,
    pub elapsed: Duration,
    /// Demands published again because their connection was lost before the confirm.
    pub republished: u64,
}

impl fmt::Display for BurstReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = self.confirmed as f64 / self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "confirmed {} of {} demands in {:.2}s ({rate:.0} msg/s",
            self.confirmed,
            self.count,
            self.elapsed.as_secs_f64()
        )?;
        if self.republished > 0 {
            write!(f, ", {} {REPUBLISHED_REPORTED}", self.republished)?;
        }
        write!(f, ")")
    }
}

/// How a burst ended.
#[derive(Debug)]
pub enum BurstOutcome {
    /// The broker could not be reached within the patience: nothing was published.
    Unreachable(pp_lib::Error),
    /// The broker confirmed every demand.
    Complete(BurstReport),
    /// Shutdown was asked for before every demand was published.
    Interrupted(BurstReport),
    /// Publishing failed part of the way.
    Failed(BurstReport, PublishError),
}

/// Publishes the burst the settings describe, unless shutdown is asked for first.
pub async fn publish_burst(settings: BurstSettings, shutdown: Shutdown) -> BurstOutcome {
    let options = PublishOptions {
        window: settings.window as usize,
        rate: settings.rate.map(|rate| rate.per_second()),
        reconnect: Reconnect::Within(settings.patience),
    };
    let count = settings.count;
    let failed_early = |reason| {
        BurstOutcome::Failed(
            BurstReport {
                count,
                confirmed: 0,
                elapsed: Duration::ZERO,
                republished: 0,
            },
            PublishError {
                confirmed: 0,
                reason,
            },
        )
    };
    let mut ids = match settings
        .ids_file
        .as_deref()
        .map(IdsFile::create)
        .transpose()
    {
        Ok(ids) => ids,
        Err(reason) => return failed_early(reason),
    };
    // A wait for the rate, however long, ends on shutdown.
    let mut publisher = Publisher::new(crate::broker(&settings.amqp)).stopping_on(shutdown.clone());
    if let Err(error) = publisher.check_features().await {
        return failed_early(error);
    }
    match publisher.ensure_connected(&options.reconnect).await {
        Ok(()) => {}
        // Reached, and refused for good: a queue that exists with another type.
        Err(error @ pp_lib::Error::Config(_)) => return failed_early(error),
        Err(error) => return BurstOutcome::Unreachable(error),
    }
    let progress = Progress::new(count);
    let started = Instant::now();
    let messages = (0..count).map_while(|_| {
        (!shutdown.is_requested()).then(|| Outgoing::demand(&crate::demand(settings.add_up_to)))
    });
    let outcome = publisher
        .publish(messages, &options, |message| {
            progress.confirmed();
            if let Some(ids) = ids.as_mut() {
                ids.write(message.id);
            }
        })
        .await;
    let ids_written = ids.map_or(Ok(()), IdsFile::finish);
    let elapsed = started.elapsed();
    progress.finish();
    let republished = publisher.republished();
    publisher.close().await;
    let report = |confirmed| BurstReport {
        count,
        confirmed,
        elapsed,
        republished,
    };
    match (outcome, ids_written) {
        (Ok(confirmed), Err(reason)) => {
            BurstOutcome::Failed(report(confirmed), PublishError { confirmed, reason })
        }
        (outcome, _) => match outcome {
            Ok(confirmed) if confirmed == count => BurstOutcome::Complete(report(confirmed)),
            Ok(confirmed) => BurstOutcome::Interrupted(report(confirmed)),
            Err(error) => BurstOutcome::Failed(report(error.confirmed), error),
        },
    }
}

/// The `--ids-file`: confirmed ids, a line each, written as they come. A write that fails is
/// remembered and reported when the burst ends (the audit would be incomplete).
struct IdsFile {
    path: std::path::PathBuf,
    writer: std::io::BufWriter<std::fs::File>,
    failure: Option<std::io::Error>,
}

impl IdsFile {
    fn create(path: &std::path::Path) -> Result<Self, pp_lib::Error> {
        let file = std::fs::File::create(path).map_err(|error| {
            pp_lib::Error::Config(format!(
                "cannot write --ids-file {}: {error}",
                path.display()
            ))
        })?;
        Ok(IdsFile {
            path: path.to_owned(),
            writer: std::io::BufWriter::new(file),
            failure: None,
        })
    }

    fn write(&mut self, id: impl fmt::Display) {
        use std::io::Write;
        if self.failure.is_none()
            && let Err(error) = writeln!(self.writer, "{id}")
        {
            self.failure = Some(error);
        }
    }

    fn finish(mut self) -> Result<(), pp_lib::Error> {
        use std::io::Write;
        let outcome = match self.failure.take() {
            Some(error) => Err(error),
            None => self.writer.flush(),
        };
        outcome.map_err(|error| {
            pp_lib::Error::Config(format!(
                "writing --ids-file {}: {error}",
                self.path.display()
            ))
        })
    }
}

/// A progress bar on a terminal; a line every tenth of the way otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: Cell<u64>,
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
            done: Cell::new(0),
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
    use super::*;

    #[test]
    fn the_report_says_what_was_confirmed_and_how_fast() {
        let mut report = BurstReport {
            count: 50,
            confirmed: 50,
            elapsed: Duration::from_millis(500),
            republished: 0,
        };
        assert_eq!(
            report.to_string(),
            "confirmed 50 of 50 demands in 0.50s (100 msg/s)"
        );
        report.republished = 3;
        assert_eq!(
            report.to_string(),
            "confirmed 50 of 50 demands in 0.50s (100 msg/s, 3 published again after a lost connection)"
        );
    }
}

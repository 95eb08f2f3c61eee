//! The sweeper: finishes works created over HTTP (`POST /work` leaves them pending).
//!
//! At once when PostgreSQL announces a new one ([`pp_lib::db::works::WORKS_PENDING`], heard by a listener the
//! caller starts), and every `every` as the safety net for an announcement missed, it claims
//! pending API-created works created within `window`, oldest first, in
//! batches, with `FOR UPDATE SKIP LOCKED`, and in the same transaction records their three events
//! and marks them done (see `pp_lib::db::works::sweep_pending_works`). It repeats until a batch
//! comes back short, so a backlog drains in one sweep. Any number of consumers may sweep at once:
//! a row one of them holds is skipped by the others, and a done row is never claimed again.
//!
//! Works older than the window are left alone (the original swept "the last 6 hours"). They are
//! not forgotten: each sweep counts them, the count is a gauge
//! (`pp_consumer_sweeper_works_older_than_window`), and the log says so whenever it changes.
//! `task_consumer sweep --all-pending` ([`sweep_once`]) finishes them, whatever their age.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pp_lib::cache::WorkCache;
use pp_lib::config::format_duration;
use pp_lib::db::announce::{Announcer, notify, payloads};
use pp_lib::db::works::{WORKS_DONE, count_pending_api_works_before, done_item, since_any_age};
use pp_lib::db::{PgPool, with_connection};
use pp_lib::outage::Outage;
use pp_lib::shutdown::Shutdown;
use pp_lib::work::Work;
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::settings::SweeperConfig;

/// Sweeps until shutdown, at each tick and whenever `announced` is woken (by a listener on
/// [`pp_lib::db::works::WORKS_PENDING`]). Does nothing when `every` is zero.
pub async fn sweep(
    pool: PgPool,
    cache: Arc<WorkCache>,
    config: SweeperConfig,
    metrics: Arc<Metrics>,
    announced: Arc<Notify>,
    announcer: Arc<Announcer>,
    shutdown: Shutdown,
) {
    if config.every.is_zero() {
        log::info!("sweeper off");
        return;
    }
    let mut ticks = tokio::time::interval(config.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut database = Outage::new(
        module_path!(),
        "sweeper: the database",
        "trying again next sweep",
    );
    let mut stranded = Stranded::new(config.window.duration);
    loop {
        // Works older than the window are counted at the ticks only: an announcement is about
        // a new work.
        let ticked = tokio::select! {
            _ = ticks.tick() => true,
            () = announced.notified() => false,
            () = shutdown.requested() => return,
        };
        let since = window_start(Utc::now(), config.window.duration);
        while !shutdown.is_requested() {
            let limit = config.batch;
            // Through the cache's write path: the finished works are published after the commit.
            let outcome =
                pp_lib::cache::writes::sweep_pending_works(&pool, &cache, since, limit).await;
            match outcome {
                Ok(done) => {
                    database.recovered();
                    if !done.is_empty() {
                        announcer.announce_items(WORKS_DONE, done.iter().map(done_item).collect());
                        metrics.swept.inc_by(done.len() as u64);
                        log::info!("sweeper finished {} API-created work(s)", done.len());
                    }
                    if (done.len() as i64) < limit {
                        break;
                    }
                }
                Err(pp_lib::Error::Bug(error)) => {
                    log::error!("sweeper: {error}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
                Err(error) => {
                    database.failed(&error);
                    break;
                }
            }
        }
        if !ticked || database.is_down() || shutdown.is_requested() {
            continue;
        }
        match count_older(&pool, since).await {
            Ok(older) => {
                metrics.sweeper_stranded.set(older);
                if let Some(line) = stranded.note(older) {
                    if older > 0 {
                        log::warn!("sweeper: {line}");
                    } else {
                        log::info!("sweeper: {line}");
                    }
                }
            }
            Err(error) => {
                database.failed(&error);
            }
        }
    }
}

/// The oldest `created_on` a sweep with this window takes, at `now`. A window too large to
/// subtract takes every age.
pub fn window_start(now: DateTime<Utc>, window: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(window)
        .ok()
        .and_then(|window| now.checked_sub_signed(window))
        .map_or_else(since_any_age, |start| start.max(since_any_age()))
}

/// Pending API-created works created before `since`, on a database thread.
async fn count_older(pool: &PgPool, since: DateTime<Utc>) -> Result<i64, pp_lib::Error> {
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        with_connection(&pool, |conn| {
            Ok(count_pending_api_works_before(conn, since)?)
        })
    })
    .await
    .map_err(|error| pp_lib::Error::Bug(format!("a count did not finish: {error}")))?
}

/// What the log last said about works older than the window, so it speaks once per change
/// rather than every sweep.
#[derive(Debug, Clone)]
pub struct Stranded {
    window: Duration,
    last: Option<i64>,
}

impl Stranded {
    pub fn new(window: Duration) -> Self {
        Stranded { window, last: None }
    }

    /// The line to log for this count, if it differs from the last one (a first count of zero
    /// says nothing).
    pub fn note(&mut self, older: i64) -> Option<String> {
        let previous = self.last.replace(older);
        if previous == Some(older) || (previous.is_none() && older == 0) {
            return None;
        }
        let window = format_duration(self.window);
        Some(if older == 0 {
            format!("no pending API-created work is older than the {window} window any more")
        } else {
            format!(
                "{older} pending API-created work(s) are older than the {window} window and will \
                 not be swept; `task_consumer sweep --all-pending` finishes them"
            )
        })
    }
}

/// What a one-off sweep did.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepReport {
    /// Works finished.
    pub swept: u64,
    /// Transactions that finished at least one work.
    pub batches: u64,
    pub took: Duration,
    /// Pending API-created works left older than the window (none for a sweep of any age).
    pub left_older: i64,
    /// The window swept; `None` for every age.
    pub window: Option<Duration>,
}

impl std::fmt::Display for SweepReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let which = match self.window {
            None => "of any age".to_owned(),
            Some(window) => format!("within the last {}", format_duration(window)),
        };
        write!(
            f,
            "swept {} pending API-created work(s) {which} in {} batch(es), {:.1}s; {} older \
             left pending",
            self.swept,
            self.batches,
            self.took.as_secs_f64(),
            self.left_older
        )
    }
}

/// Sweeps once, batch after batch, until no pending API-created work is left in the window
/// (`None`: whatever its age), then reports. Stops early, between batches, on shutdown.
pub async fn sweep_once(
    pool: &PgPool,
    cache: &WorkCache,
    window: Option<Duration>,
    batch: i64,
    shutdown: &Shutdown,
) -> Result<SweepReport, pp_lib::Error> {
    let started = Instant::now();
    let since = window.map_or_else(since_any_age, |window| window_start(Utc::now(), window));
    let mut report = SweepReport {
        swept: 0,
        batches: 0,
        took: Duration::ZERO,
        left_older: 0,
        window,
    };
    while !shutdown.is_requested() {
        let done = pp_lib::cache::writes::sweep_pending_works(pool, cache, since, batch).await?;
        if !done.is_empty() {
            announce_done(pool, &done).await;
            report.swept += done.len() as u64;
            report.batches += 1;
            log::debug!("swept {} so far", report.swept);
        }
        if (done.len() as i64) < batch {
            break;
        }
    }
    report.left_older = count_older(pool, since).await?;
    report.took = started.elapsed();
    Ok(report)
}

/// Announces `done` on [`WORKS_DONE`] at once, for a one-off sweep (a daemon's announcer folds
/// its announcements instead). A failure is logged: whoever waits for them looks again later.
async fn announce_done(pool: &PgPool, done: &[Work]) {
    let items: Vec<String> = done.iter().map(done_item).collect();
    let notifications: Vec<(&str, String)> = payloads(&items)
        .into_iter()
        .map(|payload| (WORKS_DONE, payload))
        .collect();
    let pool = pool.clone();
    let sent = tokio::task::spawn_blocking(move || {
        with_connection(&pool, |conn| Ok(notify(conn, &notifications)?))
    })
    .await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(error)) => log::warn!("could not announce the works swept: {error}"),
        Err(error) => log::warn!("could not announce the works swept: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn works_older_than_the_window_are_logged_once_per_change() {
        let mut stranded = Stranded::new(Duration::from_secs(6 * 3_600));

        let lines: Vec<Option<String>> = [0, 0, 3, 3, 3, 5, 0, 0]
            .into_iter()
            .map(|older| stranded.note(older))
            .collect();

        let spoken: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter_map(|(i, line)| line.as_ref().map(|_| i))
            .collect();
        assert_eq!(spoken, [2, 5, 6], "{lines:#?}");
        let first = lines[2].as_deref().unwrap_or_default();
        assert!(
            first.starts_with("3 pending API-created work(s) are older than the 6h window"),
            "{first}"
        );
        assert!(
            first.contains("task_consumer sweep --all-pending"),
            "{first}"
        );
        let cleared = lines[6].as_deref().unwrap_or_default();
        assert!(
            cleared.contains("no pending API-created work is older"),
            "{cleared}"
        );
    }

    #[test]
    fn an_outsized_window_sweeps_every_age() {
        let now = Utc::now();

        let huge = window_start(now, Duration::from_secs(u64::MAX));
        let six_hours = window_start(now, Duration::from_secs(6 * 3_600));

        assert_eq!(huge, since_any_age());
        assert_eq!(now - six_hours, chrono::Duration::hours(6));
    }

    #[test]
    fn a_report_is_one_line_with_the_counts() {
        let report = SweepReport {
            swept: 10_000,
            batches: 100,
            took: Duration::from_millis(3_210),
            left_older: 0,
            window: None,
        };

        assert_eq!(
            report.to_string(),
            "swept 10000 pending API-created work(s) of any age in 100 batch(es), 3.2s; 0 older \
             left pending"
        );
    }
}

//! Progress over the run, sampled from the database, and the longest stall found in it: the
//! longest stretch in which work was waiting on a path and that path did not move.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel::prelude::*;
use tokio::time::Instant;

/// What is recorded, and what still waits to be, at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, QueryableByName)]
pub struct Backlog {
    /// Works recorded from a demand (the producer's or the outbox's, through the broker).
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub demands: i64,
    /// Works created over HTTP and finished by a sweeper.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub swept: i64,
    /// Demands in the outbox not yet published.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub outbox: i64,
    /// Works created over HTTP not yet done.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub pending: i64,
}

impl Backlog {
    /// Every one of `expected_demands` is recorded, and nothing waits.
    pub fn is_drained(&self, expected_demands: i64) -> bool {
        self.demands >= expected_demands && self.outbox == 0 && self.pending == 0
    }
}

/// The backlog, or `None` while the database does not answer.
pub fn read_backlog(url: &str) -> Option<Backlog> {
    let mut conn = PgConnection::establish(url).ok()?;
    diesel::sql_query(
        "select (select count(*) from works where demand_id is not null) as demands, \
                (select count(*) from works where demand_id is null and done) as swept, \
                (select count(*) from demand_outbox where published_on is null) as outbox, \
                (select count(*) from works where not done) as pending",
    )
    .get_result(&mut conn)
    .ok()
}

/// The backlog every 250 ms (`None` where the database did not answer), from the start of the
/// run until [`Sampler::finish`].
pub struct Sampler {
    /// The run's start: every time of the run is counted from it.
    pub epoch: Instant,
    finished: AtomicBool,
}

/// One sample: when (into the run), and what the database said.
pub type Sample = (Duration, Option<Backlog>);

impl Sampler {
    /// A sampler whose times count from now.
    pub fn new() -> Sampler {
        Sampler {
            epoch: Instant::now(),
            finished: AtomicBool::new(false),
        }
    }

    /// Samples `url` until finished; the samples.
    pub async fn run(self: Arc<Self>, url: String) -> Vec<Sample> {
        let started = self.epoch;
        let mut samples = Vec::new();
        let mut every = tokio::time::interval(Duration::from_millis(250));
        while !self.finished.load(Ordering::Relaxed) {
            every.tick().await;
            let url = url.clone();
            let backlog = tokio::task::spawn_blocking(move || read_backlog(&url))
                .await
                .ok()
                .flatten();
            samples.push((started.elapsed(), backlog));
        }
        samples
    }

    pub fn finish(&self) {
        self.finished.store(true, Ordering::Relaxed);
    }
}

/// The longest stretch without progress on a path that had work waiting, judged by what of it
/// is counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stall {
    pub length: Duration,
    /// What of it lies outside every grace (see [`Grace`]).
    pub counted: Duration,
    /// When it began, into the run.
    pub from: Duration,
    pub path: Path,
}

/// A stretch of the run in which no progress is expected, so a stall within it is not counted:
/// the start of a frozen node, before the cluster may declare it down. From and to, into the
/// run.
pub type Grace = (Duration, Duration);

/// How much of `from..to` lies outside every one of `graces` (which do not overlap).
fn outside(from: Duration, to: Duration, graces: &[Grace]) -> Duration {
    let inside: Duration = graces
        .iter()
        .map(|&(start, end)| {
            let (start, end) = (start.max(from), end.min(to));
            end.saturating_sub(start)
        })
        .sum();
    (to - from).saturating_sub(inside)
}

/// The two ways work gets done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Path {
    /// Demands, through the broker to the consumers: waiting while fewer are recorded than were
    /// acknowledged in the whole run, or the outbox holds some.
    #[default]
    Demands,
    /// Works created over HTTP, finished by the sweepers: waiting while some are pending.
    Swept,
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Path::Demands => "demands through the broker",
            Path::Swept => "HTTP works for the sweepers",
        })
    }
}

/// The longest stall in `samples`, given the number of demands acknowledged in the whole run: on
/// each path, the longest time between two samples at which it moved or had nothing waiting,
/// with work waiting in between, counting only what lies outside `graces`. A sample the
/// database did not answer shows no progress.
pub fn longest_stall(samples: &[Sample], expected_demands: i64, graces: &[Grace]) -> Stall {
    let mut longest = Stall::default();
    for path in [Path::Demands, Path::Swept] {
        // The last sample at which the path moved or had nothing waiting, its count, and
        // whether work has waited since.
        let mut since: Option<(Duration, i64, bool)> = None;
        for &(at, backlog) in samples {
            let Some(backlog) = backlog else { continue };
            let (count, waiting) = match path {
                Path::Demands => (
                    backlog.demands,
                    backlog.demands < expected_demands || backlog.outbox > 0,
                ),
                Path::Swept => (backlog.swept, backlog.pending > 0),
            };
            let moved = match since {
                Some((start, seen, waited)) => {
                    let stall = Stall {
                        length: at - start,
                        counted: outside(start, at, graces),
                        from: start,
                        path,
                    };
                    if (waited || waiting)
                        && (stall.counted, stall.length) > (longest.counted, longest.length)
                    {
                        longest = stall;
                    }
                    seen != count
                }
                None => true,
            };
            if moved || !waiting {
                since = Some((at, count, waiting));
            } else if let Some((_, _, waited)) = since.as_mut() {
                *waited = true;
            }
        }
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64, demands: i64, swept: i64, pending: i64) -> Sample {
        (
            Duration::from_secs(seconds),
            Some(Backlog {
                demands,
                swept,
                outbox: 0,
                pending,
            }),
        )
    }

    #[test]
    fn the_longest_stretch_a_waiting_path_did_not_move_is_the_stall() {
        let samples = [
            at(0, 0, 0, 1),
            at(1, 5, 1, 1),
            at(2, 5, 2, 1),
            at(3, 5, 3, 1),
            (Duration::from_secs(4), None),
            at(5, 5, 4, 0),
            at(6, 9, 4, 0),
            at(7, 10, 4, 0),
        ];

        let stall = longest_stall(&samples, 10, &[]);

        assert_eq!(stall.length, Duration::from_secs(5), "{stall:?}");
        assert_eq!(stall.counted, stall.length);
        assert_eq!(stall.from, Duration::from_secs(1));
        assert_eq!(stall.path, Path::Demands);
    }

    #[test]
    fn a_path_with_nothing_waiting_does_not_stall() {
        let samples = [
            at(0, 10, 3, 0),
            at(5, 10, 3, 0),
            at(8, 10, 3, 0),
            at(9, 10, 3, 1),
            at(12, 10, 4, 0),
            at(20, 10, 4, 0),
        ];

        let stall = longest_stall(&samples, 10, &[]);

        assert_eq!(stall.length, Duration::from_secs(4), "{stall:?}");
        assert_eq!(stall.from, Duration::from_secs(8));
        assert_eq!(stall.path, Path::Swept);
    }

    #[test]
    fn what_a_stall_spends_within_a_grace_is_not_counted() {
        let samples = [
            at(0, 0, 0, 0),
            at(12, 0, 0, 0),
            at(13, 4, 0, 0),
            at(20, 4, 0, 0),
            at(21, 10, 0, 0),
        ];
        let graces = [
            (Duration::from_secs(0), Duration::from_secs(10)),
            (Duration::from_secs(30), Duration::from_secs(40)),
        ];

        let stall = longest_stall(&samples, 10, &graces);

        assert_eq!(
            stall.length,
            Duration::from_secs(8),
            "the longest counted, {stall:?}"
        );
        assert_eq!(stall.counted, Duration::from_secs(8));
        assert_eq!(stall.from, Duration::from_secs(13));
        assert_eq!(
            outside(Duration::from_secs(0), Duration::from_secs(13), &graces),
            Duration::from_secs(3)
        );
        assert_eq!(
            outside(Duration::from_secs(25), Duration::from_secs(45), &graces),
            Duration::from_secs(10)
        );
    }
}

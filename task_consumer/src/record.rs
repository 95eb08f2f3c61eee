//! The second step of consuming: recording a batch of demands, one attempt at a time, and what
//! the worker does next, as a [`BatchOutcome`].
//!
//! - [`attempt_batch`] (I/O): one transaction ([`record_demands`]) and what its failure says.
//!   A failure that may pass (connection, pool, timeout, serialization, deadlock: see
//!   [`pp_lib::Error::is_transient`]) is [`Attempt::Transient`]. Any other is the database
//!   refusing something the batch carries ([`Attempt::Refused`]); for a batch of one, a
//!   known-good demand is then recorded and rolled back, to tell "this demand" from "the
//!   database refuses everything" (a full disk, a dropped table): only when that one passes is
//!   the demand poison ([`Attempt::Poison`]). So a fault of the database never sends good demands
//!   to the dead-letter queue.
//! - [`decide`] (pure): the attempt under the retry policy ([`Retrying`]): recorded, retry
//!   later, split, poison, or gave up.
//! - [`Parts`] (pure): the halves still to record after splits, so that a batch with one poison
//!   demand records all the others and isolates that one in about 2·log₂(n) transactions.
//!
//! Tests drive all three without a broker and without sleeping: [`record_batch`] is the first
//! two together, on a connection of the test's.

use std::time::{Duration, Instant};

use diesel::Connection;
use pp_lib::Error;
use pp_lib::amqp::Backoff;
use pp_lib::db::works::{Recorded, record_demands};
use pp_lib::db::{PgConnection, discard_if_closed};
use pp_lib::demand::WorkDemand;
use uuid::Uuid;

/// First wait after a failed attempt; it doubles up to `--retry-max`.
pub const FIRST_RETRY: Duration = Duration::from_millis(100);

/// Failed attempts a batch gets at least before it is given up, however short the patience: a
/// patience of zero still waits once (so handing back cannot become a hot loop).
const MIN_ATTEMPTS_BEFORE_GIVING_UP: u32 = 2;

/// add_up_to of the known-good demand recorded (and rolled back) to check that the database
/// accepts demands at all.
const KNOWN_GOOD_ADD_UP_TO: i32 = 1;

/// What one attempt to record a batch found.
#[derive(Debug)]
pub enum Attempt {
    /// Committed.
    Recorded(Recorded),
    /// A failure that may pass if tried again.
    Transient(Error),
    /// The database refuses something in this batch of several; which demand is not known yet.
    Refused(Error),
    /// The database refuses this demand (a batch of one) and accepts a known-good one.
    Poison(Error),
}

/// What the worker does with a batch after an attempt.
#[derive(Debug)]
pub enum BatchOutcome {
    /// Committed: ack every delivery of the batch.
    Recorded(Recorded),
    /// The failure may pass: try the same batch again after this wait, unacknowledged.
    RetryLater { error: Error, after: Duration },
    /// The database refuses something in the batch: record each half on its own to find it.
    Split { reason: String },
    /// This demand can never be recorded: dead-letter it with the reason.
    Poison { reason: String },
    /// Failures that may pass went on too long (or past the shutdown grace): hand the deliveries
    /// back to the broker (requeued, never acked), for this or another consumer to try later.
    GaveUp { error: Error, why: GiveUp },
}

/// Why a batch was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// Recording kept failing for longer than `--retry-for`.
    Patience { failing_for: Duration },
    /// Shutdown was asked for and its grace period is over.
    Shutdown,
    /// Recording panicked: a bug, not the messages' fault.
    Panicked,
}

impl std::fmt::Display for GiveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GiveUp::Patience { failing_for } => {
                write!(f, "recording failed for {:.1}s", failing_for.as_secs_f64())
            }
            GiveUp::Shutdown => f.write_str("the shutdown grace period is over"),
            GiveUp::Panicked => f.write_str("recording panicked"),
        }
    }
}

/// The retry policy of one worker: backoff between attempts while recording fails, and when to
/// give up. One per worker, kept across batches, so that a worker whose batches keep failing
/// keeps its long wait instead of starting again from the shortest one with each batch.
#[derive(Debug, Clone)]
pub struct Retrying {
    backoff: Backoff,
    /// How long failures may go on before the batch is handed back.
    retry_for: Duration,
    /// When the current run of failures started, and how many attempts failed since.
    failing_since: Option<Instant>,
    failures: u32,
    /// The end of the shutdown grace period, once shutdown was asked for.
    stop_by: Option<Instant>,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    After(Duration),
    GiveUp(GiveUp),
}

impl Retrying {
    /// Waits from [`FIRST_RETRY`] doubling up to `retry_max`; gives up after `retry_for`.
    pub fn new(retry_max: Duration, retry_for: Duration) -> Self {
        Retrying {
            backoff: Backoff::new(FIRST_RETRY, retry_max.max(FIRST_RETRY)),
            retry_for,
            failing_since: None,
            failures: 0,
            stop_by: None,
        }
    }

    /// No attempt fails after `deadline` without the batch being given up (shutdown's grace).
    pub fn stop_by(&mut self, deadline: Instant) {
        self.stop_by = Some(self.stop_by.map_or(deadline, |stop| stop.min(deadline)));
    }

    /// True when no more attempts should be made: shutdown's grace period is over.
    pub fn is_past_stop(&self, now: Instant) -> bool {
        self.stop_by.is_some_and(|stop| now >= stop)
    }

    /// After an attempt that failed and may pass: how long to wait, or to give up.
    pub fn after_failure(&mut self, now: Instant) -> Retry {
        if self.is_past_stop(now) {
            return Retry::GiveUp(GiveUp::Shutdown);
        }
        let since = *self.failing_since.get_or_insert(now);
        self.failures += 1;
        let failing_for = now.saturating_duration_since(since);
        if self.failures >= MIN_ATTEMPTS_BEFORE_GIVING_UP && failing_for >= self.retry_for {
            // The next batch gets its own patience, but not a short first wait: the backoff
            // stays where it is until something is recorded.
            self.failing_since = None;
            self.failures = 0;
            return Retry::GiveUp(GiveUp::Patience { failing_for });
        }
        let delay = self.backoff.next_delay();
        Retry::After(match self.stop_by {
            Some(stop) => delay.min(stop.saturating_duration_since(now)),
            None => delay,
        })
    }

    /// After the database answered (recorded, or refused what the batch carries).
    pub fn after_answer(&mut self) {
        self.backoff.reset();
        self.failing_since = None;
        self.failures = 0;
    }
}

/// Records `demands` in one transaction and classifies the failure, if any (see the module's
/// documentation).
pub fn attempt_batch(conn: &mut PgConnection, demands: &[(Uuid, WorkDemand)]) -> Attempt {
    match record_demands(conn, demands) {
        Ok(recorded) => Attempt::Recorded(recorded),
        Err(error) if error.is_transient() => {
            // A connection the server closed must not go back to the pool.
            if let Error::Database(database) = &error {
                discard_if_closed(conn, database);
            }
            Attempt::Transient(error)
        }
        Err(error) if demands.len() > 1 => Attempt::Refused(error),
        Err(error) => match record_known_good_demand(conn) {
            Ok(()) => Attempt::Poison(error),
            Err(known_good) => {
                log::warn!(
                    "the database refuses a known-good demand too ({known_good}): \
                     treating \"{error}\" as a database failure, not the demand's"
                );
                Attempt::Transient(error)
            }
        },
    }
}

/// Records a known-good demand under a fresh id and rolls it back: Ok when the database accepts
/// demands at all.
fn record_known_good_demand(conn: &mut PgConnection) -> Result<(), Error> {
    let known_good =
        WorkDemand::new(KNOWN_GOOD_ADD_UP_TO).expect("a positive add_up_to is a valid demand");
    let outcome = conn.transaction::<(), Error, _>(|conn| {
        record_demands(conn, &[(Uuid::new_v4(), known_good)])?;
        Err(Error::Database(diesel::result::Error::RollbackTransaction))
    });
    match outcome {
        Ok(()) | Err(Error::Database(diesel::result::Error::RollbackTransaction)) => Ok(()),
        Err(error) => Err(error),
    }
}

/// The attempt under the retry policy, at `now`.
pub fn decide(attempt: Attempt, retrying: &mut Retrying, now: Instant) -> BatchOutcome {
    match attempt {
        Attempt::Recorded(recorded) => {
            retrying.after_answer();
            BatchOutcome::Recorded(recorded)
        }
        Attempt::Transient(error) => match retrying.after_failure(now) {
            Retry::After(after) => BatchOutcome::RetryLater { error, after },
            Retry::GiveUp(why) => BatchOutcome::GaveUp { error, why },
        },
        Attempt::Refused(error) => {
            retrying.after_answer();
            BatchOutcome::Split {
                reason: error.to_string(),
            }
        }
        Attempt::Poison(error) => {
            retrying.after_answer();
            BatchOutcome::Poison {
                reason: error.to_string(),
            }
        }
    }
}

/// One attempt and its outcome: what a worker does on a database thread, for tests to call.
pub fn record_batch(
    conn: &mut PgConnection,
    demands: &[(Uuid, WorkDemand)],
    retrying: &mut Retrying,
    now: Instant,
) -> BatchOutcome {
    decide(attempt_batch(conn, demands), retrying, now)
}

/// The parts of a batch still to record: the batch, then the halves of every part that was
/// split, first halves first.
#[derive(Debug)]
pub struct Parts<T> {
    stack: Vec<Vec<T>>,
}

impl<T> Parts<T> {
    pub fn new(batch: Vec<T>) -> Self {
        Parts { stack: vec![batch] }
    }

    /// The next part to record, never empty.
    pub fn next_part(&mut self) -> Option<Vec<T>> {
        while let Some(part) = self.stack.pop() {
            if !part.is_empty() {
                return Some(part);
            }
        }
        None
    }

    /// Puts back the two halves of `part`, to be recorded one after the other.
    pub fn split(&mut self, mut part: Vec<T>) {
        let second = part.split_off(part.len() / 2);
        self.stack.push(second);
        self.stack.push(part);
    }

    /// Everything not recorded yet, in no particular order.
    pub fn into_rest(self) -> impl Iterator<Item = T> {
        self.stack.into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient() -> Error {
        Error::Pool("timed out waiting for connection".to_owned())
    }

    #[test]
    fn a_failure_that_may_pass_is_retried_with_a_growing_wait() {
        let mut retrying = Retrying::new(Duration::from_secs(1), Duration::from_secs(60));
        let start = Instant::now();

        let waits: Vec<Duration> = (0..6)
            .map(|i| {
                match decide(
                    Attempt::Transient(transient()),
                    &mut retrying,
                    start + Duration::from_secs(i),
                ) {
                    BatchOutcome::RetryLater { after, .. } => after,
                    other => panic!("attempt {i}: {other:?}"),
                }
            })
            .collect();

        assert!(waits[0] <= FIRST_RETRY.mul_f64(1.2), "{waits:?}");
        assert!(waits[2] > waits[0], "the wait grows: {waits:?}");
        assert!(
            waits
                .iter()
                .all(|wait| *wait <= Duration::from_millis(1_200)),
            "bounded by retry_max: {waits:?}"
        );
    }

    #[test]
    fn failures_that_outlast_the_patience_give_the_batch_up() {
        let mut retrying = Retrying::new(Duration::from_secs(1), Duration::from_secs(10));
        let start = Instant::now();

        let first = decide(Attempt::Transient(transient()), &mut retrying, start);
        let within = decide(
            Attempt::Transient(transient()),
            &mut retrying,
            start + Duration::from_secs(9),
        );
        let past = decide(
            Attempt::Transient(transient()),
            &mut retrying,
            start + Duration::from_secs(10),
        );

        assert!(
            matches!(first, BatchOutcome::RetryLater { .. }),
            "{first:?}"
        );
        assert!(
            matches!(within, BatchOutcome::RetryLater { .. }),
            "{within:?}"
        );
        let BatchOutcome::GaveUp { why, .. } = past else {
            panic!("gave up after 10s: {past:?}");
        };
        assert_eq!(
            why,
            GiveUp::Patience {
                failing_for: Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn a_patience_of_zero_still_waits_once_before_giving_up() {
        let mut retrying = Retrying::new(Duration::from_secs(1), Duration::ZERO);
        let now = Instant::now();

        let first = decide(Attempt::Transient(transient()), &mut retrying, now);
        let second = decide(Attempt::Transient(transient()), &mut retrying, now);

        assert!(
            matches!(first, BatchOutcome::RetryLater { .. }),
            "{first:?}"
        );
        assert!(matches!(second, BatchOutcome::GaveUp { .. }), "{second:?}");
    }

    #[test]
    fn after_giving_up_the_next_batch_starts_at_the_long_wait_not_the_first() {
        let mut retrying = Retrying::new(Duration::from_secs(8), Duration::ZERO);
        let now = Instant::now();
        // Five batches given up, each after one wait.
        for _ in 0..10 {
            decide(Attempt::Transient(transient()), &mut retrying, now);
        }

        let next = decide(Attempt::Transient(transient()), &mut retrying, now);

        let BatchOutcome::RetryLater { after, .. } = next else {
            panic!("the next batch waits first: {next:?}");
        };
        assert!(after >= Duration::from_secs(1), "{after:?}");
    }

    #[test]
    fn past_the_shutdown_grace_a_failing_batch_is_given_up_at_once() {
        let mut retrying = Retrying::new(Duration::from_secs(10), Duration::from_secs(600));
        let now = Instant::now();
        retrying.stop_by(now + Duration::from_secs(2));

        let before = decide(Attempt::Transient(transient()), &mut retrying, now);
        let after = decide(
            Attempt::Transient(transient()),
            &mut retrying,
            now + Duration::from_secs(2),
        );

        let BatchOutcome::RetryLater { after: wait, .. } = before else {
            panic!("retried within the grace: {before:?}");
        };
        assert!(
            wait <= Duration::from_secs(2),
            "never waits past the grace: {wait:?}"
        );
        assert!(
            matches!(
                after,
                BatchOutcome::GaveUp {
                    why: GiveUp::Shutdown,
                    ..
                }
            ),
            "{after:?}"
        );
        assert!(retrying.is_past_stop(now + Duration::from_secs(3)));
    }

    #[test]
    fn refusals_split_the_batch_and_a_refused_single_demand_is_poison() {
        let mut retrying = Retrying::new(Duration::from_secs(1), Duration::from_secs(60));
        let now = Instant::now();
        let refusal = || Error::Input(pp_lib::InputError::MalformedDemand("refused".to_owned()));

        let split = decide(Attempt::Refused(refusal()), &mut retrying, now);
        let poison = decide(Attempt::Poison(refusal()), &mut retrying, now);

        assert!(
            matches!(&split, BatchOutcome::Split { reason } if reason.contains("refused")),
            "{split:?}"
        );
        assert!(
            matches!(&poison, BatchOutcome::Poison { reason } if reason.contains("refused")),
            "{poison:?}"
        );
    }

    #[test]
    fn splitting_isolates_the_one_refused_demand_and_keeps_every_other() {
        // The database refuses any part that holds 13.
        let mut parts = Parts::new((0..40).collect::<Vec<i32>>());
        let mut recorded = Vec::new();
        let mut poison = Vec::new();
        let mut attempts = 0;

        while let Some(part) = parts.next_part() {
            attempts += 1;
            if !part.contains(&13) {
                recorded.extend(part);
            } else if part.len() > 1 {
                parts.split(part);
            } else {
                poison.extend(part);
            }
        }

        recorded.sort_unstable();
        assert_eq!(poison, [13]);
        assert_eq!(recorded, (0..40).filter(|n| *n != 13).collect::<Vec<_>>());
        assert!(
            attempts <= 2 * 6 + 1,
            "{attempts} transactions for 40 demands"
        );
    }

    #[test]
    fn what_is_left_after_a_split_is_handed_back_whole() {
        let mut parts = Parts::new((0..10).collect::<Vec<i32>>());
        let first = parts.next_part().expect("the batch");
        parts.split(first);
        let half = parts.next_part().expect("the first half");

        let mut rest: Vec<i32> = parts.into_rest().chain(half).collect();

        rest.sort_unstable();
        assert_eq!(rest, (0..10).collect::<Vec<_>>());
    }
}

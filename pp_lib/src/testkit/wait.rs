//! Waiting in tests: [`eventually`], and nothing else.
//!
//! A test that waits for something asks a probe again and again until it answers `Ok`, with one
//! policy for every test: the first asks come quickly (a few milliseconds apart, so a fast answer
//! is seen at once), then they slow down to [`LONGEST_TICK`], and after the patience
//! ([`PATIENCE`] unless the test says otherwise) the test fails, naming what it waited for and
//! what the probe saw last. A probe that does not answer at all is not waited for past the
//! patience either. `PP_TEST_PATIENCE` (a duration, e.g. `3m`) stretches every test's patience
//! at once on a machine slower than usual; the tools' waits ([`within`]) keep theirs.
//!
//! "Nothing happened" is never shown by waiting: a test waits for a positive signal that comes
//! after the moment it cares about (a counter that moved, a later message that arrived), then
//! asserts that the thing it fears did not happen.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// How long a test waits for something, unless it says otherwise: far beyond what any step takes
/// on a quiet machine, so only a real failure (or a machine far slower than any seen) reaches it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The first pause between two asks; each pause is twice the one before, up to [`LONGEST_TICK`].
pub const FIRST_TICK: Duration = Duration::from_millis(5);

/// The longest pause between two asks.
pub const LONGEST_TICK: Duration = Duration::from_millis(100);

/// Asks `probe` until it answers `Ok`, and returns what it answered; panics after [`PATIENCE`]
/// naming `what` it waited for and the last `Err` the probe gave (what it saw instead).
pub async fn eventually<T, E: Debug>(what: &str, probe: impl AsyncFnMut() -> Result<T, E>) -> T {
    eventually_within(PATIENCE, what, probe).await
}

/// [`eventually`] with a patience of its own, for a step known to take long (a broker restart, a
/// backlog of thousands).
pub async fn eventually_within<T, E: Debug>(
    patience: Duration,
    what: &str,
    probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let patience = scaled(patience);
    match within(patience, probe).await {
        Ok(value) => value,
        Err(seen) => panic!("{}", spent(patience, what, &seen)),
    }
}

/// Asks `probe`, with the same pauses, until it answers `Ok` or `patience` is spent; then what
/// it saw last: its last `Err`, or `None` when it did not answer at all within the patience. For
/// a tool, or a test that reports a failure instead of panicking.
pub async fn within<T, E>(
    patience: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> Result<T, Option<E>> {
    let mut waiting = Waiting::new(patience);
    let mut seen = None;
    loop {
        // A probe that hangs is given what is left of the patience, and no more.
        let left = waiting.left().unwrap_or_default();
        match tokio::time::timeout(left, probe()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(this)) => seen = Some(this),
            Err(_) => return Err(seen),
        }
        match waiting.next_tick() {
            Some(tick) => tokio::time::sleep(tick).await,
            None => return Err(seen),
        }
    }
}

/// [`eventually`] for a test without an async runtime: the pauses block the thread.
pub fn eventually_blocking<T, E: Debug>(what: &str, probe: impl FnMut() -> Result<T, E>) -> T {
    eventually_blocking_within(PATIENCE, what, probe)
}

/// [`eventually_blocking`] with a patience of its own, as [`eventually_within`].
pub fn eventually_blocking_within<T, E: Debug>(
    patience: Duration,
    what: &str,
    probe: impl FnMut() -> Result<T, E>,
) -> T {
    let patience = scaled(patience);
    match within_blocking(patience, probe) {
        Ok(value) => value,
        Err(seen) => panic!("{}", spent(patience, what, &Some(seen))),
    }
}

/// [`within`] without an async runtime: the pauses block the thread. A probe that blocks is
/// not cut short (no thread can be): give it bounded calls.
pub fn within_blocking<T, E>(
    patience: Duration,
    mut probe: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut waiting = Waiting::new(patience);
    loop {
        match probe() {
            Ok(value) => return Ok(value),
            Err(seen) => match waiting.next_tick() {
                Some(tick) => std::thread::sleep(tick),
                None => return Err(seen),
            },
        }
    }
}

/// Lets `finishing` (a server stopping, a consumer draining) end, for at most `patience`, from a
/// `Drop`: where the runtime has other threads to run it on meanwhile. On a single-threaded
/// runtime, or outside any, nothing can be waited for from a `Drop`; it returns false then, and
/// when the patience ran out.
pub fn finish_in_drop(patience: Duration, finishing: impl Future) -> bool {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| {
                handle
                    .block_on(tokio::time::timeout(patience, finishing))
                    .is_ok()
            })
        }
        _ => false,
    }
}

/// `Ok` when `actual` is `expected`, else `Err(actual)` to report: the probe of a count.
pub fn exactly<T: PartialEq + Debug>(actual: T, expected: T) -> Result<T, T> {
    if actual == expected {
        Ok(actual)
    } else {
        Err(actual)
    }
}

/// `Ok` when `actual` has reached `least`, else `Err(actual)` to report.
pub fn at_least<T: PartialOrd + Debug>(actual: T, least: T) -> Result<T, T> {
    if actual >= least {
        Ok(actual)
    } else {
        Err(actual)
    }
}

/// The policy's state: when the patience ends and how long the next pause is.
#[derive(Debug)]
struct Waiting {
    started: Instant,
    patience: Duration,
    tick: Duration,
}

impl Waiting {
    fn new(patience: Duration) -> Self {
        Waiting {
            started: Instant::now(),
            patience,
            tick: FIRST_TICK,
        }
    }

    /// What is left of the patience, or `None` once it is spent.
    fn left(&self) -> Option<Duration> {
        self.patience.checked_sub(self.started.elapsed())
    }

    /// The pause before the next ask, or `None` once the patience is spent.
    fn next_tick(&mut self) -> Option<Duration> {
        let left = self.left()?;
        let tick = self.tick;
        self.tick = (self.tick * 2).min(LONGEST_TICK);
        Some(tick.min(left))
    }
}

/// What a test that waited in vain says: what the probe saw last, or that it never answered.
fn spent<E: Debug>(patience: Duration, what: &str, seen: &Option<E>) -> String {
    match seen {
        Some(seen) => format!("waited {patience:.1?} for {what}; the last probe saw {seen:?}"),
        None => format!("waited {patience:.1?} for {what}; the probe never answered"),
    }
}

/// A test's patience, stretched by `PP_TEST_PATIENCE`.
/// What load may add, at most, to a step a test expects to end promptly (a timeout firing, a
/// deadline's answer, a shutdown within its grace): on the slowest machines seen such a step
/// was late by a few seconds, never by this much. What the test rules out must take longer
/// than the step's own time plus this (a hang, a wait the test holds until it ends it, a grace
/// period per batch), so the bound tells the two apart whatever the machine's load.
pub const SLACK: Duration = Duration::from_secs(20);

/// Asserts a step that was given `allowed` (its timeout, deadline or grace) took no longer than
/// that plus [`SLACK`] (stretched by `PP_TEST_PATIENCE` like every wait): it ended when its own
/// timer said, not at some later event. `what` names the step.
pub fn assert_prompt(took: Duration, allowed: Duration, what: &str) {
    let bound = allowed + scaled(SLACK);
    assert!(
        took <= bound,
        "{what} took {took:?}: more than its {allowed:?} and the slack for load ({bound:?} in all)"
    );
}

fn scaled(patience: Duration) -> Duration {
    patience.mul_f64(patience_scale())
}

/// `PP_TEST_PATIENCE` over [`PATIENCE`]: how much longer than usual every wait may be (1 when it
/// is unset; a value that is not a duration fails the test that reads it).
fn patience_scale() -> f64 {
    match std::env::var("PP_TEST_PATIENCE") {
        Err(_) => 1.0,
        Ok(text) => {
            let patience = crate::config::parse_duration(&text)
                .unwrap_or_else(|error| panic!("PP_TEST_PATIENCE: {error}"));
            (patience.as_secs_f64() / PATIENCE.as_secs_f64()).max(1.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_start_short_and_double_up_to_the_longest_tick() {
        let mut waiting = Waiting::new(Duration::from_secs(3_600));
        let ticks: Vec<Option<Duration>> = (0..7).map(|_| waiting.next_tick()).collect();
        assert_eq!(
            ticks,
            [5, 10, 20, 40, 80, 100, 100].map(|ms| Some(Duration::from_millis(ms)))
        );
    }

    #[test]
    fn a_spent_patience_gives_the_last_answer_and_names_what_was_awaited() {
        let mut asked = 0;
        let seen = within_blocking(Duration::ZERO, || {
            asked += 1;
            exactly(asked, 2)
        });
        assert_eq!(seen, Err(1));
        assert!(
            spent(PATIENCE, "the answer", &Some(41))
                .ends_with("for the answer; the last probe saw 41")
        );
        assert!(spent::<u8>(PATIENCE, "the answer", &None).ends_with("the probe never answered"));
    }

    #[test]
    fn a_probe_is_asked_until_it_answers() {
        let mut asked = 0;
        let answer = eventually_blocking("the third ask", || {
            asked += 1;
            at_least(asked, 3)
        });
        assert_eq!((answer, asked), (3, 3));
        assert_eq!(exactly(2, 3), Err(2));
    }

    #[tokio::test]
    async fn a_probe_that_never_answers_is_given_the_patience_and_no_more() {
        let started = Instant::now();
        let hung = within(Duration::from_millis(50), async || {
            std::future::pending::<Result<(), u8>>().await
        })
        .await;

        assert_eq!(hung, Err(None));
        assert_prompt(
            started.elapsed(),
            Duration::from_millis(50),
            "a wait for a probe that hangs",
        );
    }

    #[tokio::test]
    async fn an_async_probe_is_asked_until_it_answers() {
        let mut asked = 0;
        let answer = eventually("the second ask", async || {
            asked += 1;
            exactly(asked, 2)
        })
        .await;
        assert_eq!(answer, 2);
    }
}

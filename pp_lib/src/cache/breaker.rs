//! A circuit breaker for calls to a dependency we can live without (Redis).
//!
//! Closed, every call goes through. After [`Breaker::FAILURES_TO_OPEN`] failures in a row it
//! opens: calls are skipped (the caller falls back at once) for a pause. Then one call is let
//! through as a probe: its success closes the breaker, its failure opens it for another pause.
//! The state machine is pure (the caller passes the time), so tests drive it without sleeping;
//! the transitions it returns are what the caller logs, once per outage.

use std::time::{Duration, Instant};

/// What a call's outcome changed, for the caller to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The dependency just became unavailable: calls are skipped from now on.
    Opened,
    /// It answers again, after an outage that lasted this long.
    Closed { outage: Duration },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        since: Instant,
        until: Instant,
    },
    /// The pause is over and one probe call is out.
    Probing {
        since: Instant,
    },
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Breaker {
    state: State,
    pause: Duration,
}

impl Breaker {
    /// Consecutive failures that open the breaker.
    pub const FAILURES_TO_OPEN: u32 = 3;

    /// A closed breaker that, once open, skips calls for `pause` before probing.
    pub fn new(pause: Duration) -> Self {
        Breaker {
            state: State::Closed { failures: 0 },
            pause,
        }
    }

    /// Whether a call may go through now. While open, no; when the pause is over, yes for one
    /// caller (the probe), and no for the others until the probe has answered.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed { .. } => true,
            State::Open { since, until } if now >= until => {
                self.state = State::Probing { since };
                true
            }
            State::Open { .. } | State::Probing { .. } => false,
        }
    }

    /// Records a call that succeeded.
    pub fn succeeded(&mut self, now: Instant) -> Option<Transition> {
        let transition = match self.state {
            State::Closed { .. } => None,
            State::Open { since, .. } | State::Probing { since } => Some(Transition::Closed {
                outage: now.saturating_duration_since(since),
            }),
        };
        self.state = State::Closed { failures: 0 };
        transition
    }

    /// Records a call that failed (an error or a timeout).
    pub fn failed(&mut self, now: Instant) -> Option<Transition> {
        let until = now.checked_add(self.pause).unwrap_or(now);
        match self.state {
            State::Closed { failures } if failures + 1 >= Self::FAILURES_TO_OPEN => {
                self.state = State::Open { since: now, until };
                Some(Transition::Opened)
            }
            State::Closed { failures } => {
                self.state = State::Closed {
                    failures: failures + 1,
                };
                None
            }
            State::Open { since, .. } | State::Probing { since } => {
                self.state = State::Open { since, until };
                None
            }
        }
    }

    /// Whether calls are being skipped (open, or waiting for its probe).
    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAUSE: Duration = Duration::from_secs(5);

    #[test]
    fn opens_after_failures_in_a_row_and_only_then() {
        let start = Instant::now();
        let mut breaker = Breaker::new(PAUSE);
        assert_eq!(breaker.failed(start), None);
        assert_eq!(breaker.succeeded(start), None, "a success resets the count");
        for _ in 1..Breaker::FAILURES_TO_OPEN {
            assert_eq!(breaker.failed(start), None);
            assert!(breaker.allow(start));
        }
        assert_eq!(breaker.failed(start), Some(Transition::Opened));
        assert!(breaker.is_open());
        assert!(!breaker.allow(start + PAUSE / 2), "open: calls are skipped");
    }

    #[test]
    fn after_the_pause_one_probe_goes_through_and_decides() {
        let start = Instant::now();
        let mut breaker = Breaker::new(PAUSE);
        for _ in 0..Breaker::FAILURES_TO_OPEN {
            breaker.failed(start);
        }
        let later = start + PAUSE;
        assert!(breaker.allow(later), "the probe");
        assert!(!breaker.allow(later), "nobody else while the probe is out");
        assert_eq!(
            breaker.failed(later),
            None,
            "still the same outage: nothing to log"
        );
        assert!(!breaker.allow(later + PAUSE / 2));
        let much_later = later + PAUSE;
        assert!(breaker.allow(much_later));
        assert_eq!(
            breaker.succeeded(much_later),
            Some(Transition::Closed {
                outage: much_later - start
            })
        );
        assert!(!breaker.is_open());
        assert!(breaker.allow(much_later));
    }

    #[test]
    fn an_immense_pause_does_not_overflow() {
        let start = Instant::now();
        let mut breaker = Breaker::new(Duration::MAX);
        for _ in 0..Breaker::FAILURES_TO_OPEN {
            breaker.failed(start);
        }
        assert!(breaker.is_open());
    }
}

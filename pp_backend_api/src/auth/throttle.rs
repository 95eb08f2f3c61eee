//! Failed attempts, throttled: a client address that keeps presenting credentials that
//! authenticate no one, and an account name that keeps being tried with the wrong password, get
//! 429 (with `Retry-After`) until the rate allows another attempt. Guessing a token (160 random
//! bits) or a password is so slowed to `PP_AUTH_FAILURES`.
//!
//! A generic cell rate algorithm, like the rate limits, but in memory: the count of failures is
//! per API process (each replica allows its own share), and bounded (the oldest clients are
//! forgotten past [`MAX_TRACKED`]). Successful attempts cost nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pp_lib::config::Rate;

/// Clients (addresses, names) tracked at most; past it, those whose failures have expired are
/// forgotten, then the rest are.
pub const MAX_TRACKED: usize = 100_000;

/// Failures allowed at once before the rate applies.
const BURST: f64 = 5.0;

/// Failed attempts per client.
#[derive(Debug)]
pub struct Throttle {
    /// Time between two failures the rate allows.
    interval: Duration,
    /// How far ahead of now a client's schedule may run before it is refused.
    tolerance: Duration,
    /// Each client's theoretical arrival time: when its next failure is due.
    due: Mutex<HashMap<String, Instant>>,
}

impl Throttle {
    /// Failures at `rate`, in bursts of a few.
    pub fn new(rate: Rate) -> Self {
        let interval = Duration::from_secs_f64(1.0 / rate.per_second());
        Throttle {
            interval,
            tolerance: interval.mul_f64(BURST - 1.0),
            due: Mutex::new(HashMap::new()),
        }
    }

    /// How long `client` must wait before its next attempt, if it must: what an attempt asks
    /// before it is made (an attempt refused here is no failure).
    pub fn wait(&self, client: &str, now: Instant) -> Option<Duration> {
        let due = self.lock();
        let ahead = due.get(client)?.checked_duration_since(now)?;
        ahead
            .checked_sub(self.tolerance)
            .filter(|wait| !wait.is_zero())
    }

    /// Counts a failure of `client`'s.
    pub fn failed(&self, client: &str, now: Instant) {
        let mut due = self.lock();
        if due.len() >= MAX_TRACKED && !due.contains_key(client) {
            due.retain(|_, at| *at > now);
            if due.len() >= MAX_TRACKED {
                due.clear();
            }
        }
        let next = due
            .get(client)
            .copied()
            .filter(|at| *at > now)
            .unwrap_or(now);
        due.insert(client.to_owned(), next + self.interval);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.due
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_failures_is_allowed_then_the_rate_applies() {
        let throttle = Throttle::new("1/s".parse().expect("a rate"));
        let start = Instant::now();
        for attempt in 0..5 {
            assert_eq!(
                throttle.wait("ip:192.0.2.1", start),
                None,
                "attempt {attempt}"
            );
            throttle.failed("ip:192.0.2.1", start);
        }
        let wait = throttle.wait("ip:192.0.2.1", start).expect("throttled");
        assert_eq!(wait, Duration::from_secs(1));
        assert_eq!(throttle.wait("ip:192.0.2.2", start), None, "others are not");
        let later = start + Duration::from_secs(1);
        assert_eq!(
            throttle.wait("ip:192.0.2.1", later),
            None,
            "a second later, one more"
        );
    }

    #[test]
    fn tracking_stays_bounded() {
        let throttle = Throttle::new("1/d".parse().expect("a rate"));
        let now = Instant::now();
        for client in 0..MAX_TRACKED + 10 {
            throttle.failed(&format!("ip:{client}"), now);
        }
        assert!(throttle.lock().len() <= MAX_TRACKED);
    }
}

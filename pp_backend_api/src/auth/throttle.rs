//! Failed attempts, throttled: a client address that keeps presenting credentials that
//! authenticate no one, and an account name that keeps being tried with the wrong password, get
//! 429 (with `Retry-After`) until the rate allows another attempt. Guessing a token (160 random
//! bits) or a password is so slowed to `PP_AUTH_FAILURES`.
//!
//! A generic cell rate algorithm, like the rate limits, but in memory: the count of failures is
//! per API process (each replica allows its own share), and bounded (past [`MAX_TRACKED`], the
//! half of the clients least throttled are forgotten, so filling the table with new clients
//! frees no one who is throttled hard). Successful attempts cost nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pp_lib::config::Rate;

/// Clients (addresses, names) tracked at most; past it, those whose failures have expired are
/// forgotten, then the half least throttled.
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
        Throttle::scaled(rate, 1.0)
    }

    /// Failures at `factor` times `rate`, in bursts `factor` times as large.
    pub fn scaled(rate: Rate, factor: f64) -> Self {
        let interval = Duration::from_secs_f64(1.0 / (rate.per_second() * factor));
        Throttle {
            interval,
            tolerance: interval.mul_f64(BURST * factor - 1.0),
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
                let mut dues: Vec<Instant> = due.values().copied().collect();
                let middle = dues.len() / 2;
                let (_, median, _) = dues.select_nth_unstable(middle);
                let median = *median;
                due.retain(|_, at| *at > median);
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
    fn tracking_stays_bounded_and_new_clients_free_no_one_throttled_hard() {
        let throttle = Throttle::new("1/d".parse().expect("a rate"));
        let now = Instant::now();
        for _ in 0..6 {
            throttle.failed("ip:target", now);
        }
        assert!(throttle.wait("ip:target", now).is_some());
        for client in 0..MAX_TRACKED + 10 {
            throttle.failed(&format!("ip:{client}"), now);
        }
        assert!(throttle.lock().len() <= MAX_TRACKED);
        assert!(
            throttle.wait("ip:target", now).is_some(),
            "still throttled after the table filled"
        );
    }

    #[test]
    fn a_scaled_throttle_allows_that_many_times_more() {
        let throttle = Throttle::scaled("1/s".parse().expect("a rate"), 5.0);
        let start = Instant::now();
        for attempt in 0..25 {
            assert_eq!(throttle.wait("name:ada", start), None, "attempt {attempt}");
            throttle.failed("name:ada", start);
        }
        assert_eq!(
            throttle.wait("name:ada", start),
            Some(Duration::from_millis(200))
        );
    }
}

//! An outage of something a process depends on (the database, the broker), logged once when it
//! starts and once when it ends, however many attempts fail in between.
//!
//! ```text
//! WARN  sweeper: the database is down: connection refused; trying again next sweep
//! INFO  sweeper: the database is back after 12.3s
//! ```
//!
//! The attempts in between are logged at debug level only, so a long outage does not flood the
//! log. The lines carry the target of the code that owns the outage, so `RUST_LOG` filters them
//! as before.

use std::fmt;
use std::time::{Duration, Instant};

/// What a call to [`Outage::failed`] or [`Outage::recovered`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The first failure after a success: the outage starts (logged as a warning).
    Started,
    /// Another failure of the same outage (logged at debug level).
    StillDown,
    /// The first success after failures: the outage ended, after this long (logged as info).
    Ended { after: Duration },
    /// A success while nothing was down: nothing to log.
    StillUp,
}

/// One dependency's state: up, or down since an instant.
#[derive(Debug, Clone)]
pub struct Outage {
    /// The log target the lines are written under (the owner's `module_path!()`).
    target: &'static str,
    /// What goes down, as the log names it: `sweeper: the database`, `RabbitMQ at amqp://…`.
    subject: String,
    /// What the owner does meanwhile, closing the first line: `trying again next sweep`.
    meanwhile: &'static str,
    down_since: Option<Instant>,
}

impl Outage {
    /// An outage tracker for `subject`, up to begin with, logging under `target`.
    pub fn new(target: &'static str, subject: impl Into<String>, meanwhile: &'static str) -> Self {
        Outage {
            target,
            subject: subject.into(),
            meanwhile,
            down_since: None,
        }
    }

    /// True while failures have not been followed by a success.
    pub fn is_down(&self) -> bool {
        self.down_since.is_some()
    }

    /// Records a failed attempt: the first one starts the outage and is logged as a warning with
    /// its reason, the others only at debug level.
    pub fn failed(&mut self, reason: impl fmt::Display) -> Transition {
        if self.down_since.is_some() {
            log::debug!(target: self.target, "{} still down: {reason}", self.subject);
            return Transition::StillDown;
        }
        log::warn!(
            target: self.target,
            "{} is down: {reason}; {}",
            self.subject,
            self.meanwhile
        );
        self.down_since = Some(Instant::now());
        Transition::Started
    }

    /// Records a success: the end of an outage, if there was one, is logged with its length.
    pub fn recovered(&mut self) -> Transition {
        match self.down_since.take() {
            Some(since) => {
                let after = since.elapsed();
                log::info!(
                    target: self.target,
                    "{} is back after {:.1}s",
                    self.subject,
                    after.as_secs_f64()
                );
                Transition::Ended { after }
            }
            None => Transition::StillUp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outage() -> Outage {
        Outage::new(module_path!(), "the database", "retrying")
    }

    #[test]
    fn a_dependency_starts_up() {
        let mut outage = outage();
        assert!(!outage.is_down());
        assert_eq!(outage.recovered(), Transition::StillUp);
    }

    #[test]
    fn the_first_failure_starts_an_outage_and_the_next_ones_continue_it() {
        let mut outage = outage();
        assert_eq!(outage.failed("refused"), Transition::Started);
        assert!(outage.is_down());
        assert_eq!(outage.failed("refused again"), Transition::StillDown);
        assert_eq!(outage.failed("timed out"), Transition::StillDown);
        assert!(outage.is_down());
    }

    #[test]
    fn the_first_success_ends_the_outage_with_its_length() {
        let mut outage = outage();
        outage.failed("refused");
        std::thread::sleep(Duration::from_millis(20));
        let Transition::Ended { after } = outage.recovered() else {
            panic!("the outage ends");
        };
        assert!(after >= Duration::from_millis(20), "{after:?}");
        assert!(!outage.is_down());
        assert_eq!(outage.recovered(), Transition::StillUp, "it ended once");
    }

    #[test]
    fn a_new_failure_after_the_end_is_a_new_outage() {
        let mut outage = outage();
        outage.failed("refused");
        outage.recovered();
        assert_eq!(outage.failed("refused"), Transition::Started);
    }
}

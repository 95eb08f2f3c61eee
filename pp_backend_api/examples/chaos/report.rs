//! The report a chaos run prints: a table of what each client sent and what came of it, what is
//! recorded wrong, what was dead-lettered, the longest stall, and the verdict.

use std::fmt;
use std::time::Duration;

use crate::audit::Audit;
use crate::load::{DemandAnswers, KeyedAnswers};
use crate::progress::Stall;

/// Everything the report says.
pub struct Report<'a> {
    pub audit: &'a Audit,
    /// Demands the producer was asked to publish.
    pub producer_count: u64,
    pub demands: &'a DemandAnswers,
    pub keyed: &'a KeyedAnswers,
    /// Deliveries the consumers found already recorded, and acknowledged without writing.
    pub absorbed: u64,
    /// Demands the producer published again, their connection lost before the confirm.
    pub republished: u64,
    pub dead_lettered: u32,
    pub poison_sent: usize,
    /// The longest stretch without progress while work waited.
    pub stall: Stall,
    /// The longest stall that passes, if stalls are judged.
    pub stall_limit: Option<Duration>,
    /// What each fault did, in order.
    pub faults: Vec<String>,
    /// Things the operator should look at (an unclean exit, a system not drained).
    pub notes: Vec<String>,
}

impl Report<'_> {
    /// Nothing acknowledged was lost or duplicated, everything recorded is right, and no stall
    /// went past the limit.
    pub fn passed(&self) -> bool {
        self.audit.lost() == 0
            && self.audit.duplicated() == 0
            && self.audit.wrong == 0
            && self.stall_within_limit()
    }

    fn stall_within_limit(&self) -> bool {
        self.stall_limit
            .is_none_or(|limit| self.stall.counted <= limit)
    }

    /// Passed, and the dead-letter queue holds exactly the poison sent: nothing to look into.
    pub fn clean(&self) -> bool {
        self.passed() && self.dead_lettered as usize == self.poison_sent
    }

    fn table(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (demands, keyed) = (self.demands, self.keyed);
        writeln!(
            f,
            "{:<40} {:>10} {:>14} {:>15} {:>8}",
            "", "producer", "HTTP demands", "keyed creates", "total"
        )?;
        let sent_demands =
            demands.accepted.len() + demands.unanswered.len() + demands.refused.len();
        let sent_keyed = keyed.created.len() + keyed.unanswered.len();
        writeln!(
            f,
            "{:<40} {:>10} {sent_demands:>14} {sent_keyed:>15}",
            "sent", self.producer_count
        )?;
        writeln!(
            f,
            "{:<40} {:>10} {:>14} {:>15}",
            "  no answer (API down or cut) / retried",
            "-",
            demands.unanswered.len(),
            keyed.retries
        )?;
        writeln!(
            f,
            "{:<40} {:>10} {:>14} {:>15}",
            "  refused (an error status) / gave up",
            "-",
            demands.refused.len(),
            keyed.unanswered.len()
        )?;
        let (p, d, k) = (self.audit.producer, self.audit.demands, self.audit.keyed);
        let rows = [
            (
                "acknowledged",
                p.acknowledged,
                d.acknowledged,
                k.acknowledged,
            ),
            ("recorded", p.recorded(), d.recorded(), k.recorded()),
            ("lost", p.lost, d.lost, k.lost),
            (
                "duplicated effects (recorded twice)",
                p.duplicated,
                d.duplicated,
                k.duplicated,
            ),
            (
                "recovered (no answer, yet recorded)",
                p.recovered,
                d.recovered,
                k.recovered,
            ),
        ];
        for (name, a, b, c) in rows {
            writeln!(f, "{name:<40} {a:>10} {b:>14} {c:>15} {:>8}", a + b + c)?;
        }
        Ok(())
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        self.table(f)?;
        writeln!(
            f,
            "wrong (result, events, pending, refused yet recorded): {}",
            self.audit.wrong
        )?;
        for line in self.audit.wrong_details.iter().chain(&self.audit.examples) {
            writeln!(f, "  {line}")?;
        }
        writeln!(
            f,
            "duplicate deliveries absorbed (already recorded, acknowledged): {}",
            self.absorbed
        )?;
        writeln!(
            f,
            "published again after a lost connection (producer): {}",
            self.republished
        )?;
        writeln!(
            f,
            "dead-lettered: {} (poison messages sent: {})",
            self.dead_lettered, self.poison_sent
        )?;
        let stall = self.stall;
        write!(
            f,
            "longest stall: {:.1} s of {} waiting (from {:.1} s into the run)",
            stall.length.as_secs_f64(),
            stall.path,
            stall.from.as_secs_f64()
        )?;
        if self.stall.counted < self.stall.length {
            write!(
                f,
                ", {:.1} s of it counted (a frozen node's first {} s are not: the cluster \
                 declares it down only then)",
                self.stall.counted.as_secs_f64(),
                pp_lib::testkit::broker_node::NET_TICKTIME_SECONDS
            )?;
        }
        match self.stall_limit {
            Some(limit) if !self.stall_within_limit() => {
                writeln!(f, ": over the limit of {} s", limit.as_secs())?
            }
            Some(limit) => writeln!(f, ", within the limit of {} s", limit.as_secs())?,
            None => writeln!(f)?,
        }
        writeln!(f, "faults: {}", self.faults.join("; "))?;
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        let verdict = match (self.passed(), self.stall_limit) {
            (false, _) => "FAILED".to_owned(),
            (true, None) => {
                "nothing acknowledged was lost or duplicated, and everything recorded is right"
                    .to_owned()
            }
            (true, Some(limit)) => format!(
                "nothing acknowledged was lost or duplicated, everything recorded is right, \
                 and no stall lasted over {} s",
                limit.as_secs()
            ),
        };
        writeln!(f, "verdict: {verdict}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Path;

    fn report<'a>(audit: &'a Audit, answers: &'a (DemandAnswers, KeyedAnswers)) -> Report<'a> {
        Report {
            audit,
            producer_count: 10,
            demands: &answers.0,
            keyed: &answers.1,
            absorbed: 7,
            republished: 2,
            dead_lettered: 4,
            poison_sent: 4,
            stall: Stall {
                length: Duration::from_millis(1_500),
                counted: Duration::from_millis(1_500),
                from: Duration::from_secs(12),
                path: Path::Demands,
            },
            stall_limit: None,
            faults: vec!["RabbitMQ restarted".to_owned()],
            notes: vec!["the producer exited with Some(1)".to_owned()],
        }
    }

    #[test]
    fn a_run_with_something_lost_fails_and_says_so() {
        let answers = (DemandAnswers::default(), KeyedAnswers::default());
        let mut audit = Audit::default();
        assert!(report(&audit, &answers).clean());

        audit.demands.lost = 1;
        audit.examples.push("HTTP demand x lost".to_owned());
        let failed = report(&audit, &answers);

        assert!(!failed.passed());
        let text = failed.to_string();
        assert!(text.ends_with("verdict: FAILED\n"), "{text}");
        assert!(text.contains("  HTTP demand x lost\n"), "{text}");
        assert!(
            text.contains(
                "longest stall: 1.5 s of demands through the broker waiting (from 12.0 s"
            )
        );
        assert!(text.contains("note: the producer exited with Some(1)\n"));
        assert!(
            text.contains("duplicate deliveries absorbed (already recorded, acknowledged): 7\n")
        );
    }

    #[test]
    fn a_stall_over_the_limit_fails_the_run_and_is_named() {
        let answers = (DemandAnswers::default(), KeyedAnswers::default());
        let audit = Audit::default();
        let mut judged = report(&audit, &answers);
        judged.stall_limit = Some(Duration::from_secs(10));
        assert!(judged.passed());
        assert!(judged.to_string().contains("no stall lasted over 10 s"));

        judged.stall.length = Duration::from_millis(20_500);
        judged.stall.counted = Duration::from_millis(10_000);
        assert!(judged.passed(), "what is counted is judged");
        assert!(judged.to_string().contains(
            "20.5 s of demands through the broker waiting (from 12.0 s into the run), 10.0 s of it counted"
        ));

        judged.stall.length = Duration::from_millis(10_500);
        judged.stall.counted = Duration::from_millis(10_500);

        assert!(!judged.passed());
        let text = judged.to_string();
        assert!(text.contains("10.5 s of demands through the broker waiting (from 12.0 s into the run): over the limit of 10 s\n"), "{text}");
        assert!(text.ends_with("verdict: FAILED\n"), "{text}");
    }
}

//! The report a chaos run prints: a table of what each client sent and what came of it, what is
//! recorded wrong, what was dead-lettered, the longest stall, and the verdict.

use std::fmt;
use std::time::Duration;

use crate::audit::Audit;
use crate::load::{DemandAnswers, KeyedAnswers};

/// Everything the report says.
pub struct Report<'a> {
    pub audit: &'a Audit,
    /// Demands the producer was asked to publish.
    pub producer_count: u64,
    pub demands: &'a DemandAnswers,
    pub keyed: &'a KeyedAnswers,
    pub dead_lettered: u32,
    pub poison_sent: usize,
    /// The longest stretch without progress, and when it began.
    pub stall: (Duration, Duration),
    pub faults: String,
    /// Things the operator should look at (an unclean exit, a system not drained).
    pub notes: Vec<String>,
}

impl Report<'_> {
    /// Nothing acknowledged was lost or duplicated, and everything recorded is right.
    pub fn passed(&self) -> bool {
        self.audit.lost() == 0 && self.audit.duplicated() == 0 && self.audit.wrong == 0
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
            ("lost", p.lost, d.lost, k.lost),
            ("duplicated", p.duplicated, d.duplicated, k.duplicated),
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
            "dead-lettered: {} (poison messages sent: {})",
            self.dead_lettered, self.poison_sent
        )?;
        let (stall, from) = self.stall;
        writeln!(
            f,
            "longest stall: {:.1} s with work outstanding (from {:.1} s into the run)",
            stall.as_secs_f64(),
            from.as_secs_f64()
        )?;
        writeln!(f, "faults: {}", self.faults)?;
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        let verdict = if self.passed() {
            "nothing acknowledged was lost or duplicated, and everything recorded is right"
        } else {
            "FAILED"
        };
        writeln!(f, "verdict: {verdict}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report<'a>(audit: &'a Audit, answers: &'a (DemandAnswers, KeyedAnswers)) -> Report<'a> {
        Report {
            audit,
            producer_count: 10,
            demands: &answers.0,
            keyed: &answers.1,
            dead_lettered: 4,
            poison_sent: 4,
            stall: (Duration::from_millis(1_500), Duration::from_secs(12)),
            faults: "RabbitMQ restarted".to_owned(),
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
        assert!(text.contains("longest stall: 1.5 s with work outstanding (from 12.0 s"));
        assert!(text.contains("note: the producer exited with Some(1)\n"));
    }
}

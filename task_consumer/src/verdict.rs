//! The first step of consuming, pure: what a delivery is. Either a demand to record, under the
//! id its redeliveries share, or poison — a message that can never succeed, with the reason its
//! dead letter will carry. No I/O, so tests call it with bytes.

use pp_lib::amqp::DemandId;
use pp_lib::demand::WorkDemand;

/// What a delivery turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A valid demand, and the id it is recorded under (see [`DemandId`]).
    Demand { id: DemandId, demand: WorkDemand },
    /// Not a valid demand (not JSON, no or a bad `add_up_to`): retrying cannot help.
    Poison { reason: String },
}

/// Judges a delivery by its body and its `message_id` property.
pub fn judge(body: &[u8], message_id: Option<&str>) -> Verdict {
    match WorkDemand::from_json(body) {
        Ok(demand) => Verdict::Demand {
            id: DemandId::of(message_id),
            demand,
        },
        Err(error) => Verdict::Poison {
            reason: error.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn a_valid_body_is_a_demand_under_its_message_id() {
        let id = Uuid::new_v4();

        let verdict = judge(br#"{"add_up_to": 4, "done": false}"#, Some(&id.to_string()));

        assert_eq!(
            verdict,
            Verdict::Demand {
                id: DemandId::Given(id),
                demand: WorkDemand::new(4).expect("4 is valid"),
            }
        );
    }

    #[test]
    fn a_demand_without_message_id_is_still_a_demand() {
        let verdict = judge(br#"{"add_up_to": 4}"#, None);

        assert!(
            matches!(
                verdict,
                Verdict::Demand {
                    id: DemandId::Fresh(_),
                    ..
                }
            ),
            "{verdict:?}"
        );
    }

    #[test]
    fn bodies_that_can_never_succeed_are_poison_with_the_reason() {
        let cases: [(&[u8], &str); 5] = [
            (b"not json", "malformed work demand"),
            (b"", "malformed work demand"),
            (br#"{"done": false}"#, "missing field `add_up_to`"),
            (
                br#"{"add_up_to": -1}"#,
                "add_up_to must be zero or more, got -1",
            ),
            (br#"{"add_up_to": 3000000000}"#, "add_up_to must be at most"),
        ];
        for (body, reason) in cases {
            let verdict = judge(body, Some("m-1"));
            let Verdict::Poison { reason: given } = &verdict else {
                panic!(
                    "{:?} should be poison, got {verdict:?}",
                    String::from_utf8_lossy(body)
                );
            };
            assert!(
                given.contains(reason),
                "{:?}: expected {reason:?} in {given:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

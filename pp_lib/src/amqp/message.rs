//! The work-demand message: its properties on the way out, its identity on the way in.

use lapin::BasicProperties;
use uuid::Uuid;

/// Properties of every demand published: JSON, persistent (delivery mode 2), the demand's id as
/// `message_id`, the time of publishing as `timestamp` (seconds since the epoch).
pub fn demand_properties(id: Uuid) -> BasicProperties {
    let timestamp = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default();
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(PERSISTENT)
        .with_message_id(id.to_string().as_str().into())
        .with_timestamp(timestamp)
}

/// AMQP delivery mode of a message the broker writes to disk.
pub const PERSISTENT: u8 = 2;

/// Namespace of the ids derived from `message_id`s that are not UUIDs.
const MESSAGE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5d0f_6d43_9a43_4c4e_8a1e_2f4e_8c1b_7a91);

/// Where the id a demand is recorded under (the work's `demand_id`) came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemandId {
    /// The message's `message_id` is a UUID: it is the id.
    Given(Uuid),
    /// The `message_id` is some other text: the id is a UUID v5 of it, the same on every
    /// redelivery, so deduplication still holds.
    Derived(Uuid),
    /// The message has no `message_id`: it gets a fresh id. Such a message is still processed,
    /// but a redelivery of it cannot be recognised and may create a second work.
    Fresh(Uuid),
}

impl DemandId {
    /// The id of a message with this `message_id` property.
    pub fn of(message_id: Option<&str>) -> DemandId {
        match message_id.map(str::trim) {
            None | Some("") => DemandId::Fresh(Uuid::new_v4()),
            Some(text) => match Uuid::parse_str(text) {
                Ok(id) => DemandId::Given(id),
                Err(_) => DemandId::Derived(Uuid::new_v5(&MESSAGE_ID_NAMESPACE, text.as_bytes())),
            },
        }
    }

    pub fn id(self) -> Uuid {
        match self {
            DemandId::Given(id) | DemandId::Derived(id) | DemandId::Fresh(id) => id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_those_of_a_persistent_json_demand() {
        let id = Uuid::new_v4();
        let properties = demand_properties(id);
        assert_eq!(properties.delivery_mode(), &Some(2));
        assert_eq!(
            properties.content_type().as_ref().map(|t| t.as_str()),
            Some("application/json")
        );
        assert_eq!(
            properties
                .message_id()
                .as_ref()
                .map(|t| t.as_str().to_owned()),
            Some(id.to_string())
        );
        assert!(properties.timestamp().is_some_and(|t| t > 1_600_000_000));
    }

    #[test]
    fn ids_are_taken_derived_or_made() {
        let id = Uuid::new_v4();
        assert_eq!(DemandId::of(Some(&id.to_string())), DemandId::Given(id));
        let derived = DemandId::of(Some("order-42"));
        assert!(matches!(derived, DemandId::Derived(_)));
        assert_eq!(derived, DemandId::of(Some("order-42")), "stable");
        assert_ne!(derived, DemandId::of(Some("order-43")));
        assert!(matches!(DemandId::of(None), DemandId::Fresh(_)));
        assert!(matches!(DemandId::of(Some("  ")), DemandId::Fresh(_)));
        assert_ne!(DemandId::of(None), DemandId::of(None));
    }
}

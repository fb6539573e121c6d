//! Operational webhooks: Herald's own events, pushed to the operator through Herald's own
//! engine (as messages of one reserved application, whose endpoints are the operator's).
//!
//! Who emits what, each in the transaction of the change it reports (so exactly once per
//! occurrence):
//!
//! * endpoint events (`endpoint.created`, `.updated`, `.deleted`, `.disabled`, `.enabled`):
//!   triggers on `herald.endpoint` (migration `20261202000001`), whoever changed the row;
//! * delivery events (`message.attempt.failing`, `.exhausted`, `.recovered`): decided
//!   here ([`alert`]) for each outcome, written by the statement that records it;
//! * circuit events (`circuit.opened`, `.closed`, Herald's own): decided here from a
//!   breaker's transition ([`alert::circuit`]), written by the recorder.
//!
//! The payloads' shapes are Svix's (`EndpointDisabledEvent`, `MessageAttemptExhaustedEvent`,
//! ...) with a few more fields; the README lists them.

pub mod alert;

/// Every operational event type; an operational endpoint subscribes to some of these.
/// (Serialized as its [`name`](EventType::name); a test holds the two equal.)
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub enum EventType {
    #[serde(rename = "endpoint.created")]
    EndpointCreated,
    #[serde(rename = "endpoint.updated")]
    EndpointUpdated,
    #[serde(rename = "endpoint.deleted")]
    EndpointDeleted,
    #[serde(rename = "endpoint.disabled")]
    EndpointDisabled,
    #[serde(rename = "endpoint.enabled")]
    EndpointEnabled,
    #[serde(rename = "message.attempt.failing")]
    AttemptFailing,
    #[serde(rename = "message.attempt.exhausted")]
    AttemptExhausted,
    #[serde(rename = "message.attempt.recovered")]
    AttemptRecovered,
    /// Herald's: an instance's breaker for an endpoint opened.
    #[serde(rename = "circuit.opened")]
    CircuitOpened,
    /// Herald's: it closed again.
    #[serde(rename = "circuit.closed")]
    CircuitClosed,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::EndpointCreated,
        EventType::EndpointUpdated,
        EventType::EndpointDeleted,
        EventType::EndpointDisabled,
        EventType::EndpointEnabled,
        EventType::AttemptFailing,
        EventType::AttemptExhausted,
        EventType::AttemptRecovered,
        EventType::CircuitOpened,
        EventType::CircuitClosed,
    ];

    /// The event's `type`, as receivers see it (and as endpoints subscribe to it).
    pub fn name(self) -> &'static str {
        match self {
            EventType::EndpointCreated => "endpoint.created",
            EventType::EndpointUpdated => "endpoint.updated",
            EventType::EndpointDeleted => "endpoint.deleted",
            EventType::EndpointDisabled => "endpoint.disabled",
            EventType::EndpointEnabled => "endpoint.enabled",
            EventType::AttemptFailing => "message.attempt.failing",
            EventType::AttemptExhausted => "message.attempt.exhausted",
            EventType::AttemptRecovered => "message.attempt.recovered",
            EventType::CircuitOpened => "circuit.opened",
            EventType::CircuitClosed => "circuit.closed",
        }
    }

    pub fn from_name(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_is_found_by_its_name_and_no_other() {
        for t in EventType::ALL {
            assert_eq!(EventType::from_name(t.name()), Some(t));
        }
        assert_eq!(EventType::from_name("endpoint.Created"), None);
        assert_eq!(EventType::from_name("message.attempt.log"), None);
        let mut names: Vec<_> = EventType::ALL.iter().map(|t| t.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), EventType::ALL.len());
    }

    #[test]
    fn serde_names_are_the_event_names() {
        for t in EventType::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), t.name());
            let back: EventType = serde_json::from_value(t.name().into()).unwrap();
            assert_eq!(back, t);
        }
    }
}

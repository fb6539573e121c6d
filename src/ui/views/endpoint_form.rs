//! The endpoint form (create and edit): its fields as a browser posts them, and their
//! translation into the API's endpoint fields, so that the same checks apply.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::api::{
    endpoint::{EndpointFields, EndpointOut},
    error::ApiError,
    validate::Problems,
};

/// What the form posts. Event types are checkboxes (none checked: every event type);
/// channels a comma-separated list; headers one `Name: value` per line.
#[derive(Debug, Default, Deserialize)]
pub struct EndpointForm {
    pub url: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub channels: String,
    #[serde(default)]
    pub rate_limit: String,
    #[serde(default)]
    pub headers: String,
}

/// The headers as the form shows them, a `Name: value` line each, sensitive values hidden.
fn headers_text(headers: &BTreeMap<String, String>) -> String {
    headers
        .iter()
        .map(|(k, v)| match crate::keyring::is_sensitive_header(k) {
            true => format!("{k}: {SENSITIVE_PLACEHOLDER}"),
            false => format!("{k}: {v}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the form shows in place of a sensitive header's value (by name:
/// [`crate::keyring::is_sensitive_header`]); saved as it is, it keeps the stored value.
pub const SENSITIVE_PLACEHOLDER: &str = "(sensitive: unchanged)";

impl EndpointForm {
    /// The form as an existing endpoint fills it (sensitive values hidden).
    pub fn of(e: &EndpointOut, headers: &BTreeMap<String, String>) -> EndpointForm {
        EndpointForm {
            url: e.url.clone(),
            description: e.description.clone(),
            event_types: e.event_types.clone().unwrap_or_default(),
            channels: e.channels.clone().unwrap_or_default().join(", "),
            rate_limit: e.throttle_rate.map(|r| r.to_string()).unwrap_or_default(),
            headers: headers_text(headers),
        }
    }

    /// Posted headers with the placeholders of sensitive values put back as `stored` has
    /// them (a placeholder for a header that has no value yet is kept as text).
    pub fn restore_sensitive(
        mut posted: BTreeMap<String, String>,
        stored: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        for (name, value) in posted.iter_mut() {
            if value == SENSITIVE_PLACEHOLDER {
                if let Some(kept) = stored.get(name) {
                    value.clone_from(kept);
                }
            }
        }
        posted
    }

    /// The endpoint fields and headers this form sets; what it does not show (uid,
    /// metadata, whether it is disabled) is kept from `existing`. So are the event types
    /// it subscribes to that the form had no box for (`offered` are those it had: archived
    /// types, and types the viewer's feature flags hide, are not offered): editing an
    /// endpoint never drops, or widens to every type, what the editor could not see.
    pub fn fields(
        &self,
        existing: Option<&EndpointOut>,
        offered: &[String],
    ) -> Result<(EndpointFields, BTreeMap<String, String>), ApiError> {
        let mut p = Problems::default();
        let rate_limit = match self.rate_limit.trim() {
            "" => None,
            r => match r.parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    p.push(
                        "throttleRate",
                        "must be a whole number of messages per second",
                    );
                    None
                }
            },
        };
        let mut headers = BTreeMap::new();
        for line in self
            .headers
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            match line.split_once(':') {
                Some((name, value)) if !name.trim().is_empty() => {
                    headers.insert(name.trim().to_string(), value.trim().to_string());
                }
                _ => p.push("headers", format!("'{line}' is not a 'Name: value' line")),
            }
        }
        p.finish()?;
        let channels: Vec<String> = self
            .channels
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        let fields = EndpointFields {
            url: self.url.trim().to_string(),
            description: self.description.trim().to_string(),
            throttle_rate: rate_limit,
            uid: existing.and_then(|e| e.uid.clone()),
            disabled: existing.is_some_and(|e| e.disabled),
            event_types: self.event_types(existing, offered),
            channels: (!channels.is_empty()).then_some(channels),
            metadata: existing.map(|e| e.metadata.0.clone()).unwrap_or_default(),
            // Not on the form: kept as they are.
            ordered: existing.is_some_and(|e| e.ordered),
            ordered_on_dead: existing.map(|e| e.ordered_on_dead).unwrap_or_default(),
        };
        Ok((fields, headers))
    }
}

impl EndpointForm {
    /// The checked boxes, plus the existing subscriptions that had no box; none: every type.
    fn event_types(
        &self,
        existing: Option<&EndpointOut>,
        offered: &[String],
    ) -> Option<Vec<String>> {
        let mut types: Vec<String> = existing
            .and_then(|e| e.event_types.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !offered.contains(t))
            .collect();
        for t in &self.event_types {
            if !types.contains(t) {
                types.push(t.clone());
            }
        }
        (!types.is_empty()).then_some(types)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_values_are_hidden_in_the_form_and_kept_when_saved_unchanged() {
        let stored = BTreeMap::from([
            ("Authorization".to_string(), "Bearer s3cret".to_string()),
            ("X-Tenant".to_string(), "acme".to_string()),
        ]);
        let form = EndpointForm {
            url: "https://shop.example/hook".into(),
            headers: headers_text(&stored),
            ..Default::default()
        };
        assert!(!form.headers.contains("s3cret"), "{}", form.headers);
        assert!(form.headers.contains("X-Tenant: acme"));
        let (_, posted) = form.fields(None, &[]).unwrap();
        assert_eq!(EndpointForm::restore_sensitive(posted, &stored), stored);
        // A new value replaces it.
        let changed = BTreeMap::from([("Authorization".to_string(), "Bearer new".to_string())]);
        assert_eq!(
            EndpointForm::restore_sensitive(changed.clone(), &stored),
            changed
        );
    }

    #[test]
    fn a_posted_form_becomes_endpoint_fields() {
        let form: EndpointForm = serde_html_form::from_str(
            "csrf=x&url=https%3A%2F%2Fshop.example%2Fhook&event_types=order.paid&event_types=order.created\
             &channels=eu%2C+us&rate_limit=5&headers=X-Tenant%3A+acme%0D%0A",
        )
        .unwrap();
        let (f, headers) = form.fields(None, &[]).unwrap();
        assert_eq!(f.url, "https://shop.example/hook");
        assert_eq!(
            f.event_types,
            Some(vec!["order.paid".to_string(), "order.created".to_string()])
        );
        assert_eq!(f.channels, Some(vec!["eu".to_string(), "us".to_string()]));
        assert_eq!(f.throttle_rate, Some(5));
        assert_eq!(headers.get("X-Tenant").map(String::as_str), Some("acme"));
    }

    #[test]
    fn nothing_checked_means_every_event_type_and_mistakes_are_named() {
        let form = EndpointForm {
            url: "https://x.example".into(),
            ..Default::default()
        };
        let (f, _) = form.fields(None, &[]).unwrap();
        assert_eq!(
            (f.event_types, f.channels, f.throttle_rate),
            (None, None, None)
        );
        let bad = EndpointForm {
            rate_limit: "fast".into(),
            headers: "no colon here".into(),
            ..form
        };
        match bad.fields(None, &[]) {
            Err(ApiError::Validation(items)) => assert_eq!(items.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn subscriptions_the_form_could_not_show_are_kept() {
        let existing = EndpointOut {
            id: "ep_1".into(),
            uid: None,
            url: "https://x.example".into(),
            description: String::new(),
            throttle_rate: None,
            disabled: false,
            event_types: Some(vec!["beta.thing".into(), "order.paid".into()]),
            channels: None,
            metadata: Default::default(),
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            disabled_reason: None,
            disabled_at: None,
            callback: false,
            ordered: false,
            ordered_on_dead: Default::default(),
        };
        let offered = vec!["order.paid".to_string(), "order.created".to_string()];
        // Unchecking the one visible type keeps the hidden one (never "every type").
        let none = EndpointForm {
            url: "https://x.example".into(),
            ..Default::default()
        };
        let (f, _) = none.fields(Some(&existing), &offered).unwrap();
        assert_eq!(f.event_types, Some(vec!["beta.thing".to_string()]));
        let some = EndpointForm {
            event_types: vec!["order.created".into()],
            ..none
        };
        let (f, _) = some.fields(Some(&existing), &offered).unwrap();
        assert_eq!(
            f.event_types,
            Some(vec!["beta.thing".to_string(), "order.created".to_string()])
        );
    }
}

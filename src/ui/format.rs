//! How values read on a page: times (localized by the browser), delivery states, pages of a
//! list, long text.

use chrono::{DateTime, Utc};

/// A time as a page shows it: `<time datetime="{iso}">{text}</time>`; the script rewrites
/// the text in the browser's time zone, and without it the UTC text stays.
#[derive(Debug, Clone, PartialEq)]
pub struct When {
    pub iso: String,
    pub text: String,
}

impl From<DateTime<Utc>> for When {
    fn from(t: DateTime<Utc>) -> Self {
        When {
            iso: t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            text: t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        }
    }
}

pub fn when(t: DateTime<Utc>) -> When {
    t.into()
}

/// A delivery's state as a label and the badge class it wears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Badge {
    pub label: &'static str,
    pub class: &'static str,
}

/// From the Svix status codes (0 success, 1 pending, 2 fail, 3 sending).
pub fn delivery_badge(status: i16) -> Badge {
    match status {
        0 => Badge {
            label: "delivered",
            class: "ok",
        },
        1 => Badge {
            label: "pending",
            class: "wait",
        },
        2 => Badge {
            label: "dead",
            class: "bad",
        },
        3 => Badge {
            label: "sending",
            class: "wait",
        },
        _ => Badge {
            label: "unknown",
            class: "wait",
        },
    }
}

/// What Herald did with an inbound request: accepted (and whether a signature was
/// checked), a duplicate, or refused.
pub fn ingest_badge(outcome: crate::api::ingest::events::IngestOutcome, verified: bool) -> Badge {
    use crate::api::ingest::events::IngestOutcome;
    match (outcome, verified) {
        (IngestOutcome::Accepted, true) => Badge {
            label: "verified",
            class: "ok",
        },
        (IngestOutcome::Accepted, false) => Badge {
            label: "accepted, unsigned",
            class: "wait",
        },
        (IngestOutcome::Duplicate, _) => Badge {
            label: "duplicate",
            class: "wait",
        },
        (IngestOutcome::Rejected, _) => Badge {
            label: "refused",
            class: "bad",
        },
    }
}

/// An attempt's outcome: its HTTP status, or why there was none.
pub fn attempt_badge(succeeded: bool, status_code: Option<i16>) -> (String, &'static str) {
    let class = if succeeded { "ok" } else { "bad" };
    match status_code {
        Some(code) => (code.to_string(), class),
        None => ("no answer".to_string(), class),
    }
}

/// The links to a list's neighbouring pages: the current query with another iterator.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pager {
    pub next: Option<String>,
    pub prev: Option<String>,
}

impl Pager {
    /// `query` is the current query's pairs (without `iterator`); `next` and `prev` the
    /// list's iterators, `done` whether it said this was the last page, `first` whether
    /// this page was asked for without an iterator.
    pub fn new(
        path: &str,
        query: &[(String, String)],
        next: Option<&str>,
        prev: Option<&str>,
        done: bool,
        first: bool,
    ) -> Pager {
        let link = |it: &str| {
            let mut pairs: Vec<(String, String)> = query
                .iter()
                .filter(|(k, v)| k != "iterator" && k != "notice" && !v.is_empty())
                .cloned()
                .collect();
            pairs.push(("iterator".into(), it.to_string()));
            format!(
                "{path}?{}",
                serde_html_form::to_string(&pairs).unwrap_or_default()
            )
        };
        Pager {
            next: next.filter(|_| !done).map(link),
            prev: prev.filter(|_| !first).map(link),
        }
    }
}

impl Pager {
    /// The neighbours of a page the API answered (`first`: it was asked for without an
    /// iterator).
    pub fn of<T>(
        path: &str,
        query: &[(String, String)],
        list: &crate::api::pagination::ListResponse<T>,
        first: bool,
    ) -> Pager {
        Pager::new(
            path,
            query,
            list.iterator.as_deref(),
            list.prev_iterator.as_deref(),
            list.done,
            first,
        )
    }
}

/// At most `max` characters of `s`, with an ellipsis when cut.
pub fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A long Herald id shortened for a crowded table: its prefix and its last six characters
/// (`msg_…CzFJop`); the page keeps the whole id in the link and its title.
pub fn short_id(id: &str) -> String {
    match id.split_once('_') {
        Some((prefix, rest)) if rest.chars().count() > 8 => {
            let tail: String = rest.chars().skip(rest.chars().count() - 6).collect();
            format!("{prefix}_…{tail}")
        }
        _ => id.to_string(),
    }
}

/// A JSON text pretty-printed, or as it is when it is not JSON.
pub fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| text.to_string())
}

/// A share as a percentage with one decimal, or "–" when there is nothing to share.
pub fn percent(part: i64, whole: i64) -> String {
    if whole == 0 {
        "–".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_carry_their_instant_and_a_utc_text() {
        let t = DateTime::parse_from_rfc3339("2026-11-29T10:11:12.5Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            when(t),
            When {
                iso: "2026-11-29T10:11:12.500Z".into(),
                text: "2026-11-29 10:11:12 UTC".into()
            }
        );
    }

    #[test]
    fn pages_link_with_the_same_filters() {
        let q = vec![
            ("eventType".to_string(), "order.paid".to_string()),
            ("endpoint".to_string(), String::new()),
            ("iterator".to_string(), "old".to_string()),
        ];
        let p = Pager::new(
            "/portal/messages",
            &q,
            Some("msg_2"),
            Some("-msg_1"),
            false,
            false,
        );
        assert_eq!(
            p.next.as_deref(),
            Some("/portal/messages?eventType=order.paid&iterator=msg_2")
        );
        assert_eq!(
            p.prev.as_deref(),
            Some("/portal/messages?eventType=order.paid&iterator=-msg_1")
        );
        let last = Pager::new("/x", &[], Some("a"), Some("-b"), true, true);
        assert_eq!(last, Pager::default());
    }

    #[test]
    fn text_helpers() {
        assert_eq!(short("abcdef", 4), "abc…");
        assert_eq!(short("abc", 4), "abc");
        assert_eq!(short_id("msg_01a2293fd7bf6fk3sdOjQLCzFJop"), "msg_…CzFJop");
        assert_eq!(short_id("dlv_42"), "dlv_42");
        assert_eq!(pretty_json("{\"a\":1}"), "{\n  \"a\": 1\n}");
        assert_eq!(pretty_json("not json"), "not json");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(0, 0), "–");
        assert_eq!(delivery_badge(2).label, "dead");
        assert_eq!(attempt_badge(false, None), ("no answer".to_string(), "bad"));
        use crate::api::ingest::events::IngestOutcome;
        assert_eq!(ingest_badge(IngestOutcome::Accepted, true).class, "ok");
        assert_eq!(
            ingest_badge(IngestOutcome::Accepted, false).label,
            "accepted, unsigned"
        );
        assert_eq!(ingest_badge(IngestOutcome::Rejected, true).label, "refused");
    }
}

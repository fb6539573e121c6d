//! Sources by token, remembered briefly. Every request to `/ingest/{token}` needs its
//! source's type and settings; a query for each cost about a quarter of the CPU per
//! accepted event (ingest-receive: 9,863/s without, 12,434/s with; README "Inbound
//! webhooks"). A change made on this instance is seen at once ([`SourceCache::forget`]);
//! one made on another instance within [`REMEMBERED`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sqlx::PgPool;

use crate::{
    api::error::{ApiError, ApiResult},
    ingest::source::SourceKind,
    keyring::{sweep::open_source_config, Keyring},
};

/// How long a token's source is remembered: a rotated token, a new secret or a deleted
/// source take effect on other instances within this.
pub const REMEMBERED: Duration = Duration::from_secs(1);

/// Tokens remembered at most; beyond, the stale ones are dropped.
const LIMIT: usize = 10_000;

/// The source a token names.
#[derive(Clone)]
pub struct KnownSource {
    pub id: String,
    pub kind: Arc<SourceKind>,
}

/// One for every worker (made once at start-up), opening sources' secrets with its keyring.
pub struct SourceCache {
    remembered: Mutex<Remembered<KnownSource>>,
    keyring: Arc<Keyring>,
}

impl SourceCache {
    pub fn new(keyring: Arc<Keyring>) -> SourceCache {
        SourceCache {
            remembered: Mutex::default(),
            keyring,
        }
    }

    /// The source a token names (404 when none does).
    pub async fn source(&self, pool: &PgPool, token: &str) -> ApiResult<KnownSource> {
        let now = Instant::now();
        let hit = self
            .remembered
            .lock()
            .expect("source cache")
            .get(token, now);
        let found = match hit {
            Some(found) => found,
            None => {
                let found = lookup(pool, &self.keyring, token).await?;
                self.remembered
                    .lock()
                    .expect("source cache")
                    .put(token, found.clone(), now);
                found
            }
        };
        found.ok_or_else(|| ApiError::NotFound("no source has this URL".into()))
    }

    /// Forgets a source at once on this instance (rotated, changed or deleted here).
    pub fn forget(&self, source_id: &str) {
        self.remembered
            .lock()
            .expect("source cache")
            .forget(|s| s.id == source_id);
    }
}

async fn lookup(pool: &PgPool, ring: &Keyring, token: &str) -> ApiResult<Option<KnownSource>> {
    let row: Option<(String, String, sqlx::types::Json<serde_json::Value>)> =
        sqlx::query_as("SELECT id, type, config FROM herald.ingest_source WHERE token = $1")
            .bind(token)
            .fetch_optional(pool)
            .await?;
    let Some((id, kind, config)) = row else {
        return Ok(None);
    };
    let config = open_source_config(ring, config.0)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("source {id}'s secret: {e}")))?;
    let kind = SourceKind::from_parts(&kind, &config).map_err(|p| {
        ApiError::Internal(anyhow::anyhow!(
            "source {id} has an unusable config: {}",
            p.msg
        ))
    })?;
    Ok(Some(KnownSource {
        id,
        kind: Arc::new(kind),
    }))
}

/// Answers by key for [`REMEMBERED`], including "there is none" (so unknown tokens do not
/// each cost a query either), bounded to [`LIMIT`] keys.
struct Remembered<T> {
    entries: HashMap<String, (Instant, Option<T>)>,
}

impl<T> Default for Remembered<T> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }
}

impl<T: Clone> Remembered<T> {
    /// The remembered answer, if still fresh: `Some(None)` is a remembered "none".
    fn get(&self, key: &str, now: Instant) -> Option<Option<T>> {
        self.entries
            .get(key)
            .filter(|(at, _)| now.saturating_duration_since(*at) < REMEMBERED)
            .map(|(_, v)| v.clone())
    }

    fn put(&mut self, key: &str, value: Option<T>, now: Instant) {
        if self.entries.len() >= LIMIT {
            self.entries
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < REMEMBERED);
        }
        if self.entries.len() >= LIMIT {
            // All fresh (a flood of distinct tokens): start over rather than grow.
            self.entries.clear();
        }
        self.entries.insert(key.to_string(), (now, value));
    }

    fn forget(&mut self, matches: impl Fn(&T) -> bool) {
        self.entries
            .retain(|_, (_, v)| v.as_ref().is_none_or(|v| !matches(v)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_remembered_for_a_second_then_asked_again() {
        let mut r = Remembered::default();
        let t0 = Instant::now();
        r.put("tok", Some(1), t0);
        assert_eq!(r.get("tok", t0 + Duration::from_millis(999)), Some(Some(1)));
        assert_eq!(r.get("tok", t0 + REMEMBERED), None);
        assert_eq!(r.get("other", t0), None);
    }

    #[test]
    fn an_unknown_token_is_remembered_as_none() {
        let mut r: Remembered<u8> = Remembered::default();
        let t0 = Instant::now();
        r.put("gone", None, t0);
        assert_eq!(r.get("gone", t0), Some(None));
    }

    #[test]
    fn forgetting_drops_every_token_of_the_source_and_keeps_unknown_ones() {
        let mut r = Remembered::default();
        let t0 = Instant::now();
        r.put("a", Some("src_1"), t0);
        r.put("b", Some("src_1"), t0);
        r.put("c", Some("src_2"), t0);
        r.put("d", None, t0);
        r.forget(|s| *s == "src_1");
        assert_eq!(r.get("a", t0), None);
        assert_eq!(r.get("b", t0), None);
        assert_eq!(r.get("c", t0), Some(Some("src_2")));
        assert_eq!(r.get("d", t0), Some(None));
    }

    #[test]
    fn it_stays_bounded_under_a_flood_of_tokens() {
        let mut r = Remembered::default();
        let t0 = Instant::now();
        for i in 0..(LIMIT * 2 + 5) {
            r.put(&format!("t{i}"), Some(i), t0);
        }
        assert!(r.entries.len() <= LIMIT, "{}", r.entries.len());
        let later = t0 + REMEMBERED * 2;
        r.put("fresh", Some(0), later);
        assert!(r.entries.len() <= LIMIT);
        assert_eq!(r.get("fresh", later), Some(Some(0)));
    }
}

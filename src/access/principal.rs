//! Who a request comes from, and what it may reach.

use sha2::{Digest, Sha256};

use super::token::{TokenKind, TokenRow};

#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// Every route: a configured token (`HERALD_API_TOKENS`) or an operator token.
    Operator(Operator),
    /// One application's routes.
    Application(AppGrant),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operator {
    /// A token from the configuration, known by the first 16 hex digits of its SHA-256.
    Configured { digest: String },
    /// A runtime token (`tok_…`).
    Token { id: String },
}

/// What an application-scoped token (or a portal session) carries.
#[derive(Debug, Clone, PartialEq)]
pub struct AppGrant {
    pub app_id: String,
    pub token_id: String,
    pub read_only: bool,
    pub feature_flags: Vec<String>,
}

/// The rows a caller may see, for the routes that are not under one application's path
/// (dead letters, background tasks, the event-type catalogue).
#[derive(Debug, Clone, PartialEq)]
pub enum Reach {
    Everything,
    /// One application's rows; of the catalogue, the event types its flags allow.
    Application {
        app_id: String,
        feature_flags: Vec<String>,
    },
}

impl Reach {
    /// The application the rows must belong to, if any.
    pub fn app_id(&self) -> Option<&str> {
        match self {
            Reach::Everything => None,
            Reach::Application { app_id, .. } => Some(app_id),
        }
    }

    /// For event types: `None` shows all, `Some(flags)` those without a flag or with one of
    /// `flags`.
    pub fn feature_flags(&self) -> Option<&[String]> {
        match self {
            Reach::Everything => None,
            Reach::Application { feature_flags, .. } => Some(feature_flags),
        }
    }
}

/// The first 16 hex digits of a configured token's SHA-256: it names the token in sessions
/// and idempotency scopes without showing it.
pub fn configured_digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Principal {
    pub fn configured(token: &str) -> Principal {
        Principal::Operator(Operator::Configured {
            digest: configured_digest(token),
        })
    }

    /// Who a stored token is; `None` for a row that makes no sense (an application token
    /// without its application, which the schema forbids): refused, never an operator.
    pub fn from_token(t: &TokenRow) -> Option<Principal> {
        match (t.kind, &t.app_id) {
            (TokenKind::Operator, None) => {
                Some(Principal::Operator(Operator::Token { id: t.id.clone() }))
            }
            (TokenKind::Application | TokenKind::Portal, Some(app_id)) => {
                Some(Principal::Application(AppGrant {
                    app_id: app_id.clone(),
                    token_id: t.id.clone(),
                    read_only: t.read_only,
                    feature_flags: t.feature_flags.clone(),
                }))
            }
            _ => None,
        }
    }

    /// The namespace of this caller's idempotency keys: two callers' keys never collide.
    pub fn scope(&self) -> String {
        match self {
            Principal::Operator(Operator::Configured { digest }) => format!("operator:{digest}"),
            Principal::Operator(Operator::Token { id }) => format!("token:{id}"),
            Principal::Application(g) => format!("token:{}", g.token_id),
        }
    }

    pub fn reach(&self) -> Reach {
        match self {
            Principal::Operator(_) => Reach::Everything,
            Principal::Application(g) => Reach::Application {
                app_id: g.app_id.clone(),
                feature_flags: g.feature_flags.clone(),
            },
        }
    }

    pub fn app_grant(&self) -> Option<&AppGrant> {
        match self {
            Principal::Operator(_) => None,
            Principal::Application(g) => Some(g),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_have_their_own_key_scopes() {
        let a = Principal::configured("first-token-0123456").scope();
        assert_eq!(a, Principal::configured("first-token-0123456").scope());
        assert_ne!(a, Principal::configured("second-token-0123456").scope());
        assert!(!a.contains("first-token"), "the token itself never shows");
    }

    #[test]
    fn a_scoped_token_reaches_its_application() {
        let row = TokenRow {
            id: "tok_1".into(),
            name: "partner".into(),
            kind: TokenKind::Portal,
            app_id: Some("app_1".into()),
            feature_flags: vec!["beta".into()],
            read_only: true,
            created_at: chrono::Utc::now(),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        };
        let p = Principal::from_token(&row).unwrap();
        assert_eq!(p.reach().app_id(), Some("app_1"));
        assert_eq!(p.reach().feature_flags(), Some(&["beta".to_string()][..]));
        assert!(p.app_grant().unwrap().read_only);
        assert_eq!(p.scope(), "token:tok_1");
        let op = Principal::from_token(&TokenRow {
            kind: TokenKind::Operator,
            app_id: None,
            ..row.clone()
        });
        assert_eq!(op.map(|p| p.reach()), Some(Reach::Everything));
        let orphan = TokenRow {
            app_id: None,
            ..row
        };
        assert_eq!(
            Principal::from_token(&orphan),
            None,
            "refused, not an operator"
        );
    }
}

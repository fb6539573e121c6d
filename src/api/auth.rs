//! Bearer-token authentication for everything under `/api/v1` but health and the document.

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
    web, Error, HttpMessage,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The accepted tokens (`HERALD_API_TOKENS`).
#[derive(Clone)]
pub struct ApiTokens(pub Vec<String>);

impl ApiTokens {
    /// Compares against every token in constant time, so neither a token's content nor
    /// which token matched leaks through timing.
    pub fn accepts(&self, presented: &str) -> bool {
        let mut ok = subtle::Choice::from(0);
        for token in &self.0 {
            ok |= token.as_bytes().ct_eq(presented.as_bytes());
        }
        ok.into()
    }
}

/// Who a request comes from, for what it may reach and whose idempotency keys it uses.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// An operator token from the configuration; `digest` identifies it without showing it.
    Operator { digest: String },
}

impl Principal {
    fn operator(token: &str) -> Principal {
        let digest = Sha256::digest(token.as_bytes());
        Principal::Operator {
            digest: digest[..8].iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// The namespace of this caller's idempotency keys: two callers' keys never collide.
    pub fn scope(&self) -> String {
        match self {
            Principal::Operator { digest } => format!("operator:{digest}"),
        }
    }
}

pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let tokens = req
        .app_data::<web::Data<ApiTokens>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("ApiTokens not configured")))?;
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthorized(
            "missing Authorization: Bearer <token> header",
        ))?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or(ApiError::Unauthorized(
            "the Authorization header must be \"Bearer <token>\"",
        ))?
        .trim();
    if tokens.0.is_empty() {
        return Err(
            ApiError::Unauthorized("no API tokens are configured (HERALD_API_TOKENS)").into(),
        );
    }
    if !tokens.accepts(token) {
        return Err(ApiError::Unauthorized("invalid token").into());
    }
    req.extensions_mut().insert(Principal::operator(token));
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_configured_tokens() {
        let t = ApiTokens(vec![
            "first-token-0123456".into(),
            "second-token-0123456".into(),
        ]);
        assert!(t.accepts("first-token-0123456"));
        assert!(t.accepts("second-token-0123456"));
        assert!(!t.accepts("first-token-012345"));
        assert!(!t.accepts(""));
        assert!(!ApiTokens(vec![]).accepts(""));
    }

    #[test]
    fn callers_have_their_own_key_scopes() {
        let a = Principal::operator("first-token-0123456").scope();
        assert_eq!(a, Principal::operator("first-token-0123456").scope());
        assert_ne!(a, Principal::operator("second-token-0123456").scope());
        assert!(!a.contains("first-token"), "the token itself never shows");
    }
}

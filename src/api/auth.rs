//! Bearer-token authentication for everything under `/api/v1` but health.

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
    web, Error,
};
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
        ))?;
    if tokens.0.is_empty() {
        return Err(
            ApiError::Unauthorized("no API tokens are configured (HERALD_API_TOKENS)").into(),
        );
    }
    if !tokens.accepts(token.trim()) {
        return Err(ApiError::Unauthorized("invalid token").into());
    }
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
}

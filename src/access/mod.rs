//! Who may do what: the tokens Herald accepts and what each reaches.
//!
//! * [`token`]: tokens managed at run time (operator-wide, scoped to one application, or a
//!   partner's portal token), stored as hashes.
//! * [`principal`]: who a request comes from ([`principal::Principal`]) and which rows it
//!   reaches ([`principal::Reach`]).
//! * [`lockout`]: failed authentication limited per client address.
//! * [`Authenticator`]: the one place a presented token is checked, by the API's bearer
//!   middleware and the dashboard's sign-in alike.

pub mod lockout;
pub mod principal;
pub mod token;

use std::net::IpAddr;

use sqlx::PgPool;
use subtle::ConstantTimeEq;

use lockout::Lockout;
use principal::Principal;

/// Why a presented token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("too many failed authentications from this address; try again in {} s", .0.as_secs().max(1))]
    LockedOut(std::time::Duration),
    #[error("invalid token")]
    Invalid,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub struct Authenticator {
    /// `HERALD_API_TOKENS`.
    configured: Vec<String>,
    lockout: Lockout,
}

impl Authenticator {
    pub fn new(configured: Vec<String>, lockout: Lockout) -> Authenticator {
        Authenticator {
            configured,
            lockout,
        }
    }

    /// Compares against every configured token in constant time, so neither a token's
    /// content nor which token matched leaks through timing.
    fn configured_token(&self, presented: &str) -> bool {
        let mut ok = subtle::Choice::from(0);
        for token in &self.configured {
            ok |= token.as_bytes().ct_eq(presented.as_bytes());
        }
        ok.into()
    }

    /// Whether the configured token with this digest is still configured (a session started
    /// with a token removed since ends).
    pub fn still_configured(&self, digest: &str) -> bool {
        self.configured
            .iter()
            .any(|t| principal::configured_digest(t) == digest)
    }

    /// Refuses a locked-out address before looking at anything else.
    pub fn check_address(&self, client: IpAddr) -> Result<(), Refused> {
        self.lockout.check(client).map_err(Refused::LockedOut)
    }

    /// Who `presented` is: a configured token (compared in memory), else a live runtime
    /// token. A failure counts against `client`.
    pub async fn authenticate(
        &self,
        pool: &PgPool,
        client: IpAddr,
        presented: &str,
    ) -> Result<Principal, Refused> {
        self.check_address(client)?;
        if self.configured_token(presented) {
            return Ok(Principal::configured(presented));
        }
        match token::verify(pool, presented)
            .await?
            .as_ref()
            .and_then(Principal::from_token)
        {
            Some(p) => Ok(p),
            None => Err(self.failed(client)),
        }
    }

    /// Counts a failure from `client` (a bad token, a used sign-in link): `Invalid`, or
    /// `LockedOut` when this one locks the address out.
    pub fn failed(&self, client: IpAddr) -> Refused {
        match self.lockout.failed(client) {
            Some(wait) => Refused::LockedOut(wait),
            None => Refused::Invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_configured_tokens() {
        let a = Authenticator::new(
            vec!["first-token-0123456".into(), "second-token-0123456".into()],
            Lockout::per_minute(std::num::NonZeroU32::new(5).unwrap()),
        );
        assert!(a.configured_token("first-token-0123456"));
        assert!(a.configured_token("second-token-0123456"));
        assert!(!a.configured_token("first-token-012345"));
        assert!(!a.configured_token(""));
        assert!(a.still_configured(&principal::configured_digest("second-token-0123456")));
        assert!(!a.still_configured(&principal::configured_digest("gone")));
    }
}

//! DNS resolution that refuses forbidden addresses, plugged into awc's connector.

use std::{error::Error, net::SocketAddr, sync::Arc};

use actix_tls::connect::Resolve;
use futures_util::future::LocalBoxFuture;

use super::{Policy, Refusal};

/// Resolves a host and checks *every* address it resolves to: a name with one public and
/// one private address is refused outright (it is either misconfigured or an attack). The
/// connector then connects to exactly the addresses returned here.
pub struct GuardedResolver {
    pub policy: Arc<Policy>,
}

impl Resolve for GuardedResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn Error>>> {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
            if addrs.is_empty() {
                return Err(
                    Box::new(Refusal(format!("{host} resolves to no address"))) as Box<dyn Error>
                );
            }
            for addr in &addrs {
                if let Err(Refusal(why)) = self.policy.check_ip(addr.ip()) {
                    return Err(
                        Box::new(Refusal(format!("{host} resolves to {why}"))) as Box<dyn Error>
                    );
                }
            }
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn names_resolving_to_forbidden_addresses_are_refused() {
        let strict = GuardedResolver {
            policy: Arc::new(Policy::default()),
        };
        let err = strict
            .lookup("localhost", 80)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("localhost resolves to") && err.contains("loopback"),
            "{err}"
        );

        let allowing = GuardedResolver {
            policy: Arc::new(Policy {
                allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
                ..Policy::default()
            }),
        };
        let addrs = allowing
            .lookup("localhost", 8080)
            .await
            .expect("allowed range resolves");
        assert!(
            addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 8080),
            "{addrs:?}"
        );
    }
}

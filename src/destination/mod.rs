//! Where Herald is allowed to send: the SSRF guard and the destination allowlist.
//!
//! Users type endpoint URLs; without a guard, Herald would POST to the operator's own
//! network (databases, cloud metadata at 169.254.169.254, admin panels). So:
//! - endpoint creation refuses URLs whose host is a forbidden literal address or a
//!   `localhost` name ([`Policy::check_url`]);
//! - at send time the URL is checked again, and names are resolved by [`GuardedResolver`],
//!   which refuses the delivery if *any* resolved address is forbidden and hands the checked
//!   addresses to the connector, so the connection goes to an address that was checked (no
//!   DNS-rebinding window between check and connect);
//! - redirects are never followed (see `delivery::http`).
//!
//! `HERALD_ALLOWED_CIDRS` lets an operator open specific ranges (a receiver on the local
//! network in development); `HERALD_DESTINATION_ALLOWLIST` restricts destinations to listed
//! hosts; `HERALD_REQUIRE_HTTPS` refuses plain http.

pub mod ip;
mod resolver;

use std::net::IpAddr;

pub use resolver::GuardedResolver;

use ipnet::IpNet;

/// Why a destination is refused; worded for the attempt log and API errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("destination refused: {0}")]
pub struct Refusal(pub String);

#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Ranges allowed even though they are not public.
    pub allowed_cidrs: Vec<IpNet>,
    /// When not empty, only these hosts (`example.com`, `*.example.com`).
    pub allowlist: Vec<String>,
    pub require_https: bool,
}

impl Policy {
    pub fn from_settings(s: &crate::config::Settings) -> Policy {
        Policy {
            allowed_cidrs: s.destinations.allowed_cidrs.clone(),
            allowlist: s.destinations.allowlist.clone(),
            require_https: s.destinations.require_https,
        }
    }

    /// Checks one address (every address a name resolves to goes through here).
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        let embedded = match ip {
            IpAddr::V6(v6) => ip::embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let allowed = |a: IpAddr| self.allowed_cidrs.iter().any(|net| net.contains(&a));
        if allowed(ip) || embedded.is_some_and(allowed) {
            return Ok(());
        }
        match ip::non_public(ip) {
            None => Ok(()),
            Some(kind) => Err(Refusal(format!(
                "{ip} is a {kind} address; Herald only delivers to public addresses \
                 (an operator can allow a range with HERALD_ALLOWED_CIDRS)"
            ))),
        }
    }

    /// Checks a URL without resolving it: scheme, allowlist, literal addresses, `localhost`.
    pub fn check_url(&self, raw: &str) -> Result<(), Refusal> {
        let url = url::Url::parse(raw)
            .map_err(|e| Refusal(format!("'{raw}' is not a valid URL ({e})")))?;
        match url.scheme() {
            "https" => {}
            "http" if self.require_https => {
                return Err(Refusal(
                    "plain http is not allowed (HERALD_REQUIRE_HTTPS=true); use https".into(),
                ))
            }
            "http" => {}
            other => {
                return Err(Refusal(format!(
                    "the scheme must be http or https, not {other}"
                )))
            }
        }
        // The WHATWG parser already turned `2130706433`, `0x7f.1` or `017700000001` into
        // 127.0.0.1, so odd spellings of an address are judged as the address they are.
        let host = match url.host() {
            Some(url::Host::Ipv4(v4)) => {
                self.check_allowlist(&v4.to_string())?;
                return self.check_ip(IpAddr::V4(v4));
            }
            Some(url::Host::Ipv6(v6)) => {
                self.check_allowlist(&format!("[{v6}]"))?;
                return self.check_ip(IpAddr::V6(v6));
            }
            Some(url::Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
            None => return Err(Refusal("the URL has no host".into())),
        };
        self.check_allowlist(&host)?;
        if host == "localhost" || host.ends_with(".localhost") {
            let loopback = IpAddr::from([127, 0, 0, 1]);
            if !self.allowed_cidrs.iter().any(|n| n.contains(&loopback)) {
                return Err(Refusal(format!(
                    "{host} is a loopback name; Herald only delivers to public addresses \
                     (an operator can allow a range with HERALD_ALLOWED_CIDRS)"
                )));
            }
        }
        Ok(())
    }

    fn check_allowlist(&self, host: &str) -> Result<(), Refusal> {
        if self.allowlist.is_empty() || self.allowlist.iter().any(|p| host_matches(p, host)) {
            return Ok(());
        }
        Err(Refusal(format!(
            "{host} is not in HERALD_DESTINATION_ALLOWLIST"
        )))
    }
}

/// `example.com` matches itself; `*.example.com` matches any subdomain, not the apex.
fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
        None => host == pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> Policy {
        Policy::default()
    }

    #[test]
    fn forbidden_spellings_are_refused() {
        let forbidden = [
            "http://localhost/",
            "http://LOCALHOST./",
            "http://app.localhost:8080/",
            "http://127.0.0.1/",
            "http://127.1/",
            "http://0.0.0.0/",
            "http://0/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7f.0.0.1/",
            "http://017700000001/",
            "http://0177.0.0.1/",
            "http://[::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[0:0:0:0:0:ffff:a9fe:a9fe]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::10.0.0.1]/",
            "http://[2002:c0a8:0101::1]/",
            "http://[2001:0::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[ff02::1]/",
            "http://[2001:db8::1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://172.16.5.4/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://192.0.0.8/",
            "http://192.0.2.1/",
            "http://198.18.0.1/",
            "http://198.51.100.7/",
            "http://203.0.113.9/",
            "http://224.0.0.1/",
            "http://240.0.0.1/",
            "http://255.255.255.255/",
            "ftp://example.com/",
            "file:///etc/passwd",
        ];
        for url in forbidden {
            assert!(open().check_url(url).is_err(), "{url} must be refused");
        }
    }

    #[test]
    fn public_destinations_pass() {
        for url in [
            "https://example.com/hooks",
            "http://93.184.215.14/",
            "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "https://[2002:5db8:d70e::1]/",
            "https://[64:ff9b::8.8.8.8]/",
        ] {
            assert_eq!(open().check_url(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn operators_can_allow_ranges() {
        let p = Policy {
            allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap()],
            ..Policy::default()
        };
        assert_eq!(p.check_url("http://127.0.0.1:9000/"), Ok(()));
        assert_eq!(p.check_url("http://localhost:9000/"), Ok(()));
        assert_eq!(p.check_url("http://[::ffff:127.0.0.1]/"), Ok(()));
        assert!(p.check_url("http://10.0.0.1/").is_err());
        assert!(
            p.check_url("http://[::1]/").is_err(),
            "IPv6 loopback is its own range"
        );
    }

    #[test]
    fn allowlist_and_https() {
        let p = Policy {
            allowlist: vec!["hooks.example.com".into(), "*.merchant.io".into()],
            require_https: true,
            ..Policy::default()
        };
        assert_eq!(p.check_url("https://hooks.example.com/a"), Ok(()));
        assert_eq!(p.check_url("https://eu.merchant.io/a"), Ok(()));
        assert!(
            p.check_url("https://merchant.io/a").is_err(),
            "the apex is not a subdomain"
        );
        assert!(p.check_url("https://evil-merchant.io/a").is_err());
        assert!(p.check_url("https://example.com/a").is_err());
        assert!(
            p.check_url("http://hooks.example.com/a").is_err(),
            "https required"
        );
    }
}

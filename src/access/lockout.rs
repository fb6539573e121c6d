//! Failed authentication, limited per client address: after `limit` failures within a
//! minute an address is locked out for a minute, and while locked out it is refused before
//! any token it presents is looked at (so guessing cannot continue at any pace).

use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroU32,
    sync::Mutex,
    time::{Duration, Instant},
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How long an address stays locked out.
pub const LOCKOUT: Duration = Duration::from_secs(60);
/// Addresses remembered before the forgotten ones are dropped.
const PRUNE_ABOVE: usize = 10_000;

pub struct Lockout {
    failures: DefaultKeyedRateLimiter<IpAddr>,
    locked: Mutex<HashMap<IpAddr, Instant>>,
}

impl Lockout {
    /// `limit` failures a minute per address (a burst of `limit`, refilled over the minute).
    pub fn per_minute(limit: NonZeroU32) -> Lockout {
        Lockout {
            failures: RateLimiter::keyed(Quota::per_minute(limit)),
            locked: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while `addr` is locked out.
    pub fn check(&self, addr: IpAddr) -> Result<(), Duration> {
        let addr = client_key(addr);
        let now = Instant::now();
        let locked = self.locked.lock().expect("lockout map");
        match locked.get(&addr) {
            Some(until) if *until > now => Err(*until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failure; `Some(wait)` when it locks the address out (logged once, here).
    pub fn failed(&self, addr: IpAddr) -> Option<Duration> {
        let addr = client_key(addr);
        // Addresses that failed once and long ago are forgotten, so a stream of new
        // addresses cannot grow the limiter without bound.
        if self.failures.len() > PRUNE_ABOVE {
            self.failures.retain_recent();
            self.failures.shrink_to_fit();
        }
        if self.failures.check_key(&addr).is_ok() {
            return None;
        }
        let now = Instant::now();
        let mut locked = self.locked.lock().expect("lockout map");
        if locked.len() > PRUNE_ABOVE {
            locked.retain(|_, until| *until > now);
        }
        locked.insert(addr, now + LOCKOUT);
        tracing::warn!(client = %addr, seconds = LOCKOUT.as_secs(), "too many failed authentications: address locked out");
        Some(LOCKOUT)
    }
}

/// The unit an address is limited by: an IPv6 client usually holds a whole /64 and could
/// change addresses within it at will, so its /64 is one client.
fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().expect("checked above")),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_an_address_out_after_its_limit_only() {
        let l = Lockout::per_minute(NonZeroU32::new(3).unwrap());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(l.failed(a), None);
            assert!(l.check(a).is_ok());
        }
        let wait = l.failed(a).expect("the fourth failure locks out");
        assert!(wait <= LOCKOUT);
        let left = l.check(a).unwrap_err();
        assert!(left > Duration::from_secs(50) && left <= LOCKOUT);
        assert!(l.check(b).is_ok(), "another address is not concerned");
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let l = Lockout::per_minute(NonZeroU32::new(1).unwrap());
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_net: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_net: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(l.failed(one), None);
        assert!(
            l.failed(same_net).is_some(),
            "the second failure of the /64 locks it"
        );
        assert!(l.check(one).is_err());
        assert!(l.check(other_net).is_ok());
        assert_eq!(
            client_key("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}

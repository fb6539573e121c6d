//! Which IP addresses are not "the public internet", and why.
//!
//! IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by the
//! IPv4 address inside them, so `[::ffff:127.0.0.1]` is loopback like `127.0.0.1`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused, or `None` for a public address.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => non_public_v4(v4),
            None => non_public_v6(v6),
        },
    }
}

/// The IPv4 address an IPv6 address stands for, if it is one of the forms that embed one.
pub fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        // ::ffff:a.b.c.d (mapped) and ::ffff:0:a.b.c.d (translated).
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => Some(tail),
        // ::a.b.c.d (compatible, deprecated); :: and ::1 are judged as IPv6.
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(tail),
        // 64:ff9b::a.b.c.d (NAT64, RFC 6052).
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        // 2002:AABB:CCDD::/48 (6to4).
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_broadcast() => "broadcast",
        (0, _, _) => "unspecified (\"this network\")",
        (10, _, _) => "private",
        (100, 64..=127, _) => "carrier-grade NAT (shared)",
        (127, _, _) => "loopback",
        (169, 254, _) => "link-local (cloud metadata lives here)",
        (172, 16..=31, _) => "private",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay anycast",
        (192, 168, _) => "private",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback",
        [0x64, 0xff9b, 1, ..] => "local-use NAT64",
        [0x100, 0, 0, 0, ..] => "discard-only",
        [0x2001, 0xdb8, ..] => "documentation",
        // 2001::/23 holds Teredo (2001::/32, an IPv4 tunnel in disguise) and other special
        // assignments.
        [0x2001, 0..=0x1ff, ..] => "IETF protocol assignment (Teredo and others)",
        [0x3fff, 0..=0x0fff, ..] => "documentation",
        [0x5f00, ..] => "segment-routing (reserved)",
        [hi, ..] if hi & 0xfe00 == 0xfc00 => "unique-local (private)",
        [hi, ..] if hi & 0xffc0 == 0xfe80 => "link-local",
        [hi, ..] if hi & 0xffc0 == 0xfec0 => "site-local (deprecated private)",
        [hi, ..] if hi & 0xff00 == 0xff00 => "multicast",
        // Outside global unicast (2000::/3) nothing is assigned.
        [hi, ..] if hi & 0xe000 != 0x2000 => "reserved",
        _ => return None,
    })
}

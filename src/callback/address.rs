//! Which addresses a callback may not reach unless explicitly allowed: the
//! classification behind the SSRF checks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The kind of special-purpose range `ip` is in, if callbacks must not
/// reach it by default; `None` for an ordinary global unicast address.
///
/// The named kinds are for logs and tests; callers act on `is_some()`.
/// IPv6 addresses that embed an IPv4 address (mapped `::ffff:a.b.c.d`,
/// compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`)
/// are judged by that address too: the kernel or a gateway connects to it.
pub(crate) fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match () {
        // Named first: the cloud metadata service (AWS, GCP, Azure, …),
        // although link-local covers it.
        () if ip == Ipv4Addr::new(169, 254, 169, 254) => "metadata",
        () if ip.is_loopback() => "loopback",
        // 0.0.0.0/8 "this network": 0.0.0.0 reaches the local host on Linux.
        () if a == 0 => "unspecified",
        () if ip.is_private() => "private",
        () if ip.is_link_local() => "link-local",
        // 100.64.0.0/10, carrier-grade NAT (RFC 6598): often internal.
        () if a == 100 && (b & 0xc0) == 64 => "shared",
        // 192.0.0.0/24, IETF protocol assignments (RFC 6890).
        () if a == 192 && b == 0 && c == 0 => "protocol",
        () if ip.is_documentation() => "documentation",
        // 198.18.0.0/15, benchmarking (RFC 2544).
        () if a == 198 && (b & 0xfe) == 18 => "benchmarking",
        () if ip.is_broadcast() => "broadcast",
        () if ip.is_multicast() => "multicast",
        // 240.0.0.0/4, reserved.
        () if a >= 240 => "reserved",
        () => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        return match forbidden_v4(v4) {
            Some(kind) => Some(kind),
            None if is_translation_only(ip) => Some("translated"),
            None => None,
        };
    }
    let segments = ip.segments();
    Some(match () {
        // fd00:ec2::254, the AWS metadata service over IPv6 (in fc00::/7).
        () if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => "metadata",
        () if ip.is_loopback() => "loopback",
        () if ip.is_unspecified() => "unspecified",
        () if ip.is_unique_local() => "private",
        () if ip.is_unicast_link_local() => "link-local",
        // fec0::/10, site-local (deprecated, still routed internally).
        () if (segments[0] & 0xffc0) == 0xfec0 => "site-local",
        () if ip.is_multicast() => "multicast",
        // 2001:db8::/32 and 3fff::/20, documentation (RFC 3849, RFC 9637).
        () if segments[0] == 0x2001 && segments[1] == 0x0db8 => "documentation",
        () if (segments[0] & 0xfff0) == 0x3ff0 => "documentation",
        // 100::/64, discard-only (RFC 6666).
        () if segments[..4] == [0x100, 0, 0, 0] => "discard",
        // 2001::/32, Teredo: tunnels to an IPv4 address hidden in it.
        () if segments[0] == 0x2001 && segments[1] == 0 => "teredo",
        () => return None,
    })
}

/// The IPv4 address an IPv6 address stands for, if it is one of the forms
/// that carry one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // ::ffff:a.b.c.d, IPv4-mapped: what a dual-stack socket connects to.
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        // ::a.b.c.d, IPv4-compatible (deprecated); `::` and `::1` are IPv6's own.
        [0, 0, 0, 0, 0, 0, _, _] if !ip.is_loopback() && !ip.is_unspecified() => Some(low),
        // 64:ff9b::/96 (RFC 6052) and 64:ff9b:1::/48 (RFC 8215), NAT64.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 1, ..] => Some(low),
        // 2002:aabb:ccdd::/48, 6to4.
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

/// The forms that exist only to reach IPv4 through a translator or tunnel
/// of the local network (mapped, compatible, local-use NAT64): refused even
/// for a global IPv4 address, since a sender has no business using them.
/// Well-known NAT64 and 6to4 of a global address are ordinary.
fn is_translation_only(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    matches!(s, [0, 0, 0, 0, 0, _, _, _] | [0x64, 0xff9b, 1, ..])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every address, and whether it is refused by default.
    const TABLE: &[(&str, Option<&str>)] = &[
        ("127.0.0.1", Some("loopback")),
        ("127.255.3.4", Some("loopback")),
        ("0.0.0.0", Some("unspecified")),
        ("0.1.2.3", Some("unspecified")),
        ("10.0.0.1", Some("private")),
        ("172.16.0.1", Some("private")),
        ("172.31.255.254", Some("private")),
        ("172.32.0.1", None),
        ("192.168.1.1", Some("private")),
        ("169.254.0.1", Some("link-local")),
        ("169.254.169.254", Some("metadata")),
        ("100.64.0.1", Some("shared")),
        ("100.127.255.255", Some("shared")),
        ("100.128.0.1", None),
        ("192.0.0.8", Some("protocol")),
        ("192.0.2.1", Some("documentation")),
        ("198.51.100.7", Some("documentation")),
        ("203.0.113.9", Some("documentation")),
        ("198.18.0.1", Some("benchmarking")),
        ("198.19.255.1", Some("benchmarking")),
        ("224.0.0.1", Some("multicast")),
        ("239.255.255.250", Some("multicast")),
        ("255.255.255.255", Some("broadcast")),
        ("240.0.0.1", Some("reserved")),
        ("8.8.8.8", None),
        ("93.184.216.34", None),
        ("::1", Some("loopback")),
        ("::", Some("unspecified")),
        ("fc00::1", Some("private")),
        ("fd12:3456::1", Some("private")),
        ("fd00:ec2::254", Some("metadata")),
        ("fe80::1", Some("link-local")),
        ("fec0::1", Some("site-local")),
        ("ff02::1", Some("multicast")),
        ("2001:db8::1", Some("documentation")),
        ("3fff::1", Some("documentation")),
        ("100::1", Some("discard")),
        ("2001:0:4136:e378::1", Some("teredo")),
        ("2606:4700:4700::1111", None),
        ("2a00:1450:4001:82a::200e", None),
        // IPv4 inside IPv6: judged by the IPv4 address.
        ("::ffff:127.0.0.1", Some("loopback")),
        ("::ffff:10.1.2.3", Some("private")),
        ("::ffff:169.254.169.254", Some("metadata")),
        ("::ffff:0.0.0.0", Some("unspecified")),
        ("::127.0.0.1", Some("loopback")),
        ("64:ff9b::7f00:1", Some("loopback")),
        ("64:ff9b::a9fe:a9fe", Some("metadata")),
        ("2002:7f00:1::", Some("loopback")),
        ("2002:c0a8:101::1", Some("private")),
        // Mapped and compatible forms of a global address have no business
        // in a URL either; well-known NAT64 and 6to4 of one are ordinary.
        ("::ffff:8.8.8.8", Some("translated")),
        ("::8.8.8.8", Some("translated")),
        ("64:ff9b:1::808:808", Some("translated")),
        ("64:ff9b::808:808", None),
        ("2002:808:808::1", None),
    ];

    #[test]
    fn addresses_are_classified() {
        for (text, expected) in TABLE {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(forbidden(ip), *expected, "{text}");
        }
    }
}

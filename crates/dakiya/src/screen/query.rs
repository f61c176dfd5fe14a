//! The names asked of a DNS list for a client address (RFC 5782 §2.1, §2.4).

use std::fmt::Write;
use std::net::IpAddr;

/// The query name for `ip` in `zone`: an IPv4 address as its octets reversed
/// (`2.0.0.127.zone`), an IPv6 address as its 32 nibbles reversed, each a label (RFC 5782
/// §2.4). An IPv4-mapped IPv6 address is asked as IPv4. The name ends with a dot (fully
/// qualified: no search list applies).
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    let mut name = String::with_capacity(72 + zone.len());
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            for octet in v4.octets().iter().rev() {
                let _ = write!(name, "{octet}.");
            }
        }
        IpAddr::V6(v6) => {
            for byte in v6.octets().iter().rev() {
                let _ = write!(name, "{:x}.{:x}.", byte & 0xf, byte >> 4);
            }
        }
    }
    name.push_str(zone.trim_end_matches('.'));
    name.push('.');
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_octets_are_reversed() {
        assert_eq!(query_name("127.0.0.2".parse().unwrap(), "zen.example"), "2.0.0.127.zen.example.");
        assert_eq!(query_name("192.0.2.99".parse().unwrap(), "bl.test."), "99.2.0.192.bl.test.");
    }

    #[test]
    fn ipv6_nibbles_are_reversed_rfc5782_example() {
        // RFC 5782 §2.4: 2001:db8:1:2:3:4:567:89ab
        let q = query_name("2001:db8:1:2:3:4:567:89ab".parse().unwrap(), "ugly.example.com");
        assert_eq!(q, "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com.");
        let lo = query_name("::1".parse().unwrap(), "z.test");
        assert_eq!(lo, format!("1.{}z.test.", "0.".repeat(31)));
    }

    #[test]
    fn ipv4_mapped_ipv6_is_asked_as_ipv4() {
        assert_eq!(query_name("::ffff:127.0.0.2".parse().unwrap(), "z.test"), "2.0.0.127.z.test.");
    }
}

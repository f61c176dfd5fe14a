//! [`Network`]: who a greylist triplet or a network rate limit counts.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A client network: the /24 of an IPv4 address, or the /64 of an IPv6 address.
///
/// Large senders retry from another address of the same pool (RFC 6647 §4.1 discusses
/// keying on a network rather than a single address for this reason), and one IPv6 host
/// usually holds a whole /64 (RFC 7421). IPv4-mapped IPv6 addresses count as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Network {
    /// The first three octets of an IPv4 address.
    V4([u8; 3]),
    /// The upper 64 bits of an IPv6 address.
    V6(u64),
}

impl From<IpAddr> for Network {
    fn from(ip: IpAddr) -> Network {
        match ip {
            IpAddr::V4(a) => Network::from_v4(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Network::from_v4(v4),
                None => Network::V6((u128::from(a) >> 64) as u64),
            },
        }
    }
}

impl Network {
    fn from_v4(a: Ipv4Addr) -> Network {
        let [x, y, z, _] = a.octets();
        Network::V4([x, y, z])
    }
}

/// `192.0.2.0/24` or `2001:db8::/64`.
impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Network::V4([a, b, c]) => write!(f, "{a}.{b}.{c}.0/24"),
            Network::V6(hi) => write!(f, "{}/64", Ipv6Addr::from(u128::from(hi) << 64)),
        }
    }
}

/// Reads back what [`Display`](fmt::Display) writes (and any address inside such a network).
impl FromStr for Network {
    type Err = ();

    fn from_str(s: &str) -> Result<Network, ()> {
        let (addr, len) = s.split_once('/').ok_or(())?;
        let ip: IpAddr = addr.parse().map_err(|_| ())?;
        match (ip, len) {
            (IpAddr::V4(_), "24") | (IpAddr::V6(_), "64") => Ok(Network::from(ip)),
            _ => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Network {
        Network::from(s.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn ipv4_is_keyed_by_its_24() {
        assert_eq!(net("192.0.2.1"), net("192.0.2.254"));
        assert_ne!(net("192.0.2.1"), net("192.0.3.1"));
        assert_eq!(net("::ffff:192.0.2.7"), net("192.0.2.1"));
        assert_eq!(net("192.0.2.1").to_string(), "192.0.2.0/24");
    }

    #[test]
    fn ipv6_is_keyed_by_its_64() {
        assert_eq!(net("2001:db8::1"), net("2001:db8::ffff:1"));
        assert_ne!(net("2001:db8::1"), net("2001:db8:0:1::1"));
        assert_eq!(net("2001:db8::1").to_string(), "2001:db8::/64");
    }

    #[test]
    fn display_reads_back() {
        for s in ["192.0.2.0/24", "2001:db8::/64"] {
            assert_eq!(s.parse::<Network>().unwrap().to_string(), s);
        }
        assert!("192.0.2.0/25".parse::<Network>().is_err());
        assert!("2001:db8::/48".parse::<Network>().is_err());
        assert!("nonsense".parse::<Network>().is_err());
    }
}

//! Forward-confirmed reverse DNS (pure): which of the client's PTR names resolve back to its
//! address. Only such a name is shown in `Received:` (RFC 5321 §4.4: the TCP-info is the
//! address and, where verified, the name) or satisfies `require_fcrdns`.

use std::net::IpAddr;

/// At most this many PTR names are looked up forward: an address with hundreds of PTR
/// records must not cost hundreds of queries.
pub const MAX_PTR_NAMES: usize = 4;

/// The PTR names worth a forward lookup: lowercase, without the trailing dot, plain LDH host
/// names only (anything else could not be shown safely in a header), no repeats, at most
/// [`MAX_PTR_NAMES`].
pub fn candidates<S: AsRef<str>>(ptr: &[S]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in ptr {
        let name = name.as_ref().trim_end_matches('.').to_ascii_lowercase();
        if is_host_name(&name) && !out.contains(&name) {
            out.push(name);
            if out.len() == MAX_PTR_NAMES {
                break;
            }
        }
    }
    out
}

/// The first name whose forward addresses (`forward`: each candidate with its A or AAAA
/// answers) include `ip`.
pub fn confirmed(ip: IpAddr, forward: &[(String, Vec<IpAddr>)]) -> Option<String> {
    let ip = ip.to_canonical();
    forward.iter().find(|(_, addrs)| addrs.iter().any(|a| a.to_canonical() == ip)).map(|(n, _)| n.clone())
}

fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_clean_unique_and_bounded() {
        let ptr = [
            "Mail.Example.TEST.",
            "mail.example.test",
            "bad name.test",
            "x\r\ny.test",
            "a.test",
            "b.test",
            "c.test",
            "d.test",
        ];
        assert_eq!(candidates(&ptr), ["mail.example.test", "a.test", "b.test", "c.test"]);
        assert!(candidates::<&str>(&[]).is_empty());
        assert!(candidates(&["-bad.test", "."]).is_empty());
    }

    #[test]
    fn only_a_name_pointing_back_is_confirmed() {
        let ip: IpAddr = "127.0.0.5".parse().unwrap();
        let forward = vec![
            ("liar.test".to_string(), vec!["192.0.2.1".parse().unwrap()]),
            ("good.test".to_string(), vec!["192.0.2.2".parse().unwrap(), "127.0.0.5".parse().unwrap()]),
        ];
        assert_eq!(confirmed(ip, &forward).as_deref(), Some("good.test"));
        assert_eq!(confirmed(ip, &forward[..1]), None);
        assert_eq!(confirmed(ip, &[]), None);
        // An IPv4-mapped client matches its A record.
        assert_eq!(confirmed("::ffff:127.0.0.5".parse().unwrap(), &forward).as_deref(), Some("good.test"));
        let v6 = vec![("six.test".to_string(), vec!["::1".parse().unwrap()])];
        assert_eq!(confirmed("::1".parse().unwrap(), &v6).as_deref(), Some("six.test"));
    }
}

//! From the DNS lists' answers to a verdict: which zones list the client, its score, whether
//! an allow list knows it, and whether it is refused.

use dakiya_config::Zone;
use std::net::Ipv4Addr;

/// What a DNS list said about a client, as cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A records (RFC 5782 §2.1: an entry is listed by an A record in 127.0.0.0/8).
    Records(Vec<Ipv4Addr>),
    /// NXDOMAIN or no A record: not listed.
    NotListed,
}

/// How one zone's answer counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// Listed with one of the zone's codes.
    Listed,
    /// Not listed, not answered in time, or the lookup failed: a miss (a list that cannot be
    /// asked never blocks anyone).
    Miss,
    /// An answer outside the zone's codes (e.g. 127.255.255.254, "query refused", or a
    /// typo-squatted zone answering everything): does not count; worth a log line.
    Unexpected(Ipv4Addr),
}

/// How `answer` (`None`: no answer in time, or an error) counts for `zone`.
pub fn hit(zone: &Zone, answer: Option<&Answer>) -> Hit {
    let Some(Answer::Records(ips)) = answer else { return Hit::Miss };
    if ips.iter().any(|ip| zone.codes.iter().any(|c| c.contains(*ip))) {
        return Hit::Listed;
    }
    ips.first().map_or(Hit::Miss, |ip| Hit::Unexpected(*ip))
}

/// The verdict on a client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The sum of the weights of the zones that list it.
    pub score: i32,
    /// The first block list (positive weight) that lists it, when the score reaches the
    /// threshold: the client is refused and the reply names this zone.
    pub blocked_by: Option<String>,
    /// An allow list (negative weight) lists it: later checks such as greylisting skip it.
    pub allow_listed: bool,
    /// Every zone that lists it, for the log.
    pub listed: Vec<String>,
}

/// The verdict from each zone's [`Hit`], in the order of `zones`.
pub fn verdict(zones: &[Zone], hits: &[Hit], threshold: i32) -> Verdict {
    let mut v = Verdict::default();
    let mut first_block = None;
    for (zone, hit) in zones.iter().zip(hits) {
        if *hit != Hit::Listed {
            continue;
        }
        v.score = v.score.saturating_add(zone.weight);
        v.listed.push(zone.name.clone());
        if zone.weight < 0 {
            v.allow_listed = true;
        } else if first_block.is_none() {
            first_block = Some(zone.name.clone());
        }
    }
    if v.score >= threshold {
        v.blocked_by = first_block;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use dakiya_config::CodeRange;

    fn zone(name: &str, weight: i32) -> Zone {
        let codes = vec![CodeRange { first: [127, 0, 0, 2].into(), last: [127, 0, 0, 11].into() }];
        Zone { name: name.into(), weight, codes }
    }

    fn listed(ip: [u8; 4]) -> Option<Answer> {
        Some(Answer::Records(vec![ip.into()]))
    }

    #[test]
    fn codes_decide_what_counts() {
        let z = zone("bl.test", 1);
        assert_eq!(hit(&z, listed([127, 0, 0, 2]).as_ref()), Hit::Listed);
        assert_eq!(hit(&z, listed([127, 0, 0, 11]).as_ref()), Hit::Listed);
        assert_eq!(hit(&z, listed([127, 255, 255, 254]).as_ref()), Hit::Unexpected([127, 255, 255, 254].into()));
        assert_eq!(hit(&z, listed([127, 0, 0, 12]).as_ref()), Hit::Unexpected([127, 0, 0, 12].into()));
        assert_eq!(hit(&z, Some(&Answer::NotListed)), Hit::Miss);
        assert_eq!(hit(&z, Some(&Answer::Records(vec![]))), Hit::Miss);
        assert_eq!(hit(&z, None), Hit::Miss);
        // One counting code among others is enough.
        let both = Answer::Records(vec![[127, 255, 255, 254].into(), [127, 0, 0, 4].into()]);
        assert_eq!(hit(&z, Some(&both)), Hit::Listed);
    }

    #[test]
    fn threshold_and_allow_lists() {
        let zones = [zone("a.test", 1), zone("b.test", 2), zone("allow.test", -3)];
        let v = verdict(&zones, &[Hit::Miss, Hit::Listed, Hit::Miss], 2);
        assert_eq!((v.score, v.blocked_by.as_deref(), v.allow_listed), (2, Some("b.test"), false));
        let v = verdict(&zones, &[Hit::Listed, Hit::Miss, Hit::Miss], 2);
        assert_eq!((v.score, v.blocked_by), (1, None));
        let v = verdict(&zones, &[Hit::Listed, Hit::Listed, Hit::Listed], 1);
        assert_eq!((v.score, v.blocked_by, v.allow_listed), (0, None, true));
        assert_eq!(v.listed, ["a.test", "b.test", "allow.test"]);
        let v = verdict(&zones, &[Hit::Miss, Hit::Miss, Hit::Listed], 1);
        assert_eq!((v.score, v.blocked_by, v.allow_listed), (-3, None, true));
        let v = verdict(&zones, &[Hit::Unexpected([127, 255, 255, 254].into()), Hit::Miss, Hit::Miss], 1);
        assert_eq!(v, Verdict::default());
    }
}

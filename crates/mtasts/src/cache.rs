//! A cached policy, its file form, and when to fetch a new one (RFC 8461 §5.1).

use crate::policy::Policy;

/// The first line of a cache file, naming its format.
const MAGIC: &str = "dakiya-mta-sts-cache 1";

/// A policy as fetched: the TXT id it came with and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    /// The `id` of the `_mta-sts` record when the policy was fetched.
    pub id: String,
    /// When it was fetched, in seconds since the Unix epoch.
    pub fetched: u64,
    /// The policy.
    pub policy: Policy,
}

/// What to do before a delivery, given the record and the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The cached policy holds: use it without fetching.
    UseCached,
    /// Fetch the policy (none cached, expired, or the id changed); on failure fall back
    /// with [`fallback`].
    Fetch,
    /// No policy applies (no record and nothing cached).
    NoPolicy,
}

impl Cached {
    /// Whether the policy may still be used at `now` (§5.1: until `max_age` has passed).
    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.fetched.saturating_add(self.policy.max_age)
    }

    /// The file form: a format line, the id, the fetch time, a blank line, the policy.
    pub fn encode(&self) -> String {
        let mut out = format!("{MAGIC}\nid: {}\nfetched: {}\n\n", self.id, self.fetched);
        for line in self.policy.lines() {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// Reads [`Cached::encode`]'s form back; `None` for anything else (a damaged file is
    /// treated as no cache).
    pub fn decode(text: &str) -> Option<Cached> {
        let rest = text.strip_prefix(MAGIC)?.strip_prefix('\n')?;
        let (head, policy) = rest.split_once("\n\n")?;
        let mut lines = head.lines();
        let id = lines.next()?.strip_prefix("id: ")?.to_owned();
        let fetched = lines.next()?.strip_prefix("fetched: ")?.parse().ok()?;
        let policy = Policy::parse(policy.as_bytes()).ok()?;
        Some(Cached { id, fetched, policy })
    }
}

/// Whether to fetch (RFC 8461 §5.1). `record_id` is the id of the valid `_mta-sts` record,
/// or `None` when there is none (or the lookup failed): then an unexpired cached policy
/// still applies, as a policy is withdrawn by publishing `mode: none`, not by deleting the
/// record (§8.3).
pub fn decide(cached: Option<&Cached>, record_id: Option<&str>, now: u64) -> Decision {
    let fresh = cached.filter(|c| c.is_fresh(now));
    match (record_id, fresh) {
        (Some(id), Some(c)) if c.id == id => Decision::UseCached,
        (Some(_), _) => Decision::Fetch,
        (None, Some(_)) => Decision::UseCached,
        (None, None) => Decision::NoPolicy,
    }
}

/// After a failed fetch: the cached policy if it is unexpired (§5.1: "continue to use the
/// previously cached policy"), else none.
pub fn fallback(cached: Option<&Cached>, now: u64) -> Option<&Cached> {
    cached.filter(|c| c.is_fresh(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Mode;

    fn cached(id: &str, fetched: u64, max_age: u64) -> Cached {
        let policy = Policy { mode: Mode::Enforce, mx: vec!["mx.example.test".into()], max_age };
        Cached { id: id.into(), fetched, policy }
    }

    #[test]
    fn decisions() {
        let c = cached("a", 1000, 100);
        assert_eq!(decide(None, None, 1000), Decision::NoPolicy);
        assert_eq!(decide(None, Some("a"), 1000), Decision::Fetch);
        assert_eq!(decide(Some(&c), Some("a"), 1099), Decision::UseCached);
        assert_eq!(decide(Some(&c), Some("a"), 1100), Decision::Fetch, "expired at fetched + max_age");
        assert_eq!(decide(Some(&c), Some("b"), 1050), Decision::Fetch, "the id changed");
        assert_eq!(decide(Some(&c), None, 1050), Decision::UseCached, "no record: the cache still holds");
        assert_eq!(decide(Some(&c), None, 1100), Decision::NoPolicy);
        assert_eq!(fallback(Some(&c), 1099), Some(&c));
        assert_eq!(fallback(Some(&c), 1100), None);
    }

    #[test]
    fn file_form_round_trips() {
        let c = cached("20240101", 1_700_000_000, 86400);
        assert_eq!(Cached::decode(&c.encode()), Some(c.clone()));
        assert_eq!(Cached::decode(""), None);
        assert_eq!(Cached::decode(&c.encode().replace("fetched: 1", "fetched: x")), None);
        assert_eq!(Cached::decode(&c.encode()[..40]), None, "a truncated file is no cache");
    }
}

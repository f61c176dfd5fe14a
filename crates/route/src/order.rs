//! The order of MX hosts: preference, then chance (RFC 5321 §5.1).

use rand::Rng;
use rand::seq::SliceRandom;

/// Sorts `(preference, host)` pairs by ascending preference, in random order among equal
/// preferences.
///
/// RFC 5321 §5.1: hosts are tried "in order of preference, lowest numbers first", and among
/// equal preferences the client "MUST randomize them to spread the load". A uniform shuffle
/// followed by a stable sort leaves each group of equals in uniform random order.
pub(crate) fn by_preference<T, R: Rng + ?Sized>(mut hosts: Vec<(u16, T)>, rng: &mut R) -> Vec<(u16, T)> {
    hosts.shuffle(rng);
    hosts.sort_by_key(|&(preference, _)| preference);
    hosts
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::by_preference;

    #[test]
    fn lower_preference_first() {
        let hosts = vec![(30, "c"), (10, "a"), (20, "b"), (0, "z")];
        let ordered = by_preference(hosts, &mut rand::rng());
        assert_eq!(ordered, vec![(0, "z"), (10, "a"), (20, "b"), (30, "c")]);
    }

    #[test]
    fn equal_preferences_take_every_order_and_stay_in_their_group() {
        let hosts = vec![(20, "late"), (10, "a"), (10, "b"), (10, "c"), (5, "first")];
        let mut seen = BTreeSet::new();
        for _ in 0..600 {
            let ordered = by_preference(hosts.clone(), &mut rand::rng());
            assert_eq!(ordered[0], (5, "first"));
            assert_eq!(ordered[4], (20, "late"));
            seen.insert(ordered[1..4].iter().map(|(_, h)| *h).collect::<Vec<_>>());
        }
        // 3! = 6 orders, each with probability 1/6 per draw: the chance that one never
        // shows in 600 draws is 6 * (5/6)^600, about 1e-47.
        assert_eq!(seen.len(), 6, "{seen:?}");
    }

    #[test]
    fn empty_and_single() {
        assert!(by_preference(Vec::<(u16, ())>::new(), &mut rand::rng()).is_empty());
        assert_eq!(by_preference(vec![(7, 'x')], &mut rand::rng()), vec![(7, 'x')]);
    }
}

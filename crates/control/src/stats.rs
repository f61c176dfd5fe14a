//! `stats`: the shape of the queue, like Postfix's `qshape` — waiting mail by destination
//! domain, message age and recipient state, counted by the server in one pass over the queue
//! so that a large queue is never shipped to the client (docs/queue-cli.md).

use dakiya_spool::{QueuedMessage, RcptState, Recipient};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The upper edges of the age buckets, in minutes, as in `qshape`: a message younger than
/// 5 minutes counts under `5m`, one of 5 to 10 minutes under `10m`, and so on; one of 1280
/// minutes (about 21 hours) or more counts in a last bucket, `1280m+`.
pub const AGE_EDGES_MINUTES: [u64; 9] = [5, 10, 20, 40, 80, 160, 320, 640, 1280];

/// The counts of one row of the table (a destination domain, or the total).
///
/// `messages` and `ages` count messages: a message counts once in a row however many of its
/// waiting recipients the row covers. `recipients`, `pending`, `deferred` and `held` count
/// waiting recipients, each once; `pending + deferred + held == recipients`.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages with at least one waiting recipient in the row.
    pub messages: u64,
    /// Those messages by age: one count per bucket of [`QueueStats::buckets`], then one for
    /// the messages older than the last edge.
    pub ages: Vec<u64>,
    /// Waiting (not yet delivered or failed) recipients.
    pub recipients: u64,
    /// Waiting recipients not tried yet, in messages that are not held.
    pub pending: u64,
    /// Waiting recipients that failed temporarily, in messages that are not held.
    pub deferred: u64,
    /// Waiting recipients of held messages, whatever their state.
    pub held: u64,
}

/// One destination domain's row.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DomainStats {
    /// The domain, in lowercase: the part of the address after the last `@` for a remote
    /// recipient, the local domain for a local mailbox; `""` for an address without `@`.
    pub domain: String,
    /// Local mailboxes of the domain (delivered to Maildir here) rather than remote mail to it.
    pub local: bool,
    /// The row's counts.
    #[serde(flatten)]
    pub counts: Counts,
}

/// What `stats` reports.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// The upper edges of the age buckets in seconds (the last bucket has no upper edge).
    pub buckets: Vec<u64>,
    /// Every message and waiting recipient, each message counted once.
    pub total: Counts,
    /// The rows, most messages first (then most recipients, then by name), at most the `top`
    /// asked for.
    pub domains: Vec<DomainStats>,
    /// How many more domains there are than `domains` lists.
    pub more_domains: u64,
}

/// The age bucket of a message `age` seconds old: an index into [`Counts::ages`].
pub fn age_bucket(age: u64) -> usize {
    AGE_EDGES_MINUTES.iter().position(|edge| age < edge * 60).unwrap_or(AGE_EDGES_MINUTES.len())
}

/// The destination row of recipient `r`: its domain (lowercase) and whether it is local.
fn destination(r: &Recipient) -> (String, bool) {
    match &r.mailbox {
        Some((domain, _)) => (domain.to_lowercase(), true),
        None => (r.address.rsplit_once('@').map_or("", |(_, d)| d).to_lowercase(), false),
    }
}

impl Counts {
    fn empty() -> Counts {
        Counts { ages: vec![0; AGE_EDGES_MINUTES.len() + 1], ..Counts::default() }
    }

    /// Counts one message of age bucket `bucket` with these waiting recipient states.
    fn add(&mut self, bucket: usize, held: bool, states: &[&RcptState]) {
        self.messages += 1;
        self.ages[bucket] += 1;
        for s in states {
            self.recipients += 1;
            match s {
                _ if held => self.held += 1,
                RcptState::Deferred { .. } => self.deferred += 1,
                _ => self.pending += 1,
            }
        }
    }
}

/// The shape of the queue `messages` at time `now` (unix seconds), with at most `top` domain
/// rows (all of them when `None`). Recipients already delivered or failed are not counted,
/// nor are messages that have only such recipients (they are about to leave the queue).
pub fn queue_stats<'a>(
    messages: impl IntoIterator<Item = &'a QueuedMessage>,
    now: u64,
    top: Option<usize>,
) -> QueueStats {
    let mut total = Counts::empty();
    let mut rows: HashMap<(String, bool), Counts> = HashMap::new();
    for m in messages {
        let waiting: Vec<(&Recipient, &RcptState)> = m
            .envelope
            .recipients
            .iter()
            .zip(m.states.iter().chain(std::iter::repeat(&RcptState::Pending)))
            .filter(|(_, s)| !s.is_final())
            .collect();
        if waiting.is_empty() {
            continue;
        }
        let bucket = age_bucket(now.saturating_sub(m.envelope.received_at));
        total.add(bucket, m.held, &waiting.iter().map(|(_, s)| *s).collect::<Vec<_>>());
        let mut by_domain: HashMap<(String, bool), Vec<&RcptState>> = HashMap::new();
        for (r, s) in waiting {
            by_domain.entry(destination(r)).or_default().push(s);
        }
        for (key, states) in by_domain {
            rows.entry(key).or_insert_with(Counts::empty).add(bucket, m.held, &states);
        }
    }
    let mut domains: Vec<DomainStats> =
        rows.into_iter().map(|((domain, local), counts)| DomainStats { domain, local, counts }).collect();
    domains.sort_by(|a, b| {
        (b.counts.messages, b.counts.recipients)
            .cmp(&(a.counts.messages, a.counts.recipients))
            .then_with(|| (&a.domain, a.local).cmp(&(&b.domain, b.local)))
    });
    let all = domains.len();
    domains.truncate(top.unwrap_or(all));
    QueueStats {
        buckets: AGE_EDGES_MINUTES.iter().map(|m| m * 60).collect(),
        total,
        more_domains: (all - domains.len()) as u64,
        domains,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::sample;
    use dakiya_spool::QueueId;

    const NOW: u64 = 1_000_000;

    fn deferred() -> RcptState {
        RcptState::Deferred {
            attempts: 1,
            next_attempt: NOW + 60,
            error: "451 try later".into(),
            detail: None,
            delay_notified: false,
        }
    }

    /// A message `age` seconds old to `rcpts` (`address`, local domain, state).
    fn message(n: u64, age: u64, held: bool, rcpts: &[(&str, Option<&str>, RcptState)]) -> QueuedMessage {
        let mut m = sample();
        m.envelope.id = format!("{n:016X}").parse::<QueueId>().unwrap();
        m.envelope.received_at = NOW - age;
        m.held = held;
        m.envelope.recipients = rcpts
            .iter()
            .map(|(address, local, _)| {
                let mut r = sample().envelope.recipients[1].clone();
                r.address = (*address).into();
                r.mailbox = local.map(|d| (d.into(), address.split('@').next().unwrap().into()));
                r
            })
            .collect();
        m.states = rcpts.iter().map(|(_, _, s)| s.clone()).collect();
        m
    }

    #[test]
    fn every_bucket_edge() {
        let edges = AGE_EDGES_MINUTES.map(|m| m * 60);
        assert_eq!(age_bucket(0), 0);
        for (i, edge) in edges.into_iter().enumerate() {
            // Just under an edge is in that bucket, the edge itself in the next.
            assert_eq!(age_bucket(edge - 1), i, "{edge}");
            assert_eq!(age_bucket(edge), i + 1, "{edge}");
        }
        assert_eq!(age_bucket(u64::MAX), AGE_EDGES_MINUTES.len());
        // One message in each bucket, just under its upper edge (and one past the last).
        let ages = edges.iter().map(|e| e - 1).chain([edges[8] + 1]);
        let msgs: Vec<QueuedMessage> = ages
            .enumerate()
            .map(|(i, age)| message(i as u64, age, false, &[("a@x.test", None, RcptState::Pending)]))
            .collect();
        let stats = queue_stats(&msgs, NOW, None);
        assert_eq!(stats.total.ages, vec![1; 10]);
        assert_eq!(stats.domains[0].counts.ages, vec![1; 10]);
        assert_eq!(stats.buckets, [300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 76800]);
        // A clock behind the message's time: age 0.
        let future = message(99, 0, false, &[("a@x.test", None, RcptState::Pending)]);
        assert_eq!(queue_stats([&future], NOW - 10, None).total.ages[0], 1);
    }

    #[test]
    fn domains_recipients_states_and_held_messages() {
        let delivered = RcptState::Delivered { at: NOW };
        let failed = RcptState::Failed { at: NOW, error: "550 no".into(), detail: None, notified: true };
        let msgs = [
            // Two waiting recipients at remote.test in one message: one message, two recipients.
            message(
                1,
                60,
                false,
                &[
                    ("a@Remote.TEST", None, RcptState::Pending),
                    ("b@remote.test", None, deferred()),
                    ("c@remote.test", None, delivered.clone()),
                    ("alice@example.test", Some("example.test"), RcptState::Pending),
                ],
            ),
            // Held: its recipients count as held, whatever their state.
            message(2, 700, true, &[("d@remote.test", None, deferred()), ("e@other.test", None, RcptState::Pending)]),
            // Only final recipients: not counted at all.
            message(3, 60, false, &[("f@gone.test", None, delivered), ("g@gone.test", None, failed)]),
        ];
        let stats = queue_stats(&msgs, NOW, None);
        let mut ages = vec![0; 10];
        ages[0] = 1;
        ages[2] = 1;
        let counts = |messages, ages: &[u64], pending, deferred, held| Counts {
            messages,
            ages: ages.to_vec(),
            recipients: pending + deferred + held,
            pending,
            deferred,
            held,
        };
        assert_eq!(stats.total, counts(2, &ages, 2, 1, 2));
        let rows: Vec<(&str, bool, &Counts)> =
            stats.domains.iter().map(|d| (d.domain.as_str(), d.local, &d.counts)).collect();
        let one = |bucket: usize| {
            let mut ages = vec![0; 10];
            ages[bucket] = 1;
            ages
        };
        assert_eq!(
            rows,
            [
                ("remote.test", false, &counts(2, &ages, 1, 1, 1)),
                ("example.test", true, &counts(1, &one(0), 1, 0, 0)),
                ("other.test", false, &counts(1, &one(2), 0, 0, 1)),
            ]
        );
        assert_eq!(stats.more_domains, 0);
        // Recipients without a status record are pending.
        let mut short = msgs[0].clone();
        short.states.clear();
        assert_eq!(queue_stats([&short], NOW, None).total.pending, 4);
    }

    #[test]
    fn top_keeps_the_biggest_domains_and_counts_the_rest() {
        let msgs: Vec<QueuedMessage> = (0..5u64)
            .flat_map(|d| (0..=d).map(move |n| (d, n)))
            .map(|(d, n)| message(d * 10 + n, 0, false, &[(&format!("x@d{d}.test"), None, RcptState::Pending)]))
            .collect();
        let stats = queue_stats(&msgs, NOW, Some(2));
        let names: Vec<(&str, u64)> = stats.domains.iter().map(|d| (d.domain.as_str(), d.counts.messages)).collect();
        assert_eq!(names, [("d4.test", 5), ("d3.test", 4)]);
        assert_eq!((stats.more_domains, stats.total.messages), (3, 15));
        assert_eq!(queue_stats(&msgs, NOW, None).domains.len(), 5);
        assert_eq!(queue_stats(&msgs, NOW, Some(0)).more_domains, 5);
        // Ties: by name.
        let tied = [
            message(1, 0, false, &[("x@b.test", None, RcptState::Pending)]),
            message(2, 0, false, &[("x@a.test", None, RcptState::Pending)]),
        ];
        assert_eq!(queue_stats(&tied, NOW, None).domains[0].domain, "a.test");
    }

    #[test]
    fn an_empty_queue_and_the_json_form() {
        let stats = queue_stats([], NOW, Some(20));
        assert_eq!((stats.total.messages, stats.total.ages.len(), stats.domains.len()), (0, 10, 0));
        let msgs = [message(1, 0, false, &[("x@a.test", None, RcptState::Pending)])];
        let stats = queue_stats(&msgs, NOW, None);
        let line = serde_json::to_string(&stats.domains[0]).unwrap();
        assert_eq!(
            line,
            r#"{"domain":"a.test","local":false,"messages":1,"ages":[1,0,0,0,0,0,0,0,0,0],"recipients":1,"pending":1,"deferred":0,"held":0}"#
        );
        let back: QueueStats = serde_json::from_str(&serde_json::to_string(&stats).unwrap()).unwrap();
        assert_eq!(back, stats);
    }
}

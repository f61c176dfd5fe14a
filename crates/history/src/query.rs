//! `dakiya trace`'s question: which messages a queue id, a Message-ID or an address names,
//! each with its events and the notices it caused. Pure: records in, traces out.

use crate::event::{Event, Record};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What to look for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// A queue id: 16 hex digits (any case).
    QueueId(String),
    /// A Message-ID (with or without `<>`) or an address (the sender or any recipient);
    /// both are tried, since `local@domain` can be either.
    Text(String),
}

impl Query {
    /// Reads the command line's argument.
    pub fn parse(arg: &str) -> Query {
        let arg = arg.trim();
        if arg.len() == 16 && arg.bytes().all(|b| b.is_ascii_hexdigit()) {
            Query::QueueId(arg.to_ascii_uppercase())
        } else {
            Query::Text(arg.to_string())
        }
    }

    /// Whether `events` (one message's) match.
    fn matches(&self, id: &str, events: &[&Record]) -> bool {
        match self {
            Query::QueueId(q) => id.eq_ignore_ascii_case(q),
            Query::Text(q) => {
                let bare = strip_brackets(q);
                events.iter().any(|r| match &r.event {
                    Event::Received(rx) => {
                        rx.message_id.as_deref().is_some_and(|m| strip_brackets(m) == bare)
                            || same_address(&rx.sender, bare)
                            || rx.rcpts.iter().any(|a| same_address(a, bare))
                    }
                    Event::Attempt(a) => same_address(&a.rcpt, bare),
                    _ => false,
                })
            }
        }
    }
}

fn strip_brackets(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('<').and_then(|s| s.strip_suffix('>')).unwrap_or(s)
}

/// Two addresses are the same when their local parts are equal and their domains equal but
/// for ASCII case (RFC 5321 §2.4: the local part may be case-sensitive, the domain is not).
fn same_address(a: &str, b: &str) -> bool {
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => !a.is_empty() && a == b,
    }
}

/// One message's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trace {
    /// Its queue id.
    pub id: String,
    /// Its events, oldest first.
    pub events: Vec<Record>,
    /// The notices it caused (delivery status notifications), each with its own history.
    pub notices: Vec<Trace>,
}

/// How deep notices are followed: a notice about a notice is never sent, so one level is all
/// there is; two levels tolerate anything odd without looping.
const MAX_DEPTH: usize = 2;

/// The messages in `records` matching `q`, oldest first, each with the notices it caused.
/// A matching notice already shown under a matching message is not repeated on its own.
pub fn find(records: &[Record], q: &Query) -> Vec<Trace> {
    let mut by_id: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in records {
        by_id.entry(r.id.as_str()).or_default().push(r);
    }
    for events in by_id.values_mut() {
        events.sort_by_key(|r| r.t);
    }
    let mut matched: Vec<&str> = by_id.iter().filter(|(id, ev)| q.matches(id, ev)).map(|(id, _)| *id).collect();
    let notices_of_matched: BTreeSet<&str> = matched.iter().flat_map(|id| notice_ids(&by_id[id])).collect();
    matched.retain(|id| !notices_of_matched.contains(id));
    matched.sort_by_key(|id| (by_id[id].first().map_or(0, |r| r.t), *id));
    matched.iter().map(|id| build(&by_id, id, 0)).collect()
}

fn notice_ids<'a>(events: &[&'a Record]) -> impl Iterator<Item = &'a str> {
    events.iter().filter_map(|r| match &r.event {
        Event::Notice { notice, .. } => Some(notice.as_str()),
        _ => None,
    })
}

fn build(by_id: &BTreeMap<&str, Vec<&Record>>, id: &str, depth: usize) -> Trace {
    let events: Vec<&Record> = by_id.get(id).cloned().unwrap_or_default();
    let notices =
        if depth < MAX_DEPTH { notice_ids(&events).map(|n| build(by_id, n, depth + 1)).collect() } else { Vec::new() };
    Trace { id: id.to_string(), events: events.into_iter().cloned().collect(), notices }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Attempt, AttemptState, Final, NoticeKind, Received};

    const A: &str = "00000000000000AA";
    const B: &str = "00000000000000BB";
    const N: &str = "00000000000000CC";

    fn rec(t: u64, id: &str, event: Event) -> Record {
        Record { t, id: id.into(), event }
    }

    fn received(sender: &str, rcpt: &str, mid: &str) -> Event {
        Event::Received(Received {
            sender: sender.into(),
            rcpts: vec![rcpt.into()],
            message_id: Some(mid.into()),
            ..Received::default()
        })
    }

    fn history() -> Vec<Record> {
        let attempt = |rcpt: &str, state| {
            Event::Attempt(Attempt {
                rcpt: rcpt.into(),
                local: false,
                hop: None,
                tls: None,
                reply: None,
                state,
                until: None,
            })
        };
        vec![
            rec(20, B, received("Alice@Example.org", "carol@example.net", "<b@example.org>")),
            rec(10, A, received("alice@example.org", "bob@Example.NET", "<a@example.org>")),
            rec(30, A, attempt("bob@Example.NET", AttemptState::Failed)),
            rec(31, A, Event::Notice { notice: N.into(), kind: NoticeKind::Failure }),
            rec(32, N, received("", "alice@example.org", "<n@mx>")),
            rec(33, A, Event::Done { state: Final::Bounced }),
            rec(40, B, attempt("carol@example.net", AttemptState::Delivered)),
            rec(34, N, Event::Done { state: Final::Delivered }),
        ]
    }

    fn ids(traces: &[Trace]) -> Vec<&str> {
        traces.iter().map(|t| t.id.as_str()).collect()
    }

    #[test]
    fn by_queue_id_with_its_notice() {
        let t = find(&history(), &Query::parse(&A.to_ascii_lowercase()));
        assert_eq!(ids(&t), [A]);
        let times: Vec<u64> = t[0].events.iter().map(|r| r.t).collect();
        assert_eq!(times, [10, 30, 31, 33]);
        assert_eq!(ids(&t[0].notices), [N]);
        assert_eq!(t[0].notices[0].events.len(), 2);
    }

    #[test]
    fn by_message_id_with_or_without_brackets() {
        assert_eq!(ids(&find(&history(), &Query::parse("<b@example.org>"))), [B]);
        assert_eq!(ids(&find(&history(), &Query::parse("b@example.org"))), [B]);
        assert!(find(&history(), &Query::parse("<nobody@example.org>")).is_empty());
    }

    #[test]
    fn by_address_oldest_first_domain_case_insensitive() {
        // alice sent A (oldest) and B; the notice to her is shown under A, not again.
        assert_eq!(ids(&find(&history(), &Query::parse("alice@EXAMPLE.org"))), [A]);
        assert_eq!(ids(&find(&history(), &Query::parse("Alice@example.ORG"))), [B]);
        assert_eq!(ids(&find(&history(), &Query::parse("bob@example.net"))), [A]);
        assert!(find(&history(), &Query::parse("BOB@example.net")).is_empty(), "local parts are exact");
        assert_eq!(ids(&find(&history(), &Query::parse("carol@example.net"))), [B]);
    }

    #[test]
    fn a_notice_alone_is_found_when_its_message_is_not() {
        let only_notice: Vec<Record> = history().into_iter().filter(|r| r.id == N).collect();
        assert_eq!(ids(&find(&only_notice, &Query::parse("alice@example.org"))), [N]);
    }

    #[test]
    fn queries_are_read_by_shape() {
        assert_eq!(Query::parse(" 06b15c91cd0d88fb "), Query::QueueId("06B15C91CD0D88FB".into()));
        assert_eq!(Query::parse("06b15c91cd0d88f"), Query::Text("06b15c91cd0d88f".into()));
        assert_eq!(Query::parse("<x@y>"), Query::Text("<x@y>".into()));
        assert!(!same_address("", ""));
    }
}

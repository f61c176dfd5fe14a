//! The failures this crate makes itself (no route, no connection, no TLS), with their DSN
//! status codes (RFC 3463), and the rule for when another next hop may do better.

use dakiya_proto::Enhanced;
use dakiya_proto::client::{Failure, FailureKind, Outcome, Phase, RecipientOutcome};
use dakiya_route::{NextHop, RouteError};

/// `mx.example.org [192.0.2.1]`: the form of `Remote-MTA` and of Postfix's logs.
pub(crate) fn remote_mta(hop: &NextHop) -> String {
    format!("{} [{}]", hop.host, hop.addr.ip())
}

/// The domain has no next hop: permanent or temporary as the router says, with its status
/// (RFC 7505 §4.2 5.1.10 for a null MX, 5.1.2, 5.4.4, 4.4.3, 4.3.5; see `RouteError`).
pub(crate) fn route(e: &RouteError) -> RecipientOutcome {
    let permanent = e.is_permanent();
    // The router's status class follows permanence; make sure of it anyway.
    let status = e.enhanced_status();
    let status = Enhanced(if permanent { 5 } else { 4 }, status.1, status.2);
    let failure = Failure {
        phase: Phase::Idle,
        kind: FailureKind::Connection,
        status,
        reply: None,
        reason: format!("no route to the destination: {e}"),
    };
    if permanent { RecipientOutcome::Permanent(failure) } else { RecipientOutcome::Temporary(failure) }
}

/// The TCP connection could not be made (refused, unreachable, timed out): RFC 3463 §3.5
/// X.4.1 "No answer from host" ("the outbound connection attempt was not answered").
pub(crate) fn connect(hop: &NextHop, why: &str) -> Failure {
    Failure {
        phase: Phase::Greeting,
        kind: FailureKind::Connection,
        status: Enhanced(4, 4, 1),
        reply: None,
        reason: format!("cannot connect to {}: {why}", remote_mta(hop)),
    }
}

/// The TLS handshake failed, for implicit TLS (before the greeting).
pub(crate) fn tls(hop: &NextHop, certificate: bool, why: &str) -> Failure {
    let mut f = Failure {
        phase: Phase::Greeting,
        kind: FailureKind::Connection,
        status: Enhanced(4, 4, 2),
        reply: None,
        reason: format!("TLS with {} failed: {why}", remote_mta(hop)),
    };
    mark_tls(&mut f, certificate);
    f
}

/// Gives a failed TLS handshake its status: RFC 3463 §3.8 X.7.5 "Cryptographic failure"
/// (a key or certificate was missing or invalid, or the cryptographic negotiation failed),
/// temporary, as the server or our trust anchors may be fixed. A certificate that does not
/// verify is our policy refusing the host ([`FailureKind::Policy`]); any other handshake
/// failure stays a connection failure.
pub(crate) fn mark_tls(f: &mut Failure, certificate: bool) {
    f.status = Enhanced(4, 7, 5);
    if certificate {
        f.kind = FailureKind::Policy;
    }
}

/// An enforced MTA-STS policy lists none of the domain's MX hosts (RFC 8461 §4.1): the
/// mail waits (X.7.5, as for any TLS policy failure) rather than go elsewhere.
pub(crate) fn sts_no_mx(domain: &str, hosts: &str) -> Failure {
    Failure {
        phase: Phase::Idle,
        kind: FailureKind::Policy,
        status: Enhanced(4, 7, 5),
        reply: None,
        reason: format!("MTA-STS policy of {domain}: {hosts} does not match the policy's MX hosts"),
    }
}

/// A REQUIRETLS message (RFC 8689 §5) may not go to this hop: its TLS would not be
/// authenticated by DANE, MTA-STS or a `verify` route. 5.7.30 "REQUIRETLS support
/// required" (§6), permanent once no hop is left.
pub(crate) fn requiretls(hop: &NextHop, mode: &str) -> Failure {
    Failure {
        phase: Phase::Idle,
        kind: FailureKind::Policy,
        status: Enhanced(5, 7, 30),
        reply: None,
        reason: format!(
            "REQUIRETLS: TLS with {} would not be authenticated by DANE or MTA-STS ({mode})",
            remote_mta(hop)
        ),
    }
}

/// The client closed the session without reporting the job (never expected).
pub(crate) fn closed_early() -> Failure {
    Failure {
        phase: Phase::Idle,
        kind: FailureKind::Connection,
        status: Enhanced(4, 4, 2),
        reply: None,
        reason: "the session ended before the job was reported".into(),
    }
}

/// All next hops failed, and there was no failure to report (an empty list of hops).
pub(crate) fn no_hops() -> Failure {
    Failure {
        phase: Phase::Idle,
        kind: FailureKind::Connection,
        // RFC 3463 §3.5: X.4.4 "Unable to route".
        status: Enhanced(4, 4, 4),
        reply: None,
        reason: "no next hop to try".into(),
    }
}

/// Whether the job failed because of the host rather than the message, so the next hop may
/// do better (RFC 5321 §5.1) and a fresh connection may do better than a reused one:
/// - a temporary failure while setting the session up (greeting, EHLO, STARTTLS, AUTH);
/// - the connection broke, or the server said 421 (closing, RFC 5321 §3.8), before the
///   content was sent: nothing was handed over, so trying again elsewhere cannot
///   duplicate the message.
///
/// Anything else is final for this attempt: a refusal of the message or a recipient, and a
/// connection lost during or after the content (the server may have it already).
pub(crate) fn try_elsewhere(outcome: &Outcome) -> bool {
    let Outcome::Temporary(f) = outcome else { return false };
    let before_content = matches!(f.phase, Phase::Rset | Phase::Mail | Phase::Rcpt | Phase::DataInit);
    let broken = f.kind == FailureKind::Connection || f.reply.as_ref().is_some_and(|r| r.code == 421);
    f.phase.is_session_setup() || (before_content && broken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dakiya_proto::Reply;

    fn temp(phase: Phase, kind: FailureKind, code: Option<u16>) -> Outcome {
        let reply = code.map(|c| Reply::new(c, Enhanced(4, 0, 0), "x"));
        Outcome::Temporary(Failure { phase, kind, status: Enhanced(4, 0, 0), reply, reason: String::new() })
    }

    #[test]
    fn which_failures_move_on() {
        use FailureKind::*;
        assert!(try_elsewhere(&temp(Phase::Greeting, Refused, Some(421))));
        assert!(try_elsewhere(&temp(Phase::Ehlo, Protocol, None)));
        assert!(try_elsewhere(&temp(Phase::StartTls, Policy, None)));
        assert!(try_elsewhere(&temp(Phase::Auth, Refused, Some(454))));
        assert!(try_elsewhere(&temp(Phase::Rset, Connection, None)));
        assert!(try_elsewhere(&temp(Phase::Mail, Connection, None)));
        assert!(try_elsewhere(&temp(Phase::Mail, Refused, Some(421))));
        assert!(try_elsewhere(&temp(Phase::DataInit, Connection, None)));
        assert!(!try_elsewhere(&temp(Phase::Mail, Refused, Some(451))), "the message is deferred, not the host");
        assert!(!try_elsewhere(&temp(Phase::DataBlock, Connection, None)));
        assert!(!try_elsewhere(&temp(Phase::DataTermination, Connection, None)), "may be delivered already");
        let f = Failure {
            phase: Phase::Greeting,
            kind: Refused,
            status: Enhanced(5, 0, 0),
            reply: None,
            reason: "".into(),
        };
        assert!(!try_elsewhere(&Outcome::Permanent(f)));
        assert!(!try_elsewhere(&Outcome::Recipients(vec![])));
    }

    #[test]
    fn route_errors_keep_their_status_and_class() {
        let RecipientOutcome::Permanent(f) = route(&RouteError::NullMx) else { panic!() };
        assert_eq!(f.status, Enhanced(5, 1, 10));
        let RecipientOutcome::Temporary(f) = route(&RouteError::Temporary("x".into())) else { panic!() };
        assert_eq!(f.status, Enhanced(4, 4, 3));
        assert!(f.reason.contains("temporary DNS failure"), "{}", f.reason);
    }

    #[test]
    fn local_failures() {
        let hop = NextHop { host: "mx.test".into(), addr: "[::1]:25".parse().unwrap(), preference: 0 };
        assert_eq!(remote_mta(&hop), "mx.test [::1]");
        let f = connect(&hop, "refused");
        assert_eq!((f.status, f.kind), (Enhanced(4, 4, 1), FailureKind::Connection));
        assert!(f.phase.is_session_setup());
        let f = tls(&hop, true, "bad cert");
        assert_eq!((f.status, f.kind), (Enhanced(4, 7, 5), FailureKind::Policy));
        let f = tls(&hop, false, "alert");
        assert_eq!((f.status, f.kind), (Enhanced(4, 7, 5), FailureKind::Connection));
    }
}

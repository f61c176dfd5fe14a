//! From a finished SMTP transaction to the spool's envelope and the `Received:` header.

use dakiya_config::Target;
use dakiya_proto::server::{Hello, Transaction};
use dakiya_spool::{self as spool, Envelope, QueueId};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;

/// Builds the envelope: one spool recipient per final destination. A mailbox reached twice
/// (directly and through an alias, say) gets one copy: the first RCPT that reached it is
/// recorded as its original recipient.
pub fn build(id: QueueId, tx: &Transaction<Vec<Target>>, hello: Option<&Hello>, peer: SocketAddr) -> Envelope {
    let mut seen = HashSet::new();
    let mut recipients = Vec::new();
    for rcpt in &tx.rcpts {
        let original = match &rcpt.path {
            dakiya_proto::address::ForwardPath::Postmaster => "postmaster".to_string(),
            dakiya_proto::address::ForwardPath::Mailbox(m) => m.to_string(),
        };
        let notify = rcpt.params.notify;
        let orcpt = rcpt.params.orcpt.as_ref().map(|(kind, addr)| format!("{kind};{addr}"));
        for target in &rcpt.data {
            if !seen.insert(target.clone()) {
                continue;
            }
            let (address, mailbox) = match target {
                Target::Mailbox { domain, mailbox } => {
                    (format!("{mailbox}@{domain}"), Some((domain.clone(), mailbox.clone())))
                }
                Target::Remote { address } => (address.clone(), None),
            };
            recipients.push(spool::Recipient {
                address,
                original: original.clone(),
                orcpt: orcpt.clone(),
                notify,
                mailbox,
            });
        }
    }
    Envelope {
        id,
        received_at: now(),
        sender: tx.from.to_string(),
        client_ip: peer.ip().to_canonical().to_string(),
        helo: hello.map(|h| h.name.clone()).unwrap_or_default(),
        body: tx.params.body,
        smtputf8: tx.params.smtputf8,
        require_tls: tx.params.requiretls,
        dsn_ret: tx.params.ret,
        dsn_envid: tx.params.envid.clone(),
        recipients,
        prepend: None,
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What the Received: header records about the session.
pub struct Trace<'a> {
    pub hello: Option<&'a Hello>,
    pub peer: SocketAddr,
    /// The client's forward-confirmed reverse DNS name; an unconfirmed name is never shown.
    pub name: Option<&'a str>,
    pub tls: Option<&'a crate::stream::TlsInfo>,
    pub auth_user: Option<&'a str>,
}

/// The trace header every receiving server prepends (RFC 5321 §4.4), with the queue ID so a
/// message can be followed through logs, the TLS parameters, the authenticated identity, and
/// the protocol name of RFC 3848 / RFC 6531 §3.7.3 (ESMTP, ESMTPS, ESMTPA, ESMTPSA, UTF8SMTP…).
pub fn received_header(hostname: &str, env: &Envelope, tx: &Transaction<Vec<Target>>, trace: &Trace<'_>) -> String {
    let esmtp = trace.hello.is_some_and(|h| h.esmtp);
    let base = match (tx.params.smtputf8, esmtp) {
        (true, _) => "UTF8SMTP",
        (false, true) => "ESMTP",
        (false, false) => "SMTP",
    };
    let suffix = match (trace.tls.is_some() && esmtp, trace.auth_user.is_some()) {
        (true, true) => "SA",
        (true, false) => "S",
        (false, true) => "A",
        (false, false) => "",
    };
    let helo = trace.hello.map_or("unknown", |h| h.name.as_str());
    // One String, written in place (no String per part): this runs for every message.
    // Writing into a String cannot fail.
    let mut field = String::with_capacity(256 + hostname.len() + helo.len());
    let _ = write!(field, "Received: from {helo} (");
    // RFC 5321 §4.4: TCP-info is the address literal, preceded by the name when verified.
    if let Some(name) = trace.name {
        let _ = write!(field, "{name} ");
    }
    let _ = match trace.peer.ip().to_canonical() {
        std::net::IpAddr::V6(v6) => write!(field, "[IPv6:{v6}])"),
        std::net::IpAddr::V4(v4) => write!(field, "[{v4}])"),
    };
    if let Some(t) = trace.tls {
        let _ = write!(field, "\r\n\t(using {} with cipher {})", t.version, t.cipher);
    }
    if let Some(user) = trace.auth_user {
        let _ = write!(field, "\r\n\t(authenticated as {user})");
    }
    let _ = write!(field, "\r\n\tby {hostname} (dakiya) with {base}{suffix} id {}", env.id);
    // Name the recipient only when there is one, so one copy does not reveal the others.
    if let [one] = tx.rcpts.as_slice() {
        let _ = match &one.path {
            dakiya_proto::address::ForwardPath::Mailbox(m) => write!(field, "\r\n\tfor <{m}>"),
            dakiya_proto::address::ForwardPath::Postmaster => write!(field, "\r\n\tfor <postmaster>"),
        };
    }
    let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S +0000");
    let _ = write!(field, ";\r\n\t{date}\r\n");
    field
}

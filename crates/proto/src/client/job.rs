//! One message to hand over: its envelope and what its content needs from the next hop.

use crate::address::{Mailbox, ReversePath};
use crate::params::{Notify, Ret};

/// A message to deliver to one host: the envelope, the content's needs and the DSN
/// parameters to pass on. The content itself stays with the driver, which streams it when
/// asked ([`super::ClientEvent::SendBody`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The reverse-path for MAIL FROM (`<>` for bounces).
    pub from: ReversePath,
    /// The recipients, in the order their results are reported.
    pub recipients: Vec<JobRecipient>,
    /// The content's size in octets with CRLF line ends, before dot-stuffing (RFC 1870 §4),
    /// when known.
    pub size: Option<u64>,
    /// The content has octets above 127 (needs 8BITMIME, RFC 6152).
    pub eight_bit: bool,
    /// The message needs SMTPUTF8 (RFC 6531) for its headers; non-ASCII addresses in the
    /// envelope need it anyway, see [`Job::needs_smtputf8`].
    pub smtputf8: bool,
    /// RET= to pass on (RFC 3461 §4.3).
    pub ret: Option<Ret>,
    /// ENVID= to pass on, not yet xtext-encoded (RFC 3461 §4.4).
    pub envid: Option<String>,
    /// The message was received with REQUIRETLS (RFC 8689 §4.1): it goes only to a next
    /// hop that offers REQUIRETLS, with the parameter, and the driver sees to it that the
    /// TLS session is authenticated (§5).
    pub require_tls: bool,
    /// The message has `TLS-Required: No` and no REQUIRETLS (RFC 8689 §4.2): the driver
    /// delivers it even when a DANE or MTA-STS policy fails, opportunistically.
    pub tls_optional: bool,
}

/// One recipient of a [`Job`] with its DSN parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecipient {
    /// The forward-path for RCPT TO.
    pub mailbox: Mailbox,
    /// NOTIFY= to pass on (RFC 3461 §4.1).
    pub notify: Option<Notify>,
    /// ORCPT= to pass on as `(addr-type, address)`, not yet xtext-encoded (RFC 3461 §4.2).
    pub orcpt: Option<(String, String)>,
}

impl JobRecipient {
    /// A recipient without DSN parameters.
    pub fn new(mailbox: Mailbox) -> JobRecipient {
        JobRecipient { mailbox, notify: None, orcpt: None }
    }
}

impl Job {
    /// A 7-bit message of unknown size, without DSN parameters.
    pub fn new(from: ReversePath, recipients: impl IntoIterator<Item = Mailbox>) -> Job {
        Job {
            from,
            recipients: recipients.into_iter().map(JobRecipient::new).collect(),
            size: None,
            eight_bit: false,
            smtputf8: false,
            ret: None,
            envid: None,
            require_tls: false,
            tls_optional: false,
        }
    }

    /// True if the message can only be sent with SMTPUTF8: it says so, or an envelope
    /// address is not ASCII (RFC 6531 §3.2).
    pub fn needs_smtputf8(&self) -> bool {
        self.smtputf8 || self.has_utf8_address()
    }

    /// True if an envelope address (not just the content) is non-ASCII.
    pub(crate) fn has_utf8_address(&self) -> bool {
        matches!(&self.from, ReversePath::Mailbox(m) if !m.is_ascii())
            || self.recipients.iter().any(|r| !r.mailbox.is_ascii())
    }
}

/// True when the message's header section has a `TLS-Required: No` field (RFC 8689 §5.1:
/// the sender asks that TLS policy failures not stop delivery). Field names compare
/// without regard to case, the value too; folded values are unfolded.
pub fn tls_required_no(message: &[u8]) -> bool {
    let header = match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => &message[..end + 2],
        None => message,
    };
    let text = String::from_utf8_lossy(header);
    let mut fields: Vec<String> = Vec::new();
    for line in text.split("\r\n") {
        match fields.last_mut() {
            // RFC 5322 §2.2.3: a line starting with white space continues the field.
            Some(last) if line.starts_with([' ', '\t']) => last.push_str(line),
            _ => fields.push(line.to_owned()),
        }
    }
    fields.iter().any(|f| {
        f.split_once(':').is_some_and(|(name, value)| {
            name.trim_end().eq_ignore_ascii_case("TLS-Required") && value.trim().eq_ignore_ascii_case("no")
        })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn tls_required_no_is_found_in_the_header_only() {
        use super::tls_required_no;
        assert!(tls_required_no(b"Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n"));
        assert!(tls_required_no(b"tls-required:\r\n  no \r\n\r\n"));
        assert!(!tls_required_no(b"Subject: x\r\n\r\nTLS-Required: No\r\n"));
        assert!(!tls_required_no(b"TLS-Required: Yes\r\n\r\n"));
        assert!(!tls_required_no(b"X-TLS-Required: No\r\n\r\n"));
    }

    use super::*;
    use crate::address::parse_path;

    #[test]
    fn smtputf8_need_follows_the_addresses() {
        let ascii = parse_path("<a@b.test>").unwrap();
        let utf8 = parse_path("<jos\u{e9}@b.test>").unwrap();
        let mut job = Job::new(ReversePath::Null, [ascii.clone()]);
        assert!(!job.needs_smtputf8() && !job.has_utf8_address());
        job.smtputf8 = true;
        assert!(job.needs_smtputf8() && !job.has_utf8_address());
        let job = Job::new(ReversePath::Mailbox(utf8.clone()), [ascii]);
        assert!(job.needs_smtputf8() && job.has_utf8_address());
        assert!(Job::new(ReversePath::Null, [utf8]).needs_smtputf8());
    }
}

//! The views `list` and `show` report, built from what the spool holds: the server builds
//! them, `dakiya queue` prints them, and both see the same types (docs/queue-cli.md).

use crate::MAX_HEADERS;
use crate::response::{MessageDetail, MessageView, RcptDetail, RcptView, StateName};
use dakiya_spool::{QueuedMessage, RcptState, Recipient};
use std::io::{self, Read};

/// The view of `m` at time `now`; `headers` (from `show`) adds the details.
pub fn message_view(m: &QueuedMessage, now: u64, headers: Option<(String, bool)>) -> MessageView {
    let env = &m.envelope;
    let with_detail = headers.is_some();
    let recipients = env
        .recipients
        .iter()
        .zip(m.states.iter().chain(std::iter::repeat(&RcptState::Pending)))
        .map(|(r, s)| rcpt_view(r, s, with_detail))
        .collect();
    let detail = headers.map(|(headers, headers_truncated)| MessageDetail {
        client_ip: env.client_ip.clone(),
        helo: env.helo.clone(),
        body: env.body,
        smtputf8: env.smtputf8,
        dsn_ret: env.dsn_ret,
        dsn_envid: env.dsn_envid.clone(),
        headers,
        headers_truncated,
    });
    MessageView {
        id: env.id.clone(),
        received_at: env.received_at,
        age: now.saturating_sub(env.received_at),
        sender: env.sender.clone(),
        size: m.size,
        held: m.held,
        recipients,
        detail,
    }
}

/// The view of recipient `r` in state `s`; `with_detail` (from `show`) adds the details.
pub fn rcpt_view(r: &Recipient, s: &RcptState, with_detail: bool) -> RcptView {
    let base = RcptView {
        address: r.address.clone(),
        state: StateName::Pending,
        attempts: None,
        next_attempt: None,
        at: None,
        error: None,
        detail: None,
    };
    let (mut v, failure, notified) = match s {
        RcptState::Pending => (base, None, false),
        RcptState::Delivered { at } => (RcptView { state: StateName::Delivered, at: Some(*at), ..base }, None, false),
        RcptState::Deferred { attempts, next_attempt, error, detail, delay_notified } => {
            let v = RcptView {
                state: StateName::Deferred,
                attempts: Some(*attempts),
                next_attempt: Some(*next_attempt),
                error: Some(error.clone()),
                ..base
            };
            (v, detail.clone(), *delay_notified)
        }
        RcptState::Failed { at, error, detail, notified } => {
            let v = RcptView { state: StateName::Failed, at: Some(*at), error: Some(error.clone()), ..base };
            (v, detail.clone(), *notified)
        }
    };
    if with_detail {
        v.detail = Some(RcptDetail {
            original: r.original.clone(),
            orcpt: r.orcpt.clone(),
            notify: r.notify,
            mailbox: r.mailbox.as_ref().map(|(domain, mailbox)| format!("{domain}/{mailbox}")),
            failure,
            notified,
        });
    }
    v
}

/// The header section at the start of `body`: everything before the first empty line
/// (RFC 5322 §2.1), read no further than [`MAX_HEADERS`] bytes. Lines come back joined by `\n`;
/// the flag says the limit was reached before the empty line.
pub fn header_section(body: impl Read) -> io::Result<(String, bool)> {
    let mut buf = Vec::new();
    body.take(MAX_HEADERS).read_to_end(&mut buf)?;
    let (end, truncated) = if buf.starts_with(b"\r\n") {
        (0, false)
    } else {
        match buf.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(pos) => (pos + 2, false),
            None => (buf.len(), buf.len() as u64 >= MAX_HEADERS),
        }
    };
    let text = String::from_utf8_lossy(&buf[..end]).replace("\r\n", "\n");
    Ok((text, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Response;
    use crate::testdata::sample;
    use dakiya_spool::{Enhanced, Ret};

    #[test]
    fn list_view_has_states_but_no_details() {
        let v = message_view(&sample(), 1_200, None);
        assert_eq!((v.age, v.size, v.held, v.detail.is_none()), (200, 2048, false, true));
        let states: Vec<StateName> = v.recipients.iter().map(|r| r.state).collect();
        // A recipient without a status record is pending.
        assert_eq!(states, [StateName::Delivered, StateName::Deferred, StateName::Pending]);
        assert_eq!(v.recipients[0].at, Some(1_001));
        assert_eq!(v.recipients[1].next_attempt, Some(1_900));
        assert_eq!(v.recipients[1].attempts, Some(2));
        assert!(v.recipients.iter().all(|r| r.detail.is_none()));
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["recipients"][1]["state"], "deferred");
        assert_eq!(json["recipients"][1]["error"], "451 4.4.1 connection refused");
        assert!(json["recipients"][2].get("error").is_none());
    }

    #[test]
    fn show_view_adds_envelope_and_recipient_details() {
        let v = message_view(&sample(), 1_200, Some(("Subject: x\n".into(), false)));
        let d = v.detail.as_ref().unwrap();
        assert_eq!((d.client_ip.as_str(), d.helo.as_str(), d.dsn_ret), ("192.0.2.1", "client.test", Some(Ret::Hdrs)));
        let r = v.recipients[0].detail.as_ref().unwrap();
        assert_eq!(r.mailbox.as_deref(), Some("example.test/alice"));
        assert_eq!(r.original, "ALICE@EXAMPLE.TEST");
        assert_eq!(v.recipients[1].detail.as_ref().unwrap().failure.as_ref().unwrap().status, Enhanced(4, 4, 1));
        // Round trip: what the server sends, the client reads.
        let response = Response { ok: true, now: Some(1_200), message: Some(v), ..Response::default() };
        assert_eq!(Response::parse(response.encode().as_bytes()), Ok(response));
    }

    #[test]
    fn header_section_ends_at_the_first_blank_line() {
        let (h, cut) = header_section(&b"Received: x\r\n\tby y\r\nSubject: hi\r\n\r\nbody\r\n\r\nmore"[..]).unwrap();
        assert_eq!((h.as_str(), cut), ("Received: x\n\tby y\nSubject: hi\n", false));
        assert_eq!(header_section(&b"\r\nbody"[..]).unwrap(), (String::new(), false));
        assert_eq!(header_section(&b"Subject: only\r\n"[..]).unwrap(), ("Subject: only\n".into(), false));
        let huge = format!("X-Long: {}\r\n\r\nbody", "a".repeat(100_000));
        let (h, cut) = header_section(huge.as_bytes()).unwrap();
        assert!(cut);
        assert_eq!(h.len() as u64, MAX_HEADERS);
    }
}

//! The history's records: one JSON object per line, `{"t":…,"id":…,"ev":…}` and the
//! event's fields. Every text field comes from outside (a client's HELO, a Message-ID, a
//! remote server's reply) and is bounded by [`clip`] before it is recorded.

use serde::{Deserialize, Serialize};

/// Longest address, HELO name, Message-ID or host name kept, in bytes.
pub const MAX_NAME: usize = 256;
/// Longest reply or error text kept, in bytes.
pub const MAX_TEXT: usize = 512;
/// Most recipients listed in a [`Received`] event (the count is always exact).
pub const MAX_RCPTS: usize = 100;

/// One event of one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// When, in unix seconds.
    pub t: u64,
    /// The message's queue id (16 hex digits).
    pub id: String,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// What happened to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// Accepted and committed to the queue (or queued by the server itself: a notice).
    Received(Received),
    /// The message authentication results the server decided (SPF, DKIM, DMARC, ARC).
    Checks {
        /// `method=result` pairs, in the order of the `Authentication-Results:` field.
        results: Vec<Verdict>,
    },
    /// One delivery attempt to one recipient.
    Attempt(Attempt),
    /// A delivery status notification about this message was queued as message `notice`.
    Notice {
        /// The notice's own queue id.
        notice: String,
        /// Failure, delay or success.
        kind: NoticeKind,
    },
    /// An operator's action: `hold`, `release`, `delete` or `retry`.
    Operator {
        /// The action.
        action: String,
    },
    /// The message left the queue.
    Done {
        /// How it ended.
        #[serde(rename = "final")]
        state: Final,
    },
}

/// A message as it was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Received {
    /// The client's IP address (empty for a message the server made itself).
    pub client: String,
    /// The client's host name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// The name given in HELO/EHLO.
    pub helo: String,
    /// TLS version and cipher suite, when the session used TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// The authenticated user name (never anything else of the credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Size in bytes as stored.
    pub size: u64,
    /// The `Message-ID:` field's value, when the message has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The envelope sender (empty: the null reverse-path `<>`).
    pub sender: String,
    /// The envelope recipients, at most [`MAX_RCPTS`] of them.
    pub rcpts: Vec<String>,
    /// How many recipients there were in all.
    pub nrcpt: usize,
    /// The listener (its role and address), or `queue` for a notice.
    pub listener: String,
}

/// One `method=result` of the message authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// `spf`, `dkim`, `dmarc`, `arc`.
    pub method: String,
    /// `pass`, `fail`, `none`, ...
    pub result: String,
}

/// One delivery attempt to one recipient and the state it left the recipient in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The recipient.
    pub rcpt: String,
    /// Local (Maildir) delivery rather than SMTP.
    pub local: bool,
    /// The next hop that answered, as `host [address]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hop: Option<String>,
    /// The TLS version used with the next hop, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// The remote server's reply, or the local error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// What the recipient's state became.
    pub state: AttemptState,
    /// With `deferred`: the next attempt, in unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
}

/// A recipient's state after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    /// Delivered here or handed to the next hop.
    Delivered,
    /// To be tried again.
    Deferred,
    /// Failed for good.
    Failed,
}

/// The kind of a delivery status notification (RFC 3464 `Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// Some recipients failed.
    Failure,
    /// Some recipients are still being tried.
    Delay,
    /// Delivered or relayed, and the sender asked to be told.
    Success,
}

/// How a message left the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Final {
    /// Every recipient delivered.
    Delivered,
    /// Some recipient failed (the sender was sent a notice when one was possible).
    Bounced,
    /// Some recipient was still failing temporarily when the message grew too old (4.4.7).
    Expired,
    /// Deleted by the operator.
    Deleted,
    /// Dropped at arrival by a content filter (a milter's discard): the client was told
    /// 250, nothing was queued.
    Discarded,
}

impl Record {
    /// The record as one line of JSON, `\n` included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = Vec::new();
        self.write_line(&mut line);
        line
    }

    /// Appends the record as one line of JSON, `\n` included, to `out` (the writer's
    /// buffer, reused: no allocation per record).
    pub fn write_line(&self, out: &mut Vec<u8>) {
        let start = out.len();
        // Serializing plain data into a Vec cannot fail; should it, the line is left out whole.
        if serde_json::to_writer(&mut *out, self).is_ok() {
            out.push(b'\n');
        } else {
            out.truncate(start);
        }
    }

    /// Parses one line; `None` for anything that is not a whole record (a damaged or
    /// truncated line, a line from a newer version).
    pub fn from_line(line: &[u8]) -> Option<Record> {
        serde_json::from_slice(line).ok()
    }
}

impl Received {
    /// Bounds every field: names to [`MAX_NAME`] bytes, the recipient list to
    /// [`MAX_RCPTS`] entries.
    pub fn clipped(mut self) -> Received {
        for s in [&mut self.client, &mut self.helo, &mut self.sender, &mut self.listener] {
            clip_in_place(s, MAX_NAME);
        }
        for s in [&mut self.client_name, &mut self.tls, &mut self.user, &mut self.message_id].into_iter().flatten() {
            clip_in_place(s, MAX_NAME);
        }
        self.nrcpt = self.nrcpt.max(self.rcpts.len());
        self.rcpts.truncate(MAX_RCPTS);
        for r in &mut self.rcpts {
            clip_in_place(r, MAX_NAME);
        }
        self
    }
}

impl Attempt {
    /// Bounds every field: names to [`MAX_NAME`] bytes, the reply to [`MAX_TEXT`].
    pub fn clipped(mut self) -> Attempt {
        clip_in_place(&mut self.rcpt, MAX_NAME);
        for s in [&mut self.hop, &mut self.tls].into_iter().flatten() {
            clip_in_place(s, MAX_NAME);
        }
        if let Some(r) = &mut self.reply {
            clip_in_place(r, MAX_TEXT);
        }
        self
    }
}

/// `s` cut to at most `max` bytes (at a character boundary, with `…` marking the cut) and
/// with control characters replaced by `?`, so that a record stays one short line whatever a
/// client or a remote server sent. Terminal escaping is the reader's job (`dakiya trace`).
pub fn clip(s: &str, max: usize) -> String {
    const MARK: &str = "…";
    let clean = |c: char| if c.is_control() { '?' } else { c };
    if s.len() <= max {
        return s.chars().map(clean).collect();
    }
    let mut out = String::with_capacity(max);
    for c in s.chars() {
        if out.len() + c.len_utf8() + MARK.len() > max {
            break;
        }
        out.push(clean(c));
    }
    out.push_str(MARK);
    out
}

/// [`clip`] of `s` in place: the string is rebuilt only when it is too long or has a control
/// character, so the usual field costs no allocation.
fn clip_in_place(s: &mut String, max: usize) {
    if s.len() > max || s.chars().any(char::is_control) {
        *s = clip(s, max);
    }
}

/// The `method=result` pairs of an `Authentication-Results:` field (RFC 8601 §2.2) found in
/// `fields` (the header fields the server put on top of a message); empty when there is none.
pub fn verdicts(fields: &str) -> Vec<Verdict> {
    let mut value = String::new();
    let mut inside = false;
    for line in fields.split("\r\n").flat_map(|l| l.split('\n')) {
        if inside && line.starts_with([' ', '\t']) {
            value.push(' ');
            value.push_str(line.trim());
            continue;
        }
        if inside {
            break;
        }
        if let Some((name, rest)) = line.split_once(':')
            && name.eq_ignore_ascii_case("Authentication-Results")
        {
            inside = true;
            value.push_str(rest.trim());
        }
    }
    // After the authserv-id, each resinfo is `; method=result ...`.
    value
        .split(';')
        .skip(1)
        .filter_map(|resinfo| {
            let first = resinfo.split_whitespace().next()?;
            let (method, result) = first.split_once('=')?;
            let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            (ok(method) && ok(result))
                .then(|| Verdict { method: method.to_ascii_lowercase(), result: result.to_ascii_lowercase() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt() -> Record {
        Record {
            t: 1_700_000_000,
            id: "06B15C91CD0D88FB".into(),
            event: Event::Attempt(Attempt {
                rcpt: "bob@example.net".into(),
                local: false,
                hop: Some("mx.example.net [192.0.2.1]".into()),
                tls: None,
                reply: Some("smtp; 451 4.3.0 try later".into()),
                state: AttemptState::Deferred,
                until: Some(1_700_000_060),
            }),
        }
    }

    #[test]
    fn records_round_trip() {
        let records = vec![
            attempt(),
            Record {
                t: 1,
                id: "A".into(),
                event: Event::Received(Received {
                    client: "127.0.0.1".into(),
                    helo: "client.test".into(),
                    tls: Some("TLSv1_3 TLS13_AES_256_GCM_SHA384".into()),
                    user: Some("alice".into()),
                    size: 42,
                    message_id: Some("<x@y>".into()),
                    sender: "a@b".into(),
                    rcpts: vec!["c@d".into()],
                    nrcpt: 1,
                    listener: "submission 127.0.0.1:587".into(),
                    ..Received::default()
                }),
            },
            Record { t: 2, id: "A".into(), event: Event::Checks { results: verdicts("x") } },
            Record { t: 3, id: "A".into(), event: Event::Notice { notice: "B".into(), kind: NoticeKind::Failure } },
            Record { t: 4, id: "A".into(), event: Event::Operator { action: "hold".into() } },
            Record { t: 5, id: "A".into(), event: Event::Done { state: Final::Bounced } },
        ];
        for r in records {
            let line = r.to_line();
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(Record::from_line(&line), Some(r));
        }
        let line = String::from_utf8(attempt().to_line()).unwrap();
        assert!(line.starts_with(r#"{"t":1700000000,"id":"06B15C91CD0D88FB","ev":"attempt","#), "{line}");
    }

    #[test]
    fn damaged_lines_are_not_records() {
        let line = attempt().to_line();
        assert_eq!(Record::from_line(&line[..line.len() / 2]), None);
        assert_eq!(Record::from_line(b"\xff\xfe garbage"), None);
        assert_eq!(Record::from_line(br#"{"t":1,"id":"A","ev":"teleported"}"#), None);
    }

    #[test]
    fn clip_bounds_and_neutralises() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("a\r\nb\u{1b}[2J", 64), "a??b?[2J");
        let long = "é".repeat(300);
        let c = clip(&long, MAX_NAME);
        assert!(c.len() <= MAX_NAME && c.ends_with('…'), "{}", c.len());
        assert!(c.starts_with("éé"));
        let a = Attempt {
            rcpt: "x".repeat(10_000),
            local: true,
            hop: None,
            tls: None,
            reply: Some("y".repeat(10_000)),
            state: AttemptState::Failed,
            until: None,
        }
        .clipped();
        assert!(a.rcpt.len() <= MAX_NAME && a.reply.unwrap().len() <= MAX_TEXT);
        let r = Received { rcpts: vec!["r@x".into(); 500], helo: "h\n".repeat(1000), ..Received::default() }.clipped();
        assert_eq!((r.rcpts.len(), r.nrcpt), (MAX_RCPTS, 500));
        assert!(r.helo.len() <= MAX_NAME && !r.helo.contains('\n'));
    }

    #[test]
    fn verdicts_from_our_authentication_results() {
        let fields = "ARC-Seal: i=1; a=rsa-sha256; cv=none\r\n\
            Authentication-Results: mx.example.org;\r\n\tspf=pass smtp.mailfrom=a@b.example;\r\n\
            \tdkim=fail header.d=b.example; dmarc=none (p=none) header.from=b.example;\r\n\tarc=none\r\n\
            X-Other: spf=fail\r\n";
        let got: Vec<String> = verdicts(fields).iter().map(|v| format!("{}={}", v.method, v.result)).collect();
        assert_eq!(got, ["spf=pass", "dkim=fail", "dmarc=none", "arc=none"]);
        assert!(verdicts("Authentication-Results: mx.example.org; none\r\n").is_empty());
        assert!(verdicts("").is_empty());
    }
}

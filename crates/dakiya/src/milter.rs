//! Content filters over the milter protocol (docs/milter.md): the milters a listener names
//! are asked at MAIL, each RCPT and the end of the message. A session opens its milter
//! connections lazily, at its first MAIL, and keeps them for its later transactions; an idle
//! session holds none. The protocol itself is in crates/milter; this is the driver.

mod link;
pub mod macros;

use dakiya_config::{DefaultAction, Milter};
use dakiya_milter::edit::{self, Edits};
use dakiya_milter::packet::Command;
use dakiya_milter::reply::{Action, Refusal};
use dakiya_milter::{MILTER_CHUNK_SIZE, Stage};
use dakiya_proto::logtext::Esc;
use dakiya_proto::{Enhanced, Reply};
use link::{Link, LinkError};
pub use macros::Facts;
use std::sync::Arc;
use tokio::time::Instant;

/// The milters of one SMTP session.
pub struct Filters {
    /// The `[[milter]]` names the listener gives, in order.
    names: Arc<[String]>,
    slots: Vec<Slot>,
    /// What the macros and the connect and HELO stages tell.
    pub facts: Facts,
    /// A transaction has been shown to the milters (MAIL sent) and not ended.
    in_tx: bool,
    /// The milter that said discard during this transaction.
    discard: Option<String>,
}

/// One milter for the session.
struct Slot {
    milter: Milter,
    link: Option<Link>,
    /// The milter refused the connection or HELO: every transaction gets this reply.
    refused: Option<Reply>,
    /// The HELO name last sent (a second EHLO is sent again).
    helo_sent: Option<String>,
    /// This milter is finished with the current transaction.
    done: bool,
    /// The milter accepted the session at connect or HELO: it asks nothing more of it.
    accepted: bool,
}

/// What the milters decided at the end of the message.
#[derive(Default)]
pub struct Outcome {
    /// Their edits, in the order the milters (and each milter) asked for them.
    pub edits: Edits,
    /// The milter that said discard.
    pub discard: Option<String>,
    /// The milter that quarantined the message.
    pub quarantined_by: Option<String>,
}

impl Filters {
    /// The session's filters: `names` from its listener; nothing is opened yet.
    pub fn new(names: Arc<[String]>, facts: Facts) -> Filters {
        Filters { names, slots: Vec::new(), facts, in_tx: false, discard: None }
    }

    /// Whether the listener names any milter.
    pub fn configured(&self) -> bool {
        !self.names.is_empty()
    }

    /// Whether some milter takes part in the current transaction (or one said discard).
    pub fn active(&self) -> bool {
        self.in_tx && (self.discard.is_some() || self.slots.iter().any(|s| !s.done))
    }

    /// MAIL: takes the milters of the configuration in force, opens what is not open
    /// (connect and HELO stages first), and asks each. `submitted`: the client
    /// authenticated or is trusted, which milters with `skip_authenticated` let through.
    pub async fn mail(
        &mut self,
        milters: &[Milter],
        submitted: bool,
        args: Vec<String>,
        body_cap: usize,
    ) -> Result<(), Reply> {
        self.end_transaction().await;
        self.refresh(milters);
        self.in_tx = true;
        self.discard = None;
        let sender = args.first().map(|a| a.trim_matches(['<', '>']).to_string()).unwrap_or_default();
        let facts = self.facts.clone();
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            slot.done = submitted && slot.milter.skip_authenticated;
            if slot.done {
                continue;
            }
            let result = match slot.open(&facts, body_cap).await {
                Ok(()) => match &slot.refused {
                    Some(r) => Ok(Err(r.clone())),
                    None if slot.accepted => {
                        slot.done = true;
                        Ok(Ok(()))
                    }
                    None => slot.ask(Stage::Mail, facts.mail(&sender), &Command::Mail(&args)).await.map(verdict),
                },
                Err(e) => Err(e),
            };
            if let Err(reply) = self.settle(i, result) {
                self.end_transaction().await;
                return Err(reply);
            }
        }
        Ok(())
    }

    /// RCPT (an acceptable recipient): a refusal refuses this recipient only.
    pub async fn rcpt(&mut self, args: Vec<String>) -> Result<(), Reply> {
        let address = args.first().map(|a| a.trim_matches(['<', '>']).to_string()).unwrap_or_default();
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            if slot.done || !self.in_tx {
                continue;
            }
            let result = slot.ask(Stage::Rcpt, macros::rcpt(&address), &Command::Rcpt(&args)).await;
            self.settle(i, result.map(verdict))?;
        }
        Ok(())
    }

    /// The end of the message: DATA, the header fields, the body in chunks and the end of
    /// message, to each milter still taking part; its edits collected.
    pub async fn end_of_message(&mut self, content: &[u8], queue_id: &str) -> Result<Outcome, Reply> {
        let mut out = Outcome::default();
        let (fields, body_at) = edit::split(content);
        for i in 0..self.slots.len() {
            if self.slots[i].done || !self.in_tx || self.discard.is_some() {
                continue;
            }
            let slot = &mut self.slots[i];
            let name = slot.milter.name.clone();
            let result = slot.message(&fields, &content[body_at..], queue_id, &mut out.edits).await;
            if out.edits.quarantine.is_some() && out.quarantined_by.is_none() {
                out.quarantined_by = Some(name);
            }
            if let Err(reply) = self.settle(i, result.map(verdict)) {
                self.in_tx = false;
                return Err(reply);
            }
        }
        self.in_tx = false;
        out.discard = self.discard.take();
        Ok(out)
    }

    /// The transaction ended without an end of message (RSET, a refusal, a new MAIL):
    /// `SMFIC_ABORT` to the milters that saw it; their connections stay.
    pub async fn end_transaction(&mut self) {
        if !std::mem::take(&mut self.in_tx) {
            return;
        }
        for slot in &mut self.slots {
            slot.send_only(&Command::Abort.encode()).await;
        }
    }

    /// The session is over: `SMFIC_QUIT` to every open milter.
    pub async fn quit(&mut self) {
        self.end_transaction().await;
        for slot in &mut self.slots {
            slot.send_only(&Command::Quit.encode()).await;
            slot.link = None;
        }
    }

    /// Follows the configuration in force: a milter whose settings changed is reconnected.
    fn refresh(&mut self, milters: &[Milter]) {
        let mut slots = Vec::with_capacity(self.names.len());
        for name in self.names.iter() {
            let Some(m) = milters.iter().find(|m| &m.name == name) else { continue };
            match self.slots.iter().position(|s| &s.milter == m) {
                Some(i) => slots.push(self.slots.swap_remove(i)),
                None => slots.push(Slot {
                    milter: m.clone(),
                    link: None,
                    refused: None,
                    helo_sent: None,
                    done: false,
                    accepted: false,
                }),
            }
        }
        self.slots = slots;
    }

    /// Turns one milter's answer into the SMTP outcome; a failure takes the milter's
    /// default action.
    fn settle(&mut self, i: usize, result: Result<Result<(), Reply>, LinkError>) -> Result<(), Reply> {
        let slot = &mut self.slots[i];
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reply)) if reply.code == 250 => {
                // Discard: the transaction goes on for the client and ends in nothing.
                tracing::info!(milter = %Esc(&slot.milter.name), "milter: discard");
                self.discard = Some(slot.milter.name.clone());
                for s in &mut self.slots {
                    s.done = true;
                }
                Ok(())
            }
            Ok(Err(reply)) => {
                tracing::info!(milter = %Esc(&slot.milter.name), reply = %Esc(reply.to_wire().trim_end()), "milter refused");
                Err(reply)
            }
            Err(e) => {
                tracing::warn!(milter = %Esc(&slot.milter.name), error = %Esc(&e.to_string()), action = slot.milter.default_action.as_str(), "milter failed");
                slot.link = None;
                slot.helo_sent = None;
                slot.done = true;
                match slot.milter.default_action {
                    DefaultAction::Accept => Ok(()),
                    DefaultAction::Tempfail => {
                        Err(Reply::new(451, Enhanced(4, 7, 1), "Content filter unavailable, try again later"))
                    }
                }
            }
        }
    }
}

/// The MAIL parameters as the milter sees them (`SMFIC_MAIL` after the reverse-path).
pub fn mail_params(p: &dakiya_proto::params::MailParams) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(size) = p.size {
        out.push(format!("SIZE={size}"));
    }
    if p.body == dakiya_proto::params::BodyType::EightBitMime {
        out.push("BODY=8BITMIME".to_string());
    }
    if p.smtputf8 {
        out.push("SMTPUTF8".to_string());
    }
    out
}

/// What a stage's action means for the client: `Ok` to go on; `Err` with a reply to refuse
/// (a 250 "reply" stands for discard).
type Verdict = Result<(), Reply>;

fn verdict(a: Option<Action>) -> Verdict {
    match a {
        None | Some(Action::Continue | Action::Skip | Action::Accept) => Ok(()),
        Some(Action::Reject(r)) => Err(refusal(r, 550, "Message rejected by content filter")),
        Some(Action::Tempfail(r)) => Err(refusal(r, 451, "Content filter says try again later")),
        Some(Action::Discard) => Err(Reply::new(250, Enhanced(2, 0, 0), "discarded")),
    }
}

/// The milter's own reply when it gave a valid one (crates/milter checks it), else ours.
fn refusal(r: Option<Refusal>, code: u16, text: &str) -> Reply {
    match r {
        Some(r) => {
            let class = (r.code / 100) as u8;
            let e = r.enhanced.map_or(Enhanced(class, 7, 1), |(c, s, d)| Enhanced(c, s, d));
            Reply { code: r.code, enhanced: Some(e), lines: r.lines }
        }
        None => Reply::new(code, Enhanced((code / 100) as u8, 7, 1), text),
    }
}

impl Slot {
    /// Opens and negotiates, then the connect and HELO stages, unless open already (HELO
    /// again when the client's name changed).
    async fn open(&mut self, facts: &Facts, body_cap: usize) -> Result<(), LinkError> {
        if self.link.is_none() {
            self.link = Some(Link::open(&self.milter, body_cap).await?);
            self.refused = None;
            self.accepted = false;
            self.helo_sent = None;
            let peer = facts.peer;
            let (family, port, address) = match peer {
                Some(p) if p.ip().to_canonical().is_ipv4() => {
                    (dakiya_milter::Family::Inet, p.port(), p.ip().to_canonical().to_string())
                }
                Some(p) => (dakiya_milter::Family::Inet6, p.port(), p.ip().to_string()),
                None => (dakiya_milter::Family::Unknown, 0, String::new()),
            };
            let name = facts.name();
            let connect = Command::Connect { hostname: &name, family, port, address: &address };
            let a = self.ask(Stage::Connect, facts.connect(), &connect).await?;
            self.session_action(a);
        }
        if self.refused.is_none() && !self.accepted && self.helo_sent.as_deref() != Some(facts.helo.as_str()) {
            self.helo_sent = Some(facts.helo.clone());
            let a = self.ask(Stage::Helo, facts.helo(), &Command::Helo(&facts.helo)).await?;
            self.session_action(a);
        }
        Ok(())
    }

    /// An action at connect or HELO: a refusal holds for the whole session; accept means
    /// the milter wants nothing more of this session.
    fn session_action(&mut self, a: Option<Action>) {
        match a {
            Some(Action::Accept) => self.accepted = true,
            Some(Action::Reject(_) | Action::Tempfail(_)) => self.refused = verdict(a).err(),
            _ => {}
        }
    }

    /// Sends a stage (its macros first) and, unless the milter said it does not answer it,
    /// waits for the action. `None`: nothing to wait for.
    async fn ask(
        &mut self,
        stage: Stage,
        macros: Vec<(String, String)>,
        command: &Command<'_>,
    ) -> Result<Option<Action>, LinkError> {
        let m = &self.milter;
        let Some(link) = self.link.as_mut() else { return Ok(None) };
        let limit = if stage == Stage::EndOfMessage { m.eom_timeout } else { m.command_timeout.max(m.eom_timeout) };
        link.ask(stage, &macros, command, m.command_timeout, limit).await
    }

    /// DATA to end of message for one milter; its edits go into `edits`.
    async fn message(
        &mut self,
        fields: &[edit::Field],
        body: &[u8],
        queue_id: &str,
        edits: &mut Edits,
    ) -> Result<Option<Action>, LinkError> {
        let id = macros::queue_id(queue_id);
        if let Some(a) = self.ask(Stage::Data, id.clone(), &Command::Data).await?.filter(stops) {
            return Ok(Some(a));
        }
        for f in fields.iter().filter(|f| !f.name.is_empty()) {
            let value = f.value();
            let header = Command::Header { name: &f.name, value: &value };
            if let Some(a) = self.ask(Stage::Header, Vec::new(), &header).await?.filter(stops) {
                return Ok(Some(a));
            }
        }
        if let Some(a) = self.ask(Stage::EndOfHeaders, id.clone(), &Command::EndOfHeaders).await?.filter(stops) {
            return Ok(Some(a));
        }
        for chunk in body.chunks(MILTER_CHUNK_SIZE) {
            match self.ask(Stage::Body, Vec::new(), &Command::Body(chunk)).await? {
                Some(Action::Skip) => break,
                Some(a) if stops(&a) => return Ok(Some(a)),
                _ => {}
            }
        }
        self.end_of_message(id, edits).await
    }

    /// `SMFIC_BODYEOB`, then edits until the final action, all within `eom_timeout`.
    async fn end_of_message(
        &mut self,
        id: Vec<(String, String)>,
        edits: &mut Edits,
    ) -> Result<Option<Action>, LinkError> {
        let action = self.ask(Stage::EndOfMessage, id, &Command::EndOfMessage).await?;
        if let Some(link) = self.link.as_mut() {
            edits.merge(link.conv.take_edits());
        }
        Ok(action)
    }

    /// A packet that gets no answer; a failure closes the connection (the next
    /// transaction opens a new one).
    async fn send_only(&mut self, packet: &[u8]) {
        let Some(link) = self.link.as_mut() else { return };
        if link.write(packet, Instant::now() + self.milter.command_timeout).await.is_err() {
            self.link = None;
            self.helo_sent = None;
        }
    }
}

/// An action that ends this milter's part in the message before its end.
fn stops(a: &Action) -> bool {
    !matches!(a, Action::Continue | Action::Skip)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle session carries its `Filters` and nothing else: no milter connection is
    /// opened before MAIL, so the per-session cost of configuring a milter is this.
    #[test]
    fn idle_sessions_hold_only_the_names() {
        let f = Filters::new(Arc::from(vec!["rspamd".to_string()]), Facts::default());
        assert!(f.slots.is_empty() && !f.active());
        assert!(std::mem::size_of::<Filters>() <= 320, "{}", std::mem::size_of::<Filters>());
    }

    #[test]
    fn refusals_keep_a_valid_milter_reply_and_default_otherwise() {
        let r = Refusal { code: 554, enhanced: Some((5, 7, 1)), lines: vec!["Gtube pattern".into()] };
        assert_eq!(verdict(Some(Action::Reject(Some(r)))).unwrap_err().to_wire(), "554 5.7.1 Gtube pattern\r\n");
        let r = Refusal { code: 450, enhanced: None, lines: vec!["later".into()] };
        assert_eq!(verdict(Some(Action::Tempfail(Some(r)))).unwrap_err().to_wire(), "450 4.7.1 later\r\n");
        assert_eq!(
            verdict(Some(Action::Tempfail(None))).unwrap_err().to_wire(),
            "451 4.7.1 Content filter says try again later\r\n"
        );
        assert!(verdict(Some(Action::Accept)).is_ok() && verdict(None).is_ok());
    }
}

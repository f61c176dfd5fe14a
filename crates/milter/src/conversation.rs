//! The client's side of one milter conversation, sans-IO: which stages go out (and with
//! which macros), which are answered, and what the packets that come back mean — progress,
//! edits (at the end of message only, under caps) and the final action. The driver writes
//! the bytes, reads packets with its deadlines, and feeds them here.

use crate::edit::Edits;
use crate::negotiate::{Negotiated, Stage};
use crate::packet::{Command, Packet};
use crate::reply::{Action, ReplyError, Response, interpret};

/// One negotiated conversation with a milter.
#[derive(Debug)]
pub struct Conversation {
    negotiated: Negotiated,
    /// A replacement body may grow to this many octets.
    body_cap: usize,
    /// The stage whose answer is awaited, if any.
    waiting: Option<Stage>,
    edits: Edits,
}

/// What to write for a stage.
#[derive(Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The macro packet (if any) and the command packet.
    pub bytes: Vec<u8>,
    /// Whether an answer follows (the milter did not ask for `NR_*` on this stage).
    pub answered: bool,
}

/// What a packet from the milter means for the stage awaited.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Wait for another packet; `progress`: the milter said it is still working
    /// (`SMFIR_PROGRESS`), so the per-packet deadline starts again.
    Wait { progress: bool },
    /// The stage's action.
    Done(Action),
}

/// A packet the conversation cannot take; the connection is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The packet itself is bad (see [`ReplyError`]).
    Reply(ReplyError),
    /// A packet while no answer was awaited.
    Unsolicited,
    /// An edit before the end of message.
    EditTooEarly,
    /// More edits, or a larger body, than the caps allow.
    TooMuch,
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolError::Reply(e) => e.fmt(f),
            ProtocolError::Unsolicited => f.write_str("a packet nobody asked for"),
            ProtocolError::EditTooEarly => f.write_str("an edit before the end of message"),
            ProtocolError::TooMuch => f.write_str("more edits than allowed"),
        }
    }
}

impl std::error::Error for ProtocolError {}

impl Conversation {
    /// After a successful negotiation.
    pub fn new(negotiated: Negotiated, body_cap: usize) -> Conversation {
        Conversation { negotiated, body_cap, waiting: None, edits: Edits::default() }
    }

    /// What the milter agreed to.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// The bytes for `stage` (its macros first, for the command's code), or `None` when the
    /// milter asked not to get this stage (`NO*`).
    pub fn send(&mut self, stage: Stage, macros: &[(String, String)], command: &Command) -> Option<Outgoing> {
        if !self.negotiated.sends(stage) {
            return None;
        }
        let mut bytes = if macros.is_empty() {
            Vec::new()
        } else {
            Command::Macro { for_cmd: command.code(), pairs: macros }.encode()
        };
        bytes.extend_from_slice(&command.encode());
        let answered = self.negotiated.answers(stage);
        self.waiting = answered.then_some(stage);
        if stage == Stage::Data {
            self.edits = Edits::default();
        }
        Some(Outgoing { bytes, answered })
    }

    /// Takes one packet that arrived while a stage's answer was awaited.
    pub fn receive(&mut self, packet: Packet) -> Result<Next, ProtocolError> {
        let Some(stage) = self.waiting else { return Err(ProtocolError::Unsolicited) };
        match interpret(packet, &self.negotiated).map_err(ProtocolError::Reply)? {
            Response::Progress => Ok(Next::Wait { progress: true }),
            Response::Modify(_) if stage != Stage::EndOfMessage => Err(ProtocolError::EditTooEarly),
            Response::Modify(m) => {
                self.edits.push(m, self.body_cap).map_err(|_| ProtocolError::TooMuch)?;
                Ok(Next::Wait { progress: false })
            }
            Response::Action(Action::Skip) if stage != Stage::Body || !self.negotiated.may_skip() => {
                Err(ProtocolError::Reply(ReplyError::Unknown(b's')))
            }
            Response::Action(a) => {
                self.waiting = None;
                Ok(Next::Done(a))
            }
        }
    }

    /// The edits collected at the end of message (taken: the next message starts empty).
    pub fn take_edits(&mut self) -> Edits {
        std::mem::take(&mut self.edits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::negotiate::{actions, protocol};
    use crate::reply::Modification;

    fn conv(proto: u32) -> Conversation {
        Conversation::new(Negotiated { version: 6, actions: actions::OFFERED, protocol: proto }, 100)
    }

    fn p(code: u8, data: &[u8]) -> Packet {
        Packet { code, data: data.to_vec() }
    }

    #[test]
    fn stages_follow_the_negotiated_flags() {
        let mut c = conv(protocol::NOHELO | protocol::NR_RCPT);
        assert_eq!(c.send(Stage::Helo, &[], &Command::Helo("x")), None);
        let out =
            c.send(Stage::Rcpt, &[("{rcpt_addr}".into(), "a@b".into())], &Command::Rcpt(&["<a@b>".into()])).unwrap();
        assert!(!out.answered);
        assert!(out.bytes.starts_with(&[0, 0, 0, 18, b'D', b'R']), "macros first, for RCPT: {:?}", out.bytes);
        assert_eq!(c.receive(p(b'c', b"")), Err(ProtocolError::Unsolicited), "nothing was awaited");
        let out = c.send(Stage::Mail, &[], &Command::Mail(&["<a@b>".into()])).unwrap();
        assert!(out.answered);
        assert_eq!(c.receive(p(b'p', b"")), Ok(Next::Wait { progress: true }));
        assert_eq!(c.receive(p(b'a', b"")), Ok(Next::Done(Action::Accept)));
    }

    #[test]
    fn edits_only_at_the_end_of_message_and_under_caps() {
        let mut c = conv(0);
        c.send(Stage::Mail, &[], &Command::Mail(&["<a@b>".into()]));
        assert_eq!(c.receive(p(b'h', b"X\0y\0")), Err(ProtocolError::EditTooEarly));
        c.send(Stage::Data, &[], &Command::Data);
        c.receive(p(b'c', b"")).unwrap();
        c.send(Stage::EndOfMessage, &[], &Command::EndOfMessage);
        assert_eq!(c.receive(p(b'h', b"X\0y\0")), Ok(Next::Wait { progress: false }));
        assert_eq!(c.receive(p(b'b', &[b'x'; 101])), Err(ProtocolError::TooMuch));
        c.send(Stage::EndOfMessage, &[], &Command::EndOfMessage);
        assert_eq!(c.receive(p(b'c', b"")), Ok(Next::Done(Action::Continue)));
        let e = c.take_edits();
        assert_eq!(e.headers.len(), 1);
        assert_eq!(c.take_edits(), Edits::default());
        let _ = Modification::Quarantine(String::new());
    }

    #[test]
    fn skip_only_after_a_body_chunk_when_negotiated() {
        let mut c = conv(0);
        c.send(Stage::Body, &[], &Command::Body(b"x"));
        assert!(c.receive(p(b's', b"")).is_err(), "SKIP was not negotiated");
        let mut c = conv(protocol::SKIP);
        c.send(Stage::Body, &[], &Command::Body(b"x"));
        assert_eq!(c.receive(p(b's', b"")), Ok(Next::Done(Action::Skip)));
        c.send(Stage::Mail, &[], &Command::Mail(&[]));
        assert!(c.receive(p(b's', b"")).is_err(), "SKIP after MAIL");
    }
}

//! Option negotiation (`SMFIC_OPTNEG`): which actions the milter may take, which stages it
//! wants, and which it answers.

use crate::packet::Packet;

/// The protocol version we speak.
pub const VERSION: u32 = 6;

/// `SMFIF_*`: the actions we let a milter take (all of them but `SETSYMLIST`).
pub mod actions {
    pub const ADDHDRS: u32 = 0x01;
    pub const CHGBODY: u32 = 0x02;
    pub const ADDRCPT: u32 = 0x04;
    pub const DELRCPT: u32 = 0x08;
    pub const CHGHDRS: u32 = 0x10;
    pub const QUARANTINE: u32 = 0x20;
    pub const CHGFROM: u32 = 0x40;
    pub const ADDRCPT_PAR: u32 = 0x80;
    /// Every action we carry out.
    pub const OFFERED: u32 = ADDHDRS | CHGBODY | ADDRCPT | DELRCPT | CHGHDRS | QUARANTINE | CHGFROM | ADDRCPT_PAR;
}

/// `SMFIP_*`: protocol steps the milter may leave out (`NO*`) or not answer (`NR_*`).
pub mod protocol {
    pub const NOCONNECT: u32 = 0x1;
    pub const NOHELO: u32 = 0x2;
    pub const NOMAIL: u32 = 0x4;
    pub const NORCPT: u32 = 0x8;
    pub const NOBODY: u32 = 0x10;
    pub const NOHDRS: u32 = 0x20;
    pub const NOEOH: u32 = 0x40;
    pub const NR_HDR: u32 = 0x80;
    pub const NOUNKNOWN: u32 = 0x100;
    pub const NODATA: u32 = 0x200;
    pub const SKIP: u32 = 0x400;
    pub const NR_CONN: u32 = 0x1000;
    pub const NR_HELO: u32 = 0x2000;
    pub const NR_MAIL: u32 = 0x4000;
    pub const NR_RCPT: u32 = 0x8000;
    pub const NR_DATA: u32 = 0x10000;
    pub const NR_UNKN: u32 = 0x20000;
    pub const NR_EOH: u32 = 0x40000;
    pub const NR_BODY: u32 = 0x80000;
    /// Everything we can honour: every `NO*` and `NR_*`, and `SKIP`. Not `RCPT_REJ` (we
    /// never show a milter a recipient we refused), not `HDR_LEADSPC` (values go without
    /// the space after the colon), and we send no unknown commands anyway.
    pub const OFFERED: u32 = NOCONNECT
        | NOHELO
        | NOMAIL
        | NORCPT
        | NOBODY
        | NOHDRS
        | NOEOH
        | NR_HDR
        | NOUNKNOWN
        | NODATA
        | SKIP
        | NR_CONN
        | NR_HELO
        | NR_MAIL
        | NR_RCPT
        | NR_DATA
        | NR_UNKN
        | NR_EOH
        | NR_BODY;
}

/// A stage of the SMTP session as the milter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Helo,
    Mail,
    Rcpt,
    Data,
    Header,
    EndOfHeaders,
    Body,
    EndOfMessage,
}

/// What the milter agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The milter's protocol version (2 to 6).
    pub version: u32,
    /// The actions it may take (a subset of what we offered).
    pub actions: u32,
    /// The steps it leaves out or does not answer.
    pub protocol: u32,
}

/// Why the milter's answer to `SMFIC_OPTNEG` is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NegotiationError {
    /// Not an `'O'` packet, or too short.
    Malformed,
    /// A version we do not speak.
    Version(u32),
}

impl std::fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NegotiationError::Malformed => f.write_str("malformed option negotiation"),
            NegotiationError::Version(v) => write!(f, "unsupported milter protocol version {v}"),
        }
    }
}

impl std::error::Error for NegotiationError {}

impl Negotiated {
    /// Reads the milter's `SMFIC_OPTNEG` answer. Bits we did not offer are dropped: a milter
    /// asking for more than it was offered gets only what was.
    pub fn from_reply(p: &Packet) -> Result<Negotiated, NegotiationError> {
        if p.code != b'O' || p.data.len() < 12 {
            return Err(NegotiationError::Malformed);
        }
        let word = |i: usize| u32::from_be_bytes([p.data[i], p.data[i + 1], p.data[i + 2], p.data[i + 3]]);
        let version = word(0);
        if !(2..=VERSION).contains(&version) {
            return Err(NegotiationError::Version(version));
        }
        Ok(Negotiated { version, actions: word(4) & actions::OFFERED, protocol: word(8) & protocol::OFFERED })
    }

    /// Whether the stage is sent at all (the milter's `NO*` flags).
    pub fn sends(&self, stage: Stage) -> bool {
        use protocol::*;
        let flag = match stage {
            Stage::Connect => NOCONNECT,
            Stage::Helo => NOHELO,
            Stage::Mail => NOMAIL,
            Stage::Rcpt => NORCPT,
            Stage::Data => NODATA,
            Stage::Header => NOHDRS,
            Stage::EndOfHeaders => NOEOH,
            Stage::Body => NOBODY,
            Stage::EndOfMessage => 0,
        };
        self.protocol & flag == 0
    }

    /// Whether the milter answers the stage (its `NR_*` flags); end of message always is.
    pub fn answers(&self, stage: Stage) -> bool {
        use protocol::*;
        let flag = match stage {
            Stage::Connect => NR_CONN,
            Stage::Helo => NR_HELO,
            Stage::Mail => NR_MAIL,
            Stage::Rcpt => NR_RCPT,
            Stage::Data => NR_DATA,
            Stage::Header => NR_HDR,
            Stage::EndOfHeaders => NR_EOH,
            Stage::Body => NR_BODY,
            Stage::EndOfMessage => 0,
        };
        self.protocol & flag == 0
    }

    /// Whether the milter may answer a body chunk with `SMFIR_SKIP`.
    pub fn may_skip(&self) -> bool {
        self.protocol & protocol::SKIP != 0
    }

    /// Whether the milter may take `action` (an `SMFIF_*` bit).
    pub fn allows(&self, action: u32) -> bool {
        self.actions & action == action
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(version: u32, act: u32, proto: u32) -> Packet {
        let mut data = Vec::new();
        for n in [version, act, proto] {
            data.extend_from_slice(&n.to_be_bytes());
        }
        Packet { code: b'O', data }
    }

    #[test]
    fn flags_decide_what_is_sent_and_answered() {
        let n = Negotiated::from_reply(&reply(6, 0xffff_ffff, protocol::NOHELO | protocol::NR_RCPT | protocol::SKIP))
            .unwrap();
        assert_eq!(n.actions, actions::OFFERED, "bits never offered are dropped");
        assert!(!n.sends(Stage::Helo));
        assert!(n.sends(Stage::Rcpt) && !n.answers(Stage::Rcpt));
        assert!(n.answers(Stage::EndOfMessage) && n.sends(Stage::EndOfMessage));
        assert!(n.may_skip());
        assert!(n.allows(actions::CHGBODY));
    }

    #[test]
    fn bad_negotiations_are_refused() {
        assert_eq!(Negotiated::from_reply(&reply(7, 0, 0)), Err(NegotiationError::Version(7)));
        assert_eq!(Negotiated::from_reply(&reply(1, 0, 0)), Err(NegotiationError::Version(1)));
        let short = Packet { code: b'O', data: vec![0; 11] };
        assert_eq!(Negotiated::from_reply(&short), Err(NegotiationError::Malformed));
        let wrong = Packet { code: b'c', data: vec![0; 12] };
        assert_eq!(Negotiated::from_reply(&wrong), Err(NegotiationError::Malformed));
        // Version 2 milters (no NR_* flags) still work.
        assert!(Negotiated::from_reply(&reply(2, 0, 0)).is_ok());
    }
}

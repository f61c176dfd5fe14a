//! Where the client is in the dialog, so the driver can choose the read timeout
//! (RFC 5321 §4.5.3.2) and failures can say where they happened.

use std::time::Duration;

/// A step of the client's dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Waiting for the 220 greeting.
    Greeting,
    /// EHLO or HELO sent.
    Ehlo,
    /// STARTTLS sent, or the TLS handshake under way.
    StartTls,
    /// AUTH exchange.
    Auth,
    /// RSET sent before reusing the connection.
    Rset,
    /// MAIL sent (also where the message is checked against the server's extensions).
    Mail,
    /// RCPT sent.
    Rcpt,
    /// DATA sent, waiting for 354.
    DataInit,
    /// Sending the message content.
    DataBlock,
    /// Content and terminator sent, waiting for the final reply.
    DataTermination,
    /// QUIT sent.
    Quit,
    /// No command outstanding (between jobs, or closed).
    Idle,
}

const MINUTE: u64 = 60;

impl Phase {
    /// The minimum time to wait in this phase, per RFC 5321 §4.5.3.2: initial 220 (§4.5.3.2.1),
    /// MAIL (§4.5.3.2.2) and RCPT (§4.5.3.2.3) 5 minutes, DATA initiation 2 minutes
    /// (§4.5.3.2.4), each data block 3 minutes (§4.5.3.2.5), DATA termination 10 minutes
    /// (§4.5.3.2.6): the server may be delivering before it answers, and giving up then
    /// causes duplicates. RFC 5321 gives no value for EHLO, STARTTLS, AUTH, RSET and QUIT;
    /// they get the MAIL value. For `Idle` it is the server's own timeout (§4.5.3.2.7):
    /// a connection kept for reuse longer than that will have been dropped.
    pub fn timeout(self) -> Duration {
        let minutes = match self {
            Phase::DataInit => 2,
            Phase::DataBlock => 3,
            Phase::DataTermination => 10,
            Phase::Greeting
            | Phase::Ehlo
            | Phase::StartTls
            | Phase::Auth
            | Phase::Rset
            | Phase::Mail
            | Phase::Rcpt
            | Phase::Quit
            | Phase::Idle => 5,
        };
        Duration::from_secs(minutes * MINUTE)
    }

    /// True for the phases that set up the session, before any message is named: a failure
    /// there is about the host, not the message, so the next MX may do better
    /// (RFC 5321 §5.1).
    pub fn is_session_setup(self) -> bool {
        matches!(self, Phase::Greeting | Phase::Ehlo | Phase::StartTls | Phase::Auth)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Greeting => "greeting",
            Phase::Ehlo => "EHLO",
            Phase::StartTls => "STARTTLS",
            Phase::Auth => "AUTH",
            Phase::Rset => "RSET",
            Phase::Mail => "MAIL FROM",
            Phase::Rcpt => "RCPT TO",
            Phase::DataInit => "DATA",
            Phase::DataBlock => "message content",
            Phase::DataTermination => "end of data",
            Phase::Quit => "QUIT",
            Phase::Idle => "idle",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_5321_timeouts() {
        let min = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(Phase::Greeting.timeout(), min(5));
        assert_eq!(Phase::Mail.timeout(), min(5));
        assert_eq!(Phase::Rcpt.timeout(), min(5));
        assert_eq!(Phase::DataInit.timeout(), min(2));
        assert_eq!(Phase::DataBlock.timeout(), min(3));
        assert_eq!(Phase::DataTermination.timeout(), min(10));
        assert!(Phase::Greeting.is_session_setup() && Phase::Auth.is_session_setup());
        assert!(!Phase::Mail.is_session_setup());
        assert_eq!(Phase::DataTermination.to_string(), "end of data");
    }
}

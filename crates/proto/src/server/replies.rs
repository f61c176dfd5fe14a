//! Every fixed reply the server session sends, in one place so texts stay stable.

use crate::reply::{Enhanced as E, Reply};

pub(crate) fn r(code: u16, e: E, text: &str) -> Reply {
    Reply::new(code, e, text)
}

pub(crate) fn ok() -> Reply {
    r(250, E(2, 0, 0), "Ok")
}
pub(crate) fn sender_ok() -> Reply {
    r(250, E(2, 1, 0), "Sender ok")
}
pub(crate) fn recipient_ok() -> Reply {
    r(250, E(2, 1, 5), "Recipient ok")
}
pub(crate) fn start_data() -> Reply {
    r(354, E(2, 0, 0), "End data with <CR><LF>.<CR><LF>")
}
pub(crate) fn bye() -> Reply {
    r(221, E(2, 0, 0), "Bye")
}
pub(crate) fn help() -> Reply {
    Reply {
        code: 214,
        enhanced: Some(E(2, 0, 0)),
        lines: vec![
            "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY".into(),
            "See RFC 5321 and https://www.rfc-editor.org/rfc/rfc5321".into(),
        ],
    }
}
pub(crate) fn vrfy() -> Reply {
    // RFC 5321 §3.5.3: 252 when the server will not verify but will attempt delivery.
    r(252, E(2, 5, 0), "Cannot VRFY user, but will accept message and attempt delivery")
}
pub(crate) fn expn() -> Reply {
    r(502, E(5, 5, 1), "EXPN not available")
}
pub(crate) fn not_implemented() -> Reply {
    r(502, E(5, 5, 1), "Command not implemented")
}
pub(crate) fn unknown_command() -> Reply {
    r(500, E(5, 5, 1), "Command unrecognized")
}
pub(crate) fn invalid_chars() -> Reply {
    r(500, E(5, 5, 2), "Command contains invalid characters")
}
pub(crate) fn line_too_long() -> Reply {
    r(500, E(5, 5, 6), "Line too long (limit is 512 octets including CRLF, RFC 5321 4.5.3.1.4)")
}
pub(crate) fn bare_newline() -> Reply {
    // Closing is the only safe answer to ambiguous framing (SMTP smuggling); Postfix's
    // smtpd_forbid_bare_newline uses the same code.
    r(521, E(5, 5, 2), "Bare CR or LF received; lines must end with CRLF. Closing connection")
}
pub(crate) fn too_many_errors() -> Reply {
    r(421, E(4, 7, 0), "Too many errors, closing connection")
}
pub(crate) fn data_before_354() -> Reply {
    r(554, E(5, 5, 0), "Message content sent before the 354 reply (RFC 2920 3.1). Closing connection")
}
pub(crate) fn http() -> Reply {
    r(221, E(2, 7, 0), "This is an SMTP server, not HTTP. Closing connection")
}
pub(crate) fn need_helo() -> Reply {
    r(503, E(5, 5, 1), "Send EHLO or HELO first")
}
pub(crate) fn nested_mail() -> Reply {
    r(503, E(5, 5, 1), "Nested MAIL command; send RSET first")
}
pub(crate) fn need_mail() -> Reply {
    r(503, E(5, 5, 1), "Need MAIL before RCPT")
}
pub(crate) fn need_mail_data() -> Reply {
    r(503, E(5, 5, 1), "Need MAIL and RCPT before DATA")
}
pub(crate) fn no_valid_recipients() -> Reply {
    // RFC 5321 §3.3: DATA with no accepted recipient gets 503 or 554 "no valid recipients".
    r(554, E(5, 5, 1), "No valid recipients")
}
pub(crate) fn data_after_bdat() -> Reply {
    r(503, E(5, 5, 1), "DATA not allowed after BDAT in one transaction")
}
pub(crate) fn too_many_recipients() -> Reply {
    // RFC 5321 §4.5.3.1.10.
    r(452, E(4, 5, 3), "Too many recipients")
}
pub(crate) fn size_exceeded() -> Reply {
    // RFC 1870 §6.
    r(552, E(5, 3, 4), "Message size exceeds fixed maximum message size")
}
pub(crate) fn nul_in_message() -> Reply {
    r(554, E(5, 6, 0), "Message contains NUL octets; refused")
}
pub(crate) fn need_smtputf8() -> Reply {
    // RFC 6531 §3.5: a non-ASCII address without SMTPUTF8.
    r(553, E(5, 6, 7), "Non-ASCII address requires the SMTPUTF8 parameter on MAIL")
}
pub(crate) fn requiretls_without_tls() -> Reply {
    // RFC 8689 §4.1: REQUIRETLS is offered, and may be used, only over TLS.
    r(530, E(5, 7, 10), "REQUIRETLS needs a TLS session; use STARTTLS first")
}
pub(crate) fn params_without_ehlo() -> Reply {
    r(555, E(5, 5, 4), "MAIL/RCPT parameters are not accepted after HELO; use EHLO")
}
pub(crate) fn ready_for_tls() -> Reply {
    r(220, E(2, 0, 0), "Ready to start TLS")
}
pub(crate) fn tls_not_available() -> Reply {
    r(454, E(4, 7, 0), "TLS not available")
}
pub(crate) fn already_tls() -> Reply {
    r(503, E(5, 5, 1), "TLS already active")
}
pub(crate) fn must_starttls() -> Reply {
    // RFC 3207 §4.
    r(530, E(5, 7, 0), "Must issue a STARTTLS command first")
}
pub(crate) fn auth_required() -> Reply {
    // RFC 4954 §6.
    r(530, E(5, 7, 0), "Authentication required")
}
pub(crate) fn already_authenticated() -> Reply {
    // RFC 4954 §4: AUTH after a successful AUTH.
    r(503, E(5, 5, 1), "Already authenticated")
}
pub(crate) fn auth_in_transaction() -> Reply {
    r(503, E(5, 5, 1), "AUTH not permitted during a mail transaction")
}
pub(crate) fn auth_needs_ehlo() -> Reply {
    r(503, E(5, 5, 1), "Send EHLO first")
}
pub(crate) fn unknown_mechanism() -> Reply {
    r(504, E(5, 5, 4), "Unrecognized authentication type")
}
pub(crate) fn auth_malformed() -> Reply {
    r(501, E(5, 5, 2), "Malformed authentication data")
}
pub(crate) fn auth_cancelled() -> Reply {
    r(501, E(5, 5, 2), "Authentication cancelled")
}
pub(crate) fn auth_succeeded() -> Reply {
    r(235, E(2, 7, 0), "Authentication successful")
}
pub(crate) fn auth_failed() -> Reply {
    // RFC 4954 §6: 535 5.7.8 authentication credentials invalid.
    r(535, E(5, 7, 8), "Authentication credentials invalid")
}

//! SASL for SMTP AUTH (RFC 4954): the PLAIN (RFC 4616) and LOGIN mechanisms' wire formats.
//!
//! SCRAM-SHA-256 (RFC 7677) is deliberately not offered: it needs the server to store
//! PBKDF2-derived keys per user instead of (or beside) the argon2id hash, which weakens the
//! store, while AUTH is only ever accepted over TLS, where PLAIN is safe (docs/auth.md).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A SASL mechanism we offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// The de-facto LOGIN mechanism (draft-murchison-sasl-login).
    Login,
}

impl Mechanism {
    /// Parses a mechanism name (case-insensitive).
    pub fn parse(name: &str) -> Option<Mechanism> {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Mechanism::Plain),
            "LOGIN" => Some(Mechanism::Login),
            _ => None,
        }
    }

    /// The name as advertised.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

/// Credentials decoded from the client. `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The mechanism used.
    pub mechanism: Mechanism,
    /// The authentication identity (user name).
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why a SASL response was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    /// The client sent `*` (RFC 4954 §4).
    #[error("authentication cancelled")]
    Cancelled,
    /// Not valid base64, or not the mechanism's format.
    #[error("malformed response")]
    Malformed,
    /// PLAIN with an authorization identity other than the user (proxy authorization is not
    /// supported).
    #[error("authorization identity not permitted")]
    Authzid,
}

/// Decodes one base64 client response line; `*` cancels; `=` is an empty response.
pub fn decode_response(line: &str) -> Result<Vec<u8>, SaslError> {
    match line {
        "*" => Err(SaslError::Cancelled),
        "=" => Ok(Vec::new()),
        _ => STANDARD.decode(line).map_err(|_| SaslError::Malformed),
    }
}

/// Parses a PLAIN message `[authzid] NUL authcid NUL passwd` (RFC 4616 §2).
pub fn parse_plain(msg: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = msg.split(|&b| b == 0);
    let (Some(authz), Some(user), Some(pass), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(SaslError::Malformed);
    };
    let text = |b: &[u8]| std::str::from_utf8(b).map(str::to_string).map_err(|_| SaslError::Malformed);
    let (authz, username, password) = (text(authz)?, text(user)?, text(pass)?);
    if username.is_empty() || password.is_empty() {
        return Err(SaslError::Malformed);
    }
    if !authz.is_empty() && authz != username {
        return Err(SaslError::Authzid);
    }
    Ok(Credentials { mechanism: Mechanism::Plain, username, password })
}

/// Decodes one LOGIN step (a base64 user name or password) to text.
pub fn parse_login_item(raw: &[u8]) -> Result<String, SaslError> {
    let s = std::str::from_utf8(raw).map_err(|_| SaslError::Malformed)?;
    if s.is_empty() || s.contains('\0') {
        return Err(SaslError::Malformed);
    }
    Ok(s.to_string())
}

/// Base64 of a server challenge.
pub fn encode_challenge(text: &str) -> String {
    STANDARD.encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain() {
        let c = parse_plain(b"\0alice@example.test\0secret").unwrap();
        assert_eq!(c.username, "alice@example.test");
        assert_eq!(c.password, "secret");
        assert!(parse_plain(b"alice@example.test\0alice@example.test\0pw").is_ok());
        assert_eq!(parse_plain(b"bob\0alice\0pw"), Err(SaslError::Authzid));
        assert_eq!(parse_plain(b"\0alice\0"), Err(SaslError::Malformed));
        assert_eq!(parse_plain(b"\0alice"), Err(SaslError::Malformed));
        assert_eq!(parse_plain(b"\0a\0b\0c"), Err(SaslError::Malformed));
        assert_eq!(parse_plain(b"\0a\0\xff"), Err(SaslError::Malformed));
        assert!(!format!("{:?}", parse_plain(b"\0a\0hunter2").unwrap()).contains("hunter2"));
    }

    #[test]
    fn responses() {
        assert_eq!(decode_response("*"), Err(SaslError::Cancelled));
        assert_eq!(decode_response("="), Ok(vec![]));
        assert_eq!(decode_response("AGEAYg=="), Ok(b"\0a\0b".to_vec()));
        assert_eq!(decode_response("not base64!"), Err(SaslError::Malformed));
        assert_eq!(encode_challenge("Username:"), "VXNlcm5hbWU6");
        assert_eq!(parse_login_item(b"alice"), Ok("alice".into()));
        assert_eq!(parse_login_item(b""), Err(SaslError::Malformed));
        assert_eq!(Mechanism::parse("plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::parse("CRAM-MD5"), None);
    }
}

//! [`Service`]: which protocol a password check is for.

/// The protocol a password check is for. Dovecot's auth server receives it as `service=`
/// (its `%s` variable and `protocol` in passdb rules), so that per-service passdb settings
/// apply to dakiya's logins as they do to Dovecot's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// SMTP AUTH (RFC 4954).
    Smtp,
    /// POP3 USER/PASS and AUTH (RFC 1939, RFC 5034).
    Pop3,
}

impl Service {
    /// The name Dovecot uses for the service (`smtp`, `pop3`).
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Smtp => "smtp",
            Service::Pop3 => "pop3",
        }
    }
}

//! [`Endpoint`]: where a local helper service listens (Dovecot's auth socket, an LMTP
//! server), written `unix:/path`, a bare absolute `/path`, or `inet:host:port`; and
//! [`AuthBackend`], who checks SMTP AUTH passwords.

use std::fmt;
use std::path::PathBuf;

use crate::error::{ConfigError, Ctx};
use crate::raw::SStr;

/// A stream socket a helper service listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix-domain socket (`unix:/run/dovecot/auth-client`, or just the absolute path).
    Unix(PathBuf),
    /// A TCP address, `host:port` (`inet:127.0.0.1:24`).
    Inet(String),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Inet(a) => write!(f, "inet:{a}"),
        }
    }
}

impl Endpoint {
    /// Parses `unix:/path`, `/path` or `inet:host:port`; the error says what was expected.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let unix = |p: &str| {
            if p.starts_with('/') && !p.contains('\0') {
                Ok(Endpoint::Unix(PathBuf::from(p)))
            } else {
                Err(format!("{text:?}: a unix socket needs an absolute path"))
            }
        };
        if let Some(path) = text.strip_prefix("unix:") {
            return unix(path);
        }
        if let Some(addr) = text.strip_prefix("inet:") {
            let port_ok =
                addr.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|n| n > 0));
            return if port_ok {
                Ok(Endpoint::Inet(addr.to_owned()))
            } else {
                Err(format!("{text:?}: expected inet:HOST:PORT"))
            };
        }
        if text.starts_with('/') {
            return unix(text);
        }
        Err(format!("{text:?}: expected unix:/PATH, /PATH or inet:HOST:PORT"))
    }
}

/// `auth.backend`: who checks SMTP AUTH passwords.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthBackend {
    /// dakiya's users file (`auth.users_file`), the default.
    #[default]
    File,
    /// Dovecot's authentication server (`auth.socket`), so one passdb serves IMAP, POP3
    /// and SMTP.
    Dovecot(Endpoint),
}

/// The default `auth.socket` of the `dovecot` backend: Debian's Dovecot with the
/// `service auth { unix_listener auth-client }` it ships.
pub const DEFAULT_DOVECOT_AUTH_SOCKET: &str = "/run/dovecot/auth-client";

/// `auth.backend` and `auth.socket`.
pub(crate) fn auth_backend(cx: &Ctx, backend: Option<SStr>, socket: Option<SStr>) -> Result<AuthBackend, ConfigError> {
    let name = backend.as_ref().map_or("file", |b| b.get_ref().as_str());
    match name {
        "file" => match socket {
            Some(s) => Err(cx.err("auth.socket", Some(s.span()), "only used with auth.backend = \"dovecot\"")),
            None => Ok(AuthBackend::File),
        },
        "dovecot" => {
            let Some(s) = socket else {
                return Ok(AuthBackend::Dovecot(Endpoint::Unix(PathBuf::from(DEFAULT_DOVECOT_AUTH_SOCKET))));
            };
            Endpoint::parse(s.get_ref()).map(AuthBackend::Dovecot).map_err(|m| cx.err("auth.socket", Some(s.span()), m))
        }
        other => {
            let span = backend.as_ref().map(|b| b.span());
            Err(cx.err("auth.backend", span, format!("unknown backend {other:?} (expected \"file\" or \"dovecot\")")))
        }
    }
}

/// `delivery.method`: how local mailboxes get their mail.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DeliveryMethod {
    /// dakiya writes each copy into `data_dir/mail/DOMAIN/MAILBOX` (Maildir), the default.
    #[default]
    Maildir,
    /// dakiya hands each message to an LMTP server (RFC 2033) at `delivery.lmtp`.
    Lmtp(Endpoint),
}

/// The default `delivery.lmtp`: Debian's Dovecot with `protocols = lmtp`.
pub const DEFAULT_LMTP_SOCKET: &str = "/run/dovecot/lmtp";

/// `delivery.method` and `delivery.lmtp`.
pub(crate) fn delivery_method(
    cx: &Ctx,
    method: Option<SStr>,
    lmtp: Option<SStr>,
) -> Result<DeliveryMethod, ConfigError> {
    match method.as_ref().map_or("maildir", |m| m.get_ref().as_str()) {
        "maildir" => match lmtp {
            Some(s) => Err(cx.err("delivery.lmtp", Some(s.span()), "only used with delivery.method = \"lmtp\"")),
            None => Ok(DeliveryMethod::Maildir),
        },
        "lmtp" => match lmtp {
            None => Ok(DeliveryMethod::Lmtp(Endpoint::Unix(PathBuf::from(DEFAULT_LMTP_SOCKET)))),
            Some(s) => Endpoint::parse(s.get_ref())
                .map(DeliveryMethod::Lmtp)
                .map_err(|m| cx.err("delivery.lmtp", Some(s.span()), m)),
        },
        other => {
            let span = method.as_ref().map(|m| m.span());
            Err(cx.err("delivery.method", span, format!("unknown method {other:?} (expected \"maildir\" or \"lmtp\")")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn endpoints_parse() {
        assert_eq!(Endpoint::parse("/run/x").unwrap(), Endpoint::Unix("/run/x".into()));
        assert_eq!(Endpoint::parse("unix:/run/x").unwrap(), Endpoint::Unix("/run/x".into()));
        assert_eq!(Endpoint::parse("inet:127.0.0.1:24").unwrap(), Endpoint::Inet("127.0.0.1:24".into()));
        assert_eq!(Endpoint::parse("inet:[::1]:24").unwrap(), Endpoint::Inet("[::1]:24".into()));
        for bad in ["", "run/x", "unix:x", "inet:127.0.0.1", "inet::24", "inet:h:0", "tcp:h:1"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Endpoint::parse("inet:h:1").unwrap().to_string(), "inet:h:1");
    }
}

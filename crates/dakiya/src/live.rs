//! The part of what connections share that a configuration reload replaces: the
//! configuration and what is derived from it for sessions (their limits, the TLS certificate,
//! message authentication). Sessions take the current [`Live`] at each decision (RCPT, MAIL,
//! AUTH, STARTTLS, end of DATA), so a reload applies to open sessions at their next command;
//! see docs/reload.md.

use crate::msgauth::MailAuth;
use crate::screen::Screener;
use crate::tls::TlsManager;
use dakiya_config::Config;
use dakiya_proto::ServerConfig;
use std::sync::{Arc, PoisonError, RwLock};

/// One consistent set: every part was built from `config` (and checked) before it was
/// installed, so a session never sees the configuration of one file with the TLS or
/// message-authentication settings of another.
pub struct Live {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// What a new SMTP session starts with (host name, limits); a session keeps its own.
    pub session: Arc<ServerConfig>,
    /// The certificate for STARTTLS and implicit TLS.
    pub tls: Arc<TlsManager>,
    /// SPF/DKIM/DMARC verification and DKIM signing.
    pub mailauth: Arc<MailAuth>,
    /// Connection screening (`[screen]`: DNS lists, FCrDNS), if configured; a reload keeps
    /// the running one (and its cache) when `[screen]` and the name servers are unchanged.
    pub screener: Option<Arc<Screener>>,
}

/// The current [`Live`], replaced as a whole by a reload.
pub struct Current(RwLock<Arc<Live>>);

impl Current {
    /// Starts with `live`.
    pub fn new(live: Live) -> Current {
        Current(RwLock::new(Arc::new(live)))
    }

    /// The set in force now (cheap: clones an `Arc`). Holding it keeps that set alive, not
    /// current: take it again for the next decision.
    pub fn get(&self) -> Arc<Live> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Puts `live` in force for every decision from now on.
    pub fn set(&self, live: Live) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(live);
    }
}

//! What every connection shares: the frozen configuration, the spool and queue, TLS, the
//! user store and password checks, message authentication, the counters for the log summary.
//! Built once at start (`listen.rs`); the connection driver and the policy checks read it.

use crate::msgauth::MailAuth;
use crate::summary::Counters;
use crate::tls::TlsManager;
use dakiya_auth::{Authenticator, UserStore};
use dakiya_config::Config;
use dakiya_proto::ServerConfig;
use dakiya_queue::QueueHandle;
use dakiya_spool::Spool;
use std::sync::Arc;
use tokio::sync::watch;

/// What every connection shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub session: Arc<ServerConfig>,
    pub spool: Arc<Spool>,
    pub queue: QueueHandle,
    pub shutdown: watch::Receiver<bool>,
    pub tls: Arc<TlsManager>,
    pub users: Arc<UserStore>,
    pub authenticator: Authenticator,
    pub mailauth: Arc<MailAuth>,
    /// How sessions ended and why connections were refused, for the log summary.
    pub counters: Counters,
    /// Greylisting state, when a listener greylists.
    pub greylist: Option<Arc<crate::greylisting::Greylisting>>,
}

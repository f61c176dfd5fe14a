//! What the server sets up from the configuration before it starts: the outbound service's
//! settings, read from `[outbound]` and the files it names (the relay password file, the
//! extra trust anchors), the TLS settings, the session limits and message authentication.
//! `serve`, `check-config` and a reload (`reload.rs`) all start from here, so they cannot
//! disagree about a file.

use crate::msgauth::MailAuth;
use crate::tls::TlsSettings;
use dakiya_config::Config;
use dakiya_mailauth::Verifier;
use dakiya_outbound::{OutboundConfig, RelaySettings};
use dakiya_proto::ServerConfig;
use dakiya_proto::client::AuthCredentials;
use std::sync::Arc;

/// A file named by the configuration that cannot be used: the key that names it and what is
/// wrong. Displayed as `KEY: MESSAGE` (the start-up error); `check-config` reports the key
/// and the message apart.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct FileError {
    /// The configuration key, e.g. `outbound.tls_ca_file`.
    pub key: &'static str,
    /// What is wrong, naming the file.
    pub message: String,
}

impl FileError {
    fn new(key: &'static str, message: String) -> FileError {
        FileError { key, message }
    }
}

/// The outbound service's settings from the configuration; reads the relay password file
/// and the extra trust anchors.
pub fn outbound_config(cfg: &Config) -> Result<OutboundConfig, FileError> {
    let o = &cfg.outbound;
    let route = dakiya_route::RouteConfig {
        nameservers: o.nameservers.clone(),
        static_routes: o.routes.iter().map(|(d, r)| (d.clone(), r.hosts.clone())).collect(),
        relay_host: o.relay_host.as_ref().map(|r| r.host.clone()),
        smtp_port: o.smtp_port,
        ip_preference: o.ip_preference,
        ..dakiya_route::RouteConfig::default()
    };
    let relay = match &o.relay_host {
        None => None,
        Some(r) => {
            let credentials = match (&r.username, &r.password_file) {
                (Some(username), Some(file)) => {
                    let text = std::fs::read_to_string(file).map_err(|e| {
                        let message = format!("cannot read {}: {e}", file.display());
                        FileError::new("outbound.relay_host.password_file", message)
                    })?;
                    let password = text.lines().next().unwrap_or("").to_string();
                    Some(AuthCredentials { username: username.clone(), password })
                }
                _ => None,
            };
            Some(RelaySettings { tls: r.tls, implicit_tls: r.implicit_tls, credentials })
        }
    };
    if let Some(file) = &o.dnssec_trust_anchor {
        // Parsed when the outbound service is built; here, readable (check-config too).
        std::fs::read_to_string(file).map_err(|e| {
            FileError::new("outbound.dnssec_trust_anchor", format!("cannot read {}: {e}", file.display()))
        })?;
    }
    const KEY_CA: &str = "outbound.tls_ca_file";
    let mut extra_roots = Vec::new();
    if let Some(file) = &o.tls_ca_file {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(file)
            .map_err(|e| FileError::new(KEY_CA, format!("cannot read {}: {e}", file.display())))?;
        for cert in certs {
            extra_roots.push(cert.map_err(|e| FileError::new(KEY_CA, format!("{}: {e}", file.display())))?);
        }
    }
    Ok(OutboundConfig {
        helo_name: o.helo_name.clone(),
        route,
        default_tls: o.tls,
        route_tls: o.routes.iter().map(|(d, r)| (d.clone(), r.tls)).collect(),
        relay,
        extra_roots,
        dnssec_trust_anchor: o.dnssec_trust_anchor.clone(),
        connect_timeout: o.connect_timeout,
        max_connections: o.concurrency,
        max_per_destination: o.per_destination,
        idle_timeout: o.idle_timeout,
    })
}

/// Where MTA-STS policies and TLS-RPT counts are kept (`data_dir/mta-sts`) and the port
/// policies are fetched from (`outbound.mta_sts_port`).
pub fn sts_settings(cfg: &Config) -> dakiya_outbound::StsSettings {
    dakiya_outbound::StsSettings {
        dir: Some(cfg.data_dir.join("mta-sts")),
        https_port: cfg.outbound.mta_sts_port,
        ..Default::default()
    }
}

/// The TLS settings the server starts with (`[tls]`, and the data directory for a generated
/// certificate).
pub fn tls_settings(cfg: &Config) -> TlsSettings {
    TlsSettings {
        cert: cfg.tls.cert.clone(),
        key: cfg.tls.key.clone(),
        data_dir: cfg.data_dir.clone(),
        hostname: cfg.hostname.clone(),
        check_interval: cfg.tls.check_interval,
    }
}

/// The message history's writer (`[history]`, docs/history.md), or a disabled one when it is
/// turned off or its directory cannot be made: the history is a diagnostic aid, so the server
/// runs without it rather than not at all (and says so).
pub fn history(cfg: &Config) -> dakiya_history::History {
    if !cfg.history.enabled {
        return dakiya_history::History::disabled();
    }
    let dir = cfg.data_dir.join("history");
    dakiya_history::History::start(dir.clone(), cfg.history.days).unwrap_or_else(|e| {
        tracing::error!(dir = %dir.display(), error = %e, "cannot start the message history; `dakiya trace` will find nothing new");
        dakiya_history::History::disabled()
    })
}

/// What every SMTP session starts with: the host name and the limits of `[limits]`.
pub fn session_config(cfg: &Config) -> ServerConfig {
    ServerConfig {
        hostname: cfg.hostname.clone(),
        max_message_size: cfg.limits.max_message_size,
        max_recipients: cfg.limits.max_recipients,
        max_errors: cfg.limits.max_errors,
    }
}

/// Message authentication: a resolver for SPF/DKIM/DMARC when some listener verifies (asking
/// the same name servers as outbound delivery), and the DKIM keys in DATA_DIR/dkim. Needs a
/// tokio runtime context (the resolver belongs to it).
pub fn mail_auth(cfg: &Config) -> Result<MailAuth, String> {
    let verifier = if cfg.listeners.iter().any(|l| l.checks.verify) {
        Some(Verifier::new(&cfg.outbound.nameservers, &cfg.hostname).map_err(|e| e.to_string())?)
    } else {
        None
    };
    MailAuth::new(verifier, cfg.data_dir.join("dkim"))
}

/// Connection screening (`[screen]`, docs/screening.md), asking the same name servers as
/// outbound delivery (tests: a loopback server); `None` without a `[screen]` section. Needs a
/// tokio runtime context (the resolver belongs to it).
pub fn screener(cfg: &Config) -> Result<Option<Arc<crate::screen::Screener>>, String> {
    let Some(s) = &cfg.screen else { return Ok(None) };
    Ok(Some(Arc::new(crate::screen::Screener::new(s.clone(), &cfg.outbound.nameservers)?)))
}

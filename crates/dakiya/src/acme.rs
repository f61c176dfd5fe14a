//! Keeps the certificate ordered from an ACME CA when `[tls.acme]` is set (docs/acme.md):
//! spawns `dakiya_acme::run` in the background (start-up never waits on the CA), with the
//! `http` listeners' challenge map for HTTP-01 answers and the TLS manager to load the
//! issued pair, which is written to DATA_DIR/tls/{cert.pem,key.pem} (the self-signed
//! placeholder made at first start serves until then, and whenever an order fails).

use crate::shared::Shared;
use dakiya_config::{Config, Role};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

/// The port the CA fetches HTTP-01 answers from (RFC 8555 §8.3).
const HTTP01_PORT: u16 = 80;

/// Starts the ACME task if `[tls.acme]` is set. `listeners`: the bound addresses and roles.
pub fn spawn(shared: &Arc<Shared>, listeners: &[(SocketAddr, Role)]) -> Option<tokio::task::JoinHandle<()>> {
    let cfg = shared.live.get().config.clone();
    let settings = settings(&cfg)?;
    if !listeners.iter().any(|&(a, r)| r == Role::Http && a.port() == HTTP01_PORT) {
        tracing::warn!(
            "tls.acme: no http listener on port 80, where the CA fetches http-01 answers; orders will fail unless port 80 is forwarded to an http listener"
        );
    }
    let host = ServerHost(Arc::downgrade(shared));
    Some(tokio::spawn(dakiya_acme::run(settings, host)))
}

/// The client's settings from `[tls.acme]`, or `None` without it.
pub fn settings(cfg: &Config) -> Option<dakiya_acme::Settings> {
    let acme = cfg.tls.acme.as_ref()?;
    let live = cfg.self_signed_tls_dir();
    Some(dakiya_acme::Settings {
        directory: acme.directory.clone(),
        contact: acme.contact.iter().cloned().collect(),
        names: acme.names.clone(),
        ca_file: acme.ca_file.clone(),
        renew_before: acme.renew_before,
        check_interval: acme.check_interval,
        state_dir: cfg.data_dir.join("acme"),
        cert_file: live.join("cert.pem"),
        key_file: live.join("key.pem"),
    })
}

/// The server side of the client: the challenge map and the TLS manager in force.
struct ServerHost(Weak<Shared>);

impl dakiya_acme::Host for ServerHost {
    fn publish(&self, token: &str, key_authorization: &str) {
        if let Some(s) = self.0.upgrade() {
            s.acme.insert(token.to_owned(), key_authorization.to_owned());
        }
    }

    fn withdraw(&self, token: &str) {
        if let Some(s) = self.0.upgrade() {
            s.acme.remove(token);
        }
    }

    fn installed(&self) {
        let Some(s) = self.0.upgrade() else { return };
        match s.live.get().tls.reload() {
            Ok(_) => tracing::info!("TLS certificate reloaded; new connections use the ACME certificate"),
            Err(e) => tracing::error!(error = %e, "the ACME certificate cannot be loaded; keeping the current one"),
        }
    }
}

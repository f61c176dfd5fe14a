//! `dakiya check-config FILE`: besides the configuration itself (parsed and validated by
//! `dakiya_config`), the files the server reads at start — the TLS certificate and key, the
//! users file, the relay host's password file, the extra CA file for outbound TLS, the DKIM
//! keys — read with the server's own loading functions, so that check-config and `serve`
//! cannot disagree. Nothing is written (a self-signed certificate the server would generate
//! is not). Each problem names the configuration file, the key and the file.

use crate::msgauth::MailAuth;
use crate::setup::tls_settings;
use crate::tls::TlsManager;
use dakiya_auth::UserStore;
use dakiya_config::{Config, ConfigError};
use dakiya_outbound::{Outbound, OutboundError};
use std::path::Path;
use std::process::ExitCode;

/// Prints the effective configuration of `file` (exit status 0), or every problem with it
/// and with the files it names, each as `dakiya: FILE: [line L: ]key `K`: message` on
/// stderr (exit status 2).
pub fn run(file: &Path) -> ExitCode {
    let problems = match Config::from_file(file) {
        Ok(cfg) => {
            let problems = check_files(&cfg);
            if problems.is_empty() {
                print!("{}", cfg.to_toml());
                return ExitCode::SUCCESS;
            }
            problems
        }
        Err(e) => vec![e],
    };
    for e in &problems {
        eprintln!("dakiya: {e}");
    }
    ExitCode::from(2)
}

/// Every problem with the files `cfg` names, in the order the server reads them; empty when
/// the server would start with them.
pub fn check_files(cfg: &Config) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    if let Err(e) = UserStore::open(&cfg.auth.users_file) {
        // The error names the file (and the line of a malformed entry).
        problems.push(problem(cfg, "auth.users_file", e.to_string()));
    }
    if let Err(e) = check_outbound(cfg) {
        problems.push(e);
    }
    if let Err(e) = TlsManager::check(&tls_settings(cfg)) {
        let file = e.file();
        let key = if file.is_some() && file == cfg.tls.cert.as_deref() {
            "tls.cert"
        } else if file.is_some() && file == cfg.tls.key.as_deref() {
            "tls.key"
        } else if cfg.tls.cert.is_none() && cfg.tls.key.is_none() {
            // The generated self-signed pair lives in DATA_DIR/tls.
            "data_dir"
        } else {
            "tls"
        };
        problems.push(problem(cfg, key, e.to_string()));
    }
    if let Err(e) = crate::privdrop::account(cfg) {
        // `user` or `group` names no account of this system.
        problems.push(e.0);
    }
    if let Err(e) = MailAuth::new(None, cfg.data_dir.join("dkim")) {
        // DKIM keys live in DATA_DIR/dkim; the error names the key file.
        problems.push(problem(cfg, "data_dir", e));
    }
    problems
}

/// What the server builds outbound delivery from: the relay host's password file and the
/// extra CA file are read, and the CA certificates parsed as trust anchors.
fn check_outbound(cfg: &Config) -> Result<(), ConfigError> {
    let outbound = crate::setup::outbound_config(cfg).map_err(|e| problem(cfg, e.key, e.message))?;
    // The resolver it builds belongs to a runtime; nothing is spawned until delivery.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| problem(cfg, "outbound", format!("cannot start the async runtime: {e}")))?;
    let _in_runtime = rt.enter();
    match Outbound::new(outbound) {
        Ok(_) => Ok(()),
        Err(OutboundError::Tls(e)) => match &cfg.outbound.tls_ca_file {
            Some(file) => Err(problem(cfg, "outbound.tls_ca_file", format!("{}: {e}", file.display()))),
            None => Err(problem(cfg, "outbound", format!("TLS: {e}"))),
        },
        Err(e) => Err(problem(cfg, "outbound", e.to_string())),
    }
}

/// A problem with `cfg` at `key` (no line: the key is known, not where it was written).
pub(crate) fn problem(cfg: &Config, key: &str, message: String) -> ConfigError {
    ConfigError { file: cfg.source.clone(), line: None, key: Some(key.to_string()), message }
}

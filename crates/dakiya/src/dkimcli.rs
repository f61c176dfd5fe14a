//! `dakiya dkim generate|show`: DKIM keys in `DATA/dkim/<domain>/<selector>.key` and the DNS
//! records to publish for them.

use clap::{Subcommand, ValueEnum};
use dakiya_config::Config;
use dakiya_mailauth::{Algorithm, dns_records, generate_key};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum DkimCmd {
    /// Create a signing key for DOMAIN and print the DNS TXT record to publish. The server
    /// starts signing with it within 30 seconds; publish the record first.
    Generate {
        /// A local domain (mail whose From: is in it gets signed).
        domain: String,
        /// The selector (a DNS label). Default: the algorithm and this month, e.g. rsa202611.
        #[arg(long, short)]
        selector: Option<String>,
        /// rsa (2048 bits; every receiver verifies it) or ed25519 (RFC 8463; small, but not
        /// verified everywhere yet — use it beside an RSA key).
        #[arg(long, short, value_enum, default_value_t = AlgorithmArg::Rsa)]
        algorithm: AlgorithmArg,
    },
    /// Print the DNS TXT records of DOMAIN's keys again.
    Show {
        /// The domain.
        domain: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum AlgorithmArg {
    Rsa,
    Ed25519,
}

pub fn run(cmd: DkimCmd, cfg: &Config) -> ExitCode {
    let dir = cfg.data_dir.join("dkim");
    match cmd {
        DkimCmd::Generate { domain, selector, algorithm } => {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            if !cfg.is_local_domain(&domain) {
                eprintln!(
                    "dakiya: warning: {domain} is not a local domain in {}; mail is signed only for local domains",
                    cfg.source
                );
            }
            let (algorithm, prefix) = match algorithm {
                AlgorithmArg::Rsa => (Algorithm::Rsa, "rsa"),
                AlgorithmArg::Ed25519 => (Algorithm::Ed25519, "ed"),
            };
            let selector = selector.unwrap_or_else(|| format!("{prefix}{}", chrono::Utc::now().format("%Y%m")));
            match generate_key(&dir, &domain, &selector, algorithm) {
                Ok((name, value)) => {
                    println!("Created {}", dir.join(&domain).join(format!("{selector}.key")).display());
                    println!("Publish this TXT record, then mail from {domain} is signed with it:\n");
                    print_record(&name, &value);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("dakiya: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        DkimCmd::Show { domain } => {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            match dns_records(&dir, &domain) {
                Ok(records) if records.is_empty() => {
                    eprintln!("dakiya: no DKIM keys for {domain} in {}", dir.display());
                    ExitCode::FAILURE
                }
                Ok(records) => {
                    for (name, value) in records {
                        print_record(&name, &value);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("dakiya: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The record as name + value (for web forms) and as one zone-file line, the value split into
/// strings of at most 255 octets (RFC 1035 §3.3.14; RFC 6376 §3.6.2.2 joins them).
fn print_record(name: &str, value: &str) {
    println!("name:  {name}");
    println!("value: {value}");
    let parts: Vec<String> =
        value.as_bytes().chunks(255).map(|c| format!("\"{}\"", String::from_utf8_lossy(c))).collect();
    println!("zone:  {name}. IN TXT ( {} )\n", parts.join(" "));
}

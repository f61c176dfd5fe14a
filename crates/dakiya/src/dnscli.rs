//! `dakiya dns [DOMAIN] [--format zone|json]`: the DNS records to publish for each local
//! domain (or one), and `dakiya dns check DOMAIN`: each looked up through the configured
//! name servers and reported as ok, missing or different (docs/dns.md). The records and the
//! comparison are crates/publish; this file reads the configuration and the DKIM keys.

mod check;

use clap::{Args, ValueEnum};
use dakiya_config::Config;
use dakiya_publish::records::{Record, records};
use dakiya_publish::{Domain, Services, mtasts, zone};
use std::process::ExitCode;

/// The arguments of `dakiya dns`: `[DOMAIN]` or `check DOMAIN` (words rather than a clap
/// subcommand, so that `--config` may come anywhere).
#[derive(Args)]
pub struct DnsArgs {
    /// DOMAIN: the records of one local domain (Unicode or A-label; default every local
    /// domain). `check DOMAIN`: look each record up through the configured name servers
    /// (`outbound.nameservers`, else the system's) and report it as ok, missing or
    /// different; exit status 0 only when all are ok.
    #[arg(value_name = "[check] DOMAIN", num_args = 0..=2)]
    pub words: Vec<String>,
    /// zone: lines for a BIND or NSD zone file; json: for scripts.
    #[arg(long, value_enum, default_value_t = Format::Zone)]
    pub format: Format,
}

/// How the records are printed.
#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Zone,
    Json,
}

pub fn run(args: DnsArgs, cfg: &Config) -> ExitCode {
    let names: Vec<String> = match args.words.as_slice() {
        [check, domain] if check == "check" => {
            let (domain, expected) = match one(cfg, domain) {
                Ok(x) => x,
                Err(code) => return code,
            };
            return check::run(cfg, &domain, &expected);
        }
        [domain] if domain != "check" => vec![domain.clone()],
        [] => cfg.domains.keys().cloned().collect(),
        _ => {
            eprintln!("dakiya: usage: dakiya dns [DOMAIN] | dakiya dns check DOMAIN");
            return ExitCode::from(2);
        }
    };
    let mut all = Vec::new();
    for name in names {
        match one(cfg, &name) {
            Ok(x) => all.push(x),
            Err(code) => return code,
        }
    }
    match args.format {
        Format::Json => println!("{}", zone::json(&all)),
        Format::Zone => {
            let parts: Vec<String> = all.iter().map(|(d, r)| zone::zone(d, r)).collect();
            print!("{}", parts.join("\n"));
        }
    }
    ExitCode::SUCCESS
}

/// `name` as a local domain and its expected records; exit status 1 (with a message) when it
/// is not one or its DKIM keys cannot be read.
fn one(cfg: &Config, name: &str) -> Result<(Domain, Vec<Record>), ExitCode> {
    let fail = |m: String| {
        eprintln!("dakiya: {m}");
        ExitCode::FAILURE
    };
    let domain = Domain::new(name).ok_or_else(|| fail(format!("{name:?} is not a domain name")))?;
    if !cfg.is_local_domain(&domain.ascii) {
        return Err(fail(format!("{} is not a local domain in {}", domain.ascii, cfg.source)));
    }
    let expected = expected(cfg, &domain).map_err(fail)?;
    Ok((domain, expected))
}

/// Every record to publish for `domain`, with the DKIM keys in `DATA/dkim`.
pub fn expected(cfg: &Config, domain: &Domain) -> Result<Vec<Record>, String> {
    let dir = cfg.data_dir.join("dkim");
    let dkim = dakiya_mailauth::dns_records(&dir, &domain.ascii).map_err(|e| e.to_string())?;
    if dkim.is_empty() {
        eprintln!(
            "dakiya: note: no DKIM keys for {} (create one with `dakiya dkim generate {}`)",
            domain.ascii, domain.ascii
        );
    }
    let id = mtasts::policy_id(&mtasts::policy(&cfg.mta_sts));
    Ok(records(domain, cfg, &Services::from_config(cfg), &dkim, &id))
}

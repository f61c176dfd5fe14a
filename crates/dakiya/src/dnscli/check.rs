//! `dakiya dns check`: the lookups (hickory, the configured name servers) and the report.

use dakiya_config::Config;
use dakiya_publish::Domain;
use dakiya_publish::compare::{Verdict, compare};
use dakiya_publish::records::{Kind, Record};
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};
use std::process::ExitCode;
use std::time::Duration;

/// Looks up each of `expected` and prints one line per record; exit status 0 only when all
/// are ok, 1 otherwise, 2 when no resolver can be set up.
pub fn run(cfg: &Config, domain: &Domain, expected: &[Record]) -> ExitCode {
    let resolver = match resolver(cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dakiya: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dakiya: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let shown = if domain.is_idn() { format!("{} ({})", domain.ascii, domain.unicode) } else { domain.ascii.clone() };
    println!("checking the records of {shown}");
    let mut bad = 0;
    for r in expected {
        let line = match rt.block_on(published(&resolver, r)) {
            Ok(found) => match compare(r, &found) {
                Verdict::Ok => format!("ok         {} {} {}", r.name, r.kind.as_str(), r.data),
                Verdict::Missing => {
                    bad += 1;
                    format!("missing    {} {}: expected {}", r.name, r.kind.as_str(), r.data)
                }
                Verdict::Different(found) => {
                    bad += 1;
                    format!(
                        "different  {} {}: expected {}; published {}",
                        r.name,
                        r.kind.as_str(),
                        r.data,
                        found.join(" | ")
                    )
                }
            },
            Err(e) => {
                bad += 1;
                format!("error      {} {}: {e}", r.name, r.kind.as_str())
            }
        };
        println!("{}", crate::termtext::clean(&line));
    }
    if bad == 0 {
        println!("all {} records are published", expected.len());
        ExitCode::SUCCESS
    } else {
        println!("{bad} of {} records are not as expected", expected.len());
        ExitCode::FAILURE
    }
}

/// A resolver asking `outbound.nameservers` (UDP, TCP for truncated answers), or the
/// system's; no cache, no hosts file.
fn resolver(cfg: &Config) -> Result<TokioResolver, String> {
    let servers = &cfg.outbound.nameservers;
    let config = if servers.is_empty() {
        hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| format!("reading the system resolver configuration: {e}"))?
            .0
    } else {
        let mut config = ResolverConfig::new();
        for &addr in servers {
            config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
        }
        config
    };
    let mut builder = TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
    let opts = builder.options_mut();
    opts.timeout = Duration::from_secs(5);
    opts.attempts = 2;
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    Ok(builder.build())
}

/// What is published at the record's name with its type, in presentation form; nothing
/// for NXDOMAIN and NODATA; an error for anything else (a timeout, SERVFAIL).
async fn published(resolver: &TokioResolver, r: &Record) -> Result<Vec<String>, ResolveError> {
    let kind = record_type(r.kind);
    let lookup = match resolver.lookup(format!("{}.", r.name), kind).await {
        Ok(l) => l,
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(lookup
        .record_iter()
        .filter(|rec| rec.record_type() == kind)
        .filter_map(|rec| presentation(rec.data()))
        .collect())
}

fn record_type(kind: Kind) -> RecordType {
    match kind {
        Kind::Mx => RecordType::MX,
        Kind::Txt => RecordType::TXT,
        Kind::Srv => RecordType::SRV,
        Kind::Cname => RecordType::CNAME,
        Kind::A => RecordType::A,
        Kind::Aaaa => RecordType::AAAA,
    }
}

/// The presentation form [`Record::data`] uses; TXT strings joined (RFC 7208 §3.3).
fn presentation(data: &RData) -> Option<String> {
    Some(match data {
        RData::MX(mx) => format!("{} {}", mx.preference(), mx.exchange()),
        RData::TXT(txt) => txt.txt_data().iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect(),
        RData::SRV(s) => format!("{} {} {} {}", s.priority(), s.weight(), s.port(), s.target()),
        RData::CNAME(c) => c.0.to_string(),
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        _ => return None,
    })
}

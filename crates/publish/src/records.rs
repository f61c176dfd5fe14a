//! The DNS records to publish for a local domain: MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT,
//! the SRV records of RFC 6186 / RFC 8314 and the helper host names clients and senders look
//! up (`mta-sts`, `autoconfig`, `autodiscover`).

use crate::{Domain, Server, Services};
use dakiya_config::Config;
use serde::Serialize;

/// A record type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Kind {
    Mx,
    Txt,
    Srv,
    Cname,
    A,
    Aaaa,
}

impl Kind {
    /// The type's name in a zone file.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Mx => "MX",
            Kind::Txt => "TXT",
            Kind::Srv => "SRV",
            Kind::Cname => "CNAME",
            Kind::A => "A",
            Kind::Aaaa => "AAAA",
        }
    }
}

/// One record. `data` is the presentation form without TXT quoting: `10 host.` (MX),
/// `0 1 465 host.` (SRV), `host.` (CNAME), an address (A, AAAA) or the TXT text whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// The owner name: an A-label, no trailing dot.
    pub name: String,
    /// The type.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The data.
    #[serde(rename = "value")]
    pub data: String,
    /// What it is for, for people.
    pub purpose: &'static str,
}

/// The SRV services of RFC 6186 §3 and RFC 8314 §5.1, implicit TLS first.
const SRV: [&str; 6] = ["_submissions", "_submission", "_imaps", "_imap", "_pop3s", "_pop3"];

/// Every record for `domain`. `dkim` holds the (name, TXT value) of each of its DKIM keys;
/// `policy_id` is the id of the served MTA-STS policy.
pub fn records(
    domain: &Domain,
    cfg: &Config,
    services: &Services,
    dkim: &[(String, String)],
    policy_id: &str,
) -> Vec<Record> {
    let d = &domain.ascii;
    let host = format!("{}.", services.host);
    let mut out = Vec::new();
    let mut add = |name: String, kind, data: String, purpose| out.push(Record { name, kind, data, purpose });
    add(d.clone(), Kind::Mx, format!("10 {host}"), "mail for the domain goes to this server");
    add(d.clone(), Kind::Txt, spf(cfg), "SPF: who may send mail from the domain (RFC 7208)");
    for (name, value) in dkim {
        add(name.clone(), Kind::Txt, value.clone(), "DKIM public key (RFC 6376)");
    }
    let report = cfg.dns.report_address.clone().unwrap_or_else(|| format!("postmaster@{d}"));
    let dmarc = format!("v=DMARC1; p={}; rua=mailto:{report}", cfg.dns.dmarc_policy.as_str());
    add(format!("_dmarc.{d}"), Kind::Txt, dmarc, "DMARC policy and aggregate reports (RFC 7489)");
    add(format!("_mta-sts.{d}"), Kind::Txt, format!("v=STSv1; id={policy_id}"), "MTA-STS policy id (RFC 8461)");
    add(format!("_smtp._tls.{d}"), Kind::Txt, format!("v=TLSRPTv1; rua=mailto:{report}"), "TLS reporting (RFC 8460)");
    let offered =
        [&services.submissions, &services.submission, &services.imaps, &services.imap, &services.pop3s, &services.pop3];
    for (service, server) in SRV.iter().zip(offered) {
        add(format!("{service}._tcp.{d}"), Kind::Srv, srv(server.as_ref()), "client configuration (RFC 6186)");
    }
    for helper in ["mta-sts", "autoconfig", "autodiscover"] {
        let name = format!("{helper}.{d}");
        if cfg.client.addresses.is_empty() {
            add(name, Kind::Cname, host.clone(), "web host of the policy and client configuration");
            continue;
        }
        for ip in &cfg.client.addresses {
            let kind = if ip.is_ipv4() { Kind::A } else { Kind::Aaaa };
            add(name.clone(), kind, ip.to_string(), "web host of the policy and client configuration");
        }
    }
    out
}

/// `v=spf1 mx -all`, or the configured public addresses instead of `mx`.
fn spf(cfg: &Config) -> String {
    if cfg.client.addresses.is_empty() {
        return "v=spf1 mx -all".to_owned();
    }
    let terms: Vec<String> = cfg
        .client
        .addresses
        .iter()
        .map(|ip| if ip.is_ipv4() { format!("ip4:{ip}") } else { format!("ip6:{ip}") })
        .collect();
    format!("v=spf1 {} -all", terms.join(" "))
}

/// An SRV target, or `0 0 0 .` for a service not offered (RFC 6186 §4).
fn srv(server: Option<&Server>) -> String {
    match server {
        Some(s) => format!("0 1 {} {}.", s.port, s.host),
        None => "0 0 0 .".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_of_a_domain() {
        let text = "hostname = \"mail.example.org\"\n[client]\naddresses = [\"192.0.2.7\", \"2001:db8::7\"]\n\
            [[listen]]\naddress = \"0.0.0.0:465\"\nrole = \"submissions\"\n[domains.\"example.org\"]\n";
        let cfg = Config::parse(text, "t").unwrap();
        let s = Services::from_config(&cfg);
        let dkim = [("s1._domainkey.example.org".to_owned(), "v=DKIM1; k=ed25519; p=AAAA".to_owned())];
        let r = records(&Domain::new("example.org").unwrap(), &cfg, &s, &dkim, "abc");
        let find = |name: &str, kind| {
            r.iter().filter(|x| x.name == name && x.kind == kind).map(|x| x.data.as_str()).collect::<Vec<_>>()
        };
        assert_eq!(find("example.org", Kind::Mx), ["10 mail.example.org."]);
        assert_eq!(find("example.org", Kind::Txt), ["v=spf1 ip4:192.0.2.7 ip6:2001:db8::7 -all"]);
        assert_eq!(find("s1._domainkey.example.org", Kind::Txt), ["v=DKIM1; k=ed25519; p=AAAA"]);
        assert_eq!(find("_dmarc.example.org", Kind::Txt), ["v=DMARC1; p=none; rua=mailto:postmaster@example.org"]);
        assert_eq!(find("_mta-sts.example.org", Kind::Txt), ["v=STSv1; id=abc"]);
        assert_eq!(find("_smtp._tls.example.org", Kind::Txt), ["v=TLSRPTv1; rua=mailto:postmaster@example.org"]);
        assert_eq!(find("_submissions._tcp.example.org", Kind::Srv), ["0 1 465 mail.example.org."]);
        assert_eq!(find("_pop3._tcp.example.org", Kind::Srv), ["0 0 0 ."]);
        assert_eq!(find("mta-sts.example.org", Kind::A), ["192.0.2.7"]);
        assert_eq!(find("autoconfig.example.org", Kind::Aaaa), ["2001:db8::7"]);
    }
}

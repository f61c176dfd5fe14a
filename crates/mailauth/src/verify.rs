//! Building the resolver, and DKIM, ARC and DMARC verification of one message.

use std::net::SocketAddr;
use std::time::Duration;

use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::system_conf::read_system_conf;
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, SpfOutput};

use crate::results::{self, DkimEntry, Results, SHA1_REFUSED};
use crate::{AuthError, AuthResult, DmarcPolicy, SpfCheck, Verdict, Verifier, spf};

/// How long one DNS query may take. Checks run while the client waits (at MAIL and at the
/// end of DATA), so a slow name server must not hold the session for long: with two
/// attempts a lookup gives up after about ten seconds and the check says `temperror`.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per query.
const DNS_ATTEMPTS: usize = 2;

/// A verifier asking `nameservers` (UDP, and TCP for truncated answers), or the system's.
pub(crate) fn new(nameservers: &[SocketAddr], authserv_id: &str) -> Result<Verifier, AuthError> {
    let (config, mut opts) = if nameservers.is_empty() {
        read_system_conf().map_err(|e| AuthError::Resolver(e.to_string()))?
    } else {
        let servers = nameservers
            .iter()
            .map(|addr| {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()].map(|mut c| {
                    c.port = addr.port();
                    c
                });
                NameServerConfig::new(addr.ip(), true, connections.into())
            })
            .collect();
        (ResolverConfig::from_name_servers(servers), ResolverOpts::default())
    };
    opts.timeout = opts.timeout.min(DNS_TIMEOUT);
    opts.attempts = opts.attempts.clamp(1, DNS_ATTEMPTS);
    // Authentication asks about other people's domains: /etc/hosts has no say in it.
    opts.use_hosts_file = ResolveHosts::Never;
    let auth = MessageAuthenticator::new(config, opts).map_err(|e| AuthError::Resolver(e.to_string()))?;
    Ok(Verifier { authserv_id: authserv_id.to_string(), auth })
}

/// DKIM and ARC (side by side: both only read the message), then DMARC, which needs the
/// DKIM results.
pub(crate) async fn verify(verifier: &Verifier, message: &[u8], spf_check: &SpfCheck) -> Verdict {
    let Some(parsed) = AuthenticatedMessage::parse(message) else { return unparseable(verifier, spf_check) };
    let auth = &verifier.auth;
    let (dkim, arc) = tokio::join!(auth.verify_dkim(&parsed), auth.verify_arc(&parsed));
    // RFC 8301 §3.1: verifiers MUST NOT consider rsa-sha1 signatures valid. mail-auth
    // verifies them, so a passing one is turned into a failure before DMARC sees it.
    let dkim: Vec<_> = dkim
        .into_iter()
        .map(|output| {
            let passed_sha1 = output.result() == &DkimResult::Pass
                && output.signature().is_some_and(|s| s.a == mail_auth::common::crypto::Algorithm::RsaSha1);
            // The same signature, borrowed from the message rather than from `output`.
            let signature = output
                .signature()
                .and_then(|s| parsed.dkim_headers.iter().map(|h| &h.header).find(|h| std::ptr::eq(*h, s)));
            match signature {
                Some(sig) if passed_sha1 => {
                    mail_auth::DkimOutput::fail(mail_auth::Error::Io(SHA1_REFUSED.into())).with_signature(sig)
                }
                _ => output,
            }
        })
        .collect();
    let spf_output = SpfOutput::new(spf_check.domain.clone()).with_result(spf::spf_result(spf_check.mail_from));
    let dmarc = auth
        .verify_dmarc(DmarcParameters {
            message: &parsed,
            dkim_output: &dkim,
            dkim2_output: None,
            rfc5321_mail_from_domain: &spf_check.domain,
            spf_output: &spf_output,
        })
        .await;
    let from_domain = if dmarc.domain().is_empty() {
        parsed.from.first().and_then(|f| f.rsplit_once('@')).map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default()
    } else {
        dmarc.domain().to_string()
    };
    let results = Results {
        authserv_id: verifier.authserv_id.clone(),
        spf: spf_check.clone(),
        dkim: dkim.iter().map(|output| DkimEntry::new(output, &parsed.from)).collect(),
        arc: results::arc_result(arc.result()),
        arc_sets: parsed.as_headers.len(),
        header_from: parsed.from.first().cloned().unwrap_or_default(),
        dmarc: Some(dmarc),
    };
    Verdict {
        header: results.header(),
        spf: spf_check.clone(),
        dkim: results.dkim.iter().map(DkimEntry::check).collect(),
        dmarc: results.dmarc.as_ref().map_or(AuthResult::PermError, results::dmarc_result),
        dmarc_policy: results.dmarc.as_ref().map_or(DmarcPolicy::None, results::dmarc_policy),
        from_domain,
        arc: results::split(&results.arc).0,
        arc_state: Some(results),
    }
}

/// A message without a header section: nothing signed it, and DMARC cannot find the author
/// domain (RFC 7489 §6.6.1), which is a permanent error of the message.
fn unparseable(verifier: &Verifier, spf_check: &SpfCheck) -> Verdict {
    let results = Results {
        authserv_id: verifier.authserv_id.clone(),
        spf: spf_check.clone(),
        dkim: Vec::new(),
        dmarc: None,
        arc: DkimResult::None,
        arc_sets: 0,
        header_from: String::new(),
    };
    Verdict {
        header: results.header(),
        spf: spf_check.clone(),
        dkim: Vec::new(),
        dmarc: AuthResult::PermError,
        dmarc_policy: DmarcPolicy::None,
        from_domain: String::new(),
        arc: AuthResult::None,
        arc_state: Some(results),
    }
}

//! What the server sets up from the configuration before it starts: the outbound service's
//! settings, read from `[outbound]` and the files it names (the relay password file, the
//! extra trust anchors).

use dakiya_config::{Config, OutboundTls};
use dakiya_outbound::{OutboundConfig, RelaySettings, TlsMode};
use dakiya_proto::client::AuthCredentials;

/// The outbound service's settings from the configuration; reads the relay password file
/// and the extra trust anchors.
pub fn outbound_config(cfg: &Config) -> Result<OutboundConfig, String> {
    let o = &cfg.outbound;
    let host_port = |h: &dakiya_config::HostPort| dakiya_route::HostPort::new(h.host.clone(), h.port);
    let mode = |t: OutboundTls| match t {
        OutboundTls::None => TlsMode::None,
        OutboundTls::Opportunistic => TlsMode::Opportunistic,
        OutboundTls::Require => TlsMode::Require,
        OutboundTls::Verify => TlsMode::Verify,
    };
    let route = dakiya_route::RouteConfig {
        nameservers: o.nameservers.clone(),
        static_routes: o.routes.iter().map(|(d, r)| (d.clone(), r.hosts.iter().map(host_port).collect())).collect(),
        relay_host: o.relay_host.as_ref().map(|r| host_port(&r.host)),
        smtp_port: o.smtp_port,
        ip_preference: match o.ip_preference {
            dakiya_config::IpPreference::Ipv6First => dakiya_route::IpPreference::Ipv6First,
            dakiya_config::IpPreference::Ipv4First => dakiya_route::IpPreference::Ipv4First,
            dakiya_config::IpPreference::Ipv4Only => dakiya_route::IpPreference::Ipv4Only,
            dakiya_config::IpPreference::Ipv6Only => dakiya_route::IpPreference::Ipv6Only,
        },
        ..dakiya_route::RouteConfig::default()
    };
    let relay = match &o.relay_host {
        None => None,
        Some(r) => {
            let credentials = match (&r.username, &r.password_file) {
                (Some(username), Some(file)) => {
                    let text = std::fs::read_to_string(file).map_err(|e| {
                        format!("outbound.relay_host.password_file: cannot read {}: {e}", file.display())
                    })?;
                    let password = text.lines().next().unwrap_or("").to_string();
                    Some(AuthCredentials { username: username.clone(), password })
                }
                _ => None,
            };
            Some(RelaySettings { tls: mode(r.tls), implicit_tls: r.implicit_tls, credentials })
        }
    };
    let mut extra_roots = Vec::new();
    if let Some(file) = &o.tls_ca_file {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(file)
            .map_err(|e| format!("outbound.tls_ca_file: cannot read {}: {e}", file.display()))?;
        for cert in certs {
            extra_roots.push(cert.map_err(|e| format!("outbound.tls_ca_file: {}: {e}", file.display()))?);
        }
    }
    Ok(OutboundConfig {
        helo_name: o.helo_name.clone(),
        route,
        default_tls: mode(o.tls),
        route_tls: o.routes.iter().map(|(d, r)| (d.clone(), mode(r.tls))).collect(),
        relay,
        extra_roots,
        connect_timeout: o.connect_timeout,
        max_connections: o.concurrency,
        max_per_destination: o.per_destination,
        idle_timeout: o.idle_timeout,
    })
}

//! `[tls.acme]` (docs/acme.md): the ACME CA, the account contact and the names; checked
//! against the listeners once they are known (HTTP-01 needs an `http` listener).

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use crate::error::{ConfigError, Ctx};
use crate::names::{is_valid_domain, normalize_domain};
use crate::raw::RawAcme;
use crate::value::{duration, path};
use crate::{Acme, Config, Role};

/// The table's values; `names` is left empty when not given ([`complete`] fills it in).
pub(crate) fn acme(cx: &Ctx, raw: Spanned<RawAcme>) -> Result<Acme, ConfigError> {
    let raw = raw.into_inner();
    let directory = match raw.directory {
        None => Acme::LETS_ENCRYPT.to_owned(),
        Some(d) if d.get_ref().starts_with("https://") && d.get_ref().len() > "https://".len() => d.into_inner(),
        Some(d) => {
            return Err(cx.err(
                "tls.acme.directory",
                Some(d.span()),
                format!("must be an https:// URL (e.g. {:?} for testing)", Acme::LETS_ENCRYPT_STAGING),
            ));
        }
    };
    let contact = match raw.contact {
        None => None,
        Some(c) => match c.get_ref().strip_prefix("mailto:") {
            Some(addr) if addr.contains('@') && !addr.contains([',', ' ']) => Some(c.into_inner()),
            _ => {
                return Err(cx.err(
                    "tls.acme.contact",
                    Some(c.span()),
                    "must be one mailto: URL, e.g. \"mailto:postmaster@example.org\"",
                ));
            }
        },
    };
    if let Some(ch) = raw.challenge
        && ch.get_ref() != "http-01"
    {
        return Err(cx.err("tls.acme.challenge", Some(ch.span()), "only \"http-01\" is supported"));
    }
    let mut names = Vec::new();
    if let Some(list) = raw.names {
        if list.get_ref().is_empty() {
            return Err(cx.err("tls.acme.names", Some(list.span()), "must name at least one host (or leave it out)"));
        }
        for n in list.into_inner() {
            let name = normalize_domain(n.get_ref());
            if name.starts_with("*.") || !is_valid_domain(&name) {
                return Err(cx.err(
                    "tls.acme.names",
                    Some(n.span()),
                    format!("{:?} is not a host name (wildcards need DNS-01, which is not supported)", n.get_ref()),
                ));
            }
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Ok(Acme {
        directory,
        contact,
        names,
        ca_file: raw.ca_file.map(|f| path(cx, "tls.acme.ca_file", &f)).transpose()?,
        renew_before: duration(cx, "tls.acme.renew_before", raw.renew_before, Duration::from_secs(30 * 86_400))?,
        check_interval: duration(cx, "tls.acme.check_interval", raw.check_interval, Duration::from_secs(12 * 3600))?,
    })
}

/// Default names (the hostname and `[client] host`), and the `http` listener HTTP-01 needs
/// (RFC 8555 §8.3: the CA fetches the answer over plain HTTP).
pub(crate) fn complete(cx: &Ctx, config: &mut Config, span: Option<Range<usize>>) -> Result<(), ConfigError> {
    let Some(acme) = config.tls.acme.as_mut() else { return Ok(()) };
    if acme.names.is_empty() {
        acme.names.push(config.hostname.clone());
        let host = normalize_domain(&config.client.host);
        if !acme.names.contains(&host) {
            acme.names.push(host);
        }
    }
    if !config.listeners.iter().any(|l| l.role == Role::Http) {
        return Err(cx.err(
            "tls.acme",
            span,
            "needs a [[listen]] with role = \"http\" (on port 80, where the CA fetches the http-01 answer)",
        ));
    }
    Ok(())
}

//! Validation of `[domains]` and `[aliases]`.

use std::collections::{BTreeMap, BTreeSet};

use toml::Spanned;

use crate::error::{ConfigError, Ctx};
use crate::locate::path;
use crate::names::{is_valid_domain, is_valid_mailbox_name, normalize_domain, normalize_local, parse_address};
use crate::raw::{RawDomain, SStr};
use crate::resolve::Resolver;
use crate::value::size;
use crate::{Config, Domain, RcptError};

/// How a mailbox name must look, for error messages.
const MAILBOX_HINT: &str = "a mailbox name has 1 to 64 letters, digits or . _ - =, \
                            does not start with a dot and has no \"..\"";

/// Validates every `[domains."name"]` table.
pub(crate) fn domains(cx: &Ctx, raw: BTreeMap<SStr, RawDomain>) -> Result<BTreeMap<String, Domain>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, raw_domain) in raw {
        let key = path(&["domains", name.get_ref()]);
        let domain = a_label(name.get_ref());
        if !is_valid_domain(&domain) {
            return Err(cx.err(key, Some(name.span()), format!("{:?} is not a valid domain name", name.get_ref())));
        }
        if out.contains_key(&domain) {
            return Err(cx.err(
                key,
                Some(name.span()),
                format!("domain {domain} is configured twice (names are case-insensitive)"),
            ));
        }
        let parsed = one_domain(cx, &key, &domain, raw_domain)?;
        out.insert(domain, parsed);
    }
    Ok(out)
}

/// A domain key as its lowercase A-label: a Unicode name (`bücher.example`) is converted
/// (UTS #46, the `idna` crate), so the rest of the server and the DNS records see one
/// spelling; `dakiya dns` shows the U-label to people again.
fn a_label(name: &str) -> String {
    let domain = normalize_domain(name);
    if domain.is_ascii() {
        return domain;
    }
    idna::domain_to_ascii(&domain).unwrap_or(domain)
}

fn one_domain(cx: &Ctx, key: &str, domain: &str, raw: RawDomain) -> Result<Domain, ConfigError> {
    let key_of = |field: &str| format!("{key}.{field}");
    let mut mailboxes = BTreeSet::new();
    for m in &raw.mailboxes {
        let name = normalize_local(m.get_ref());
        if !is_valid_mailbox_name(&name) {
            return Err(cx.err(
                key_of("mailboxes"),
                Some(m.span()),
                format!("{:?} is not a valid mailbox name: {MAILBOX_HINT}", m.get_ref()),
            ));
        }
        if !mailboxes.insert(name.clone()) {
            return Err(cx.err(
                key_of("mailboxes"),
                Some(m.span()),
                format!("mailbox {name:?} is listed twice (names are case-insensitive)"),
            ));
        }
    }
    let catch_all = match raw.catch_all {
        None => None,
        Some(c) => Some(
            catch_all(c.get_ref(), domain, &mailboxes, raw.any_mailbox)
                .map_err(|m| cx.err(key_of("catch_all"), Some(c.span()), m))?,
        ),
    };
    let quota = match raw.quota {
        None => None,
        Some(q) => Some(size(cx, &key_of("quota"), Some(q), 0)?),
    };
    let mut mailbox_quota = BTreeMap::new();
    for (mailbox, q) in raw.mailbox_quota {
        let name = normalize_local(mailbox.get_ref());
        let key = format!("{}.{}", key_of("mailbox_quota"), crate::locate::key(mailbox.get_ref()));
        if !is_valid_mailbox_name(&name) {
            let why = format!("{:?} is not a valid mailbox name: {MAILBOX_HINT}", mailbox.get_ref());
            return Err(cx.err(key, Some(mailbox.span()), why));
        }
        let bytes = size(cx, &key, Some(q), 0)?;
        if mailbox_quota.insert(name.clone(), bytes).is_some() {
            let why = format!("mailbox {name:?} is listed twice (names are case-insensitive)");
            return Err(cx.err(key, Some(mailbox.span()), why));
        }
    }
    Ok(Domain { mailboxes, catch_all, any_mailbox: raw.any_mailbox, quota, mailbox_quota })
}

/// A catch-all must be an address in its own domain naming one of its mailboxes.
fn catch_all(address: &str, domain: &str, mailboxes: &BTreeSet<String>, any_mailbox: bool) -> Result<String, String> {
    let Some((local, at)) = parse_address(address) else {
        return Err(format!("{address:?} is not a valid address"));
    };
    if at != domain {
        return Err(format!("{address:?} must be an address in {domain}"));
    }
    let local = normalize_local(&local);
    let is_mailbox = mailboxes.contains(&local) || (any_mailbox && is_valid_mailbox_name(&local));
    if !is_mailbox {
        return Err(format!("{address:?} is not a mailbox of {domain}: add {local:?} to mailboxes"));
    }
    Ok(format!("{local}@{domain}"))
}

/// Validates `[aliases]` into `config.aliases`, then resolves every target so that unknown
/// mailboxes, loops and too-deep nesting are found now rather than when mail arrives.
pub(crate) fn aliases(
    cx: &Ctx,
    config: &mut Config,
    raw: BTreeMap<SStr, Spanned<Vec<SStr>>>,
) -> Result<(), ConfigError> {
    // Normalized target, its key path and span, for the resolution check.
    let mut written = Vec::new();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, targets) in raw {
        let key = path(&["aliases", name.get_ref()]);
        let alias = alias_name(config, name.get_ref()).map_err(|m| cx.err(&key, Some(name.span()), m))?;
        if out.contains_key(&alias) {
            return Err(cx.err(
                key,
                Some(name.span()),
                format!("alias {alias} is defined twice (addresses are case-insensitive)"),
            ));
        }
        if targets.get_ref().is_empty() {
            return Err(cx.err(key, Some(targets.span()), "must list at least one target address"));
        }
        let mut list = Vec::with_capacity(targets.get_ref().len());
        for t in targets.into_inner() {
            let target = alias_target(config, t.get_ref()).map_err(|m| cx.err(&key, Some(t.span()), m))?;
            written.push((target.clone(), key.clone(), t.span()));
            list.push(target);
        }
        out.insert(alias, list);
    }
    config.aliases = out;
    for (target, key, span) in written {
        let mut resolver = Resolver::new(config);
        if let Err(e) = resolver.target(&target) {
            let why = resolver.detail().map_or_else(|| e.to_string(), str::to_owned);
            let mut message = if why.starts_with(&format!("`{target}`")) {
                format!("target {why}")
            } else {
                format!("target `{target}` does not resolve: {why}")
            };
            // Users are added at runtime, so a target that is only a user cannot be checked
            // here; say so, since users_are_mailboxes makes it look like it should work.
            if e == RcptError::UnknownMailbox && config.auth.users_are_mailboxes {
                message.push_str(
                    " (users of auth.users_file are not known when the configuration is \
                     loaded: list a user that is an alias target in its domain's mailboxes)",
                );
            }
            return Err(cx.err(key, Some(span), message));
        }
    }
    Ok(())
}

/// The normalized alias name: an address in a local domain.
fn alias_name(config: &Config, written: &str) -> Result<String, String> {
    let Some((local, domain)) = parse_address(written) else {
        return Err(format!("{written:?} is not a valid address"));
    };
    if !config.domains.contains_key(&domain) {
        return Err(format!("{written:?} is not in a local domain (aliases are for addresses in [domains])"));
    }
    Ok(format!("{}@{domain}", normalize_local(&local)))
}

/// The normalized alias target: local parts in local domains are lowercased, remote ones kept
/// as written (another server may treat case as significant).
fn alias_target(config: &Config, written: &str) -> Result<String, String> {
    let Some((local, domain)) = parse_address(written) else {
        return Err(format!("target {written:?} is not a valid address"));
    };
    if config.domains.contains_key(&domain) {
        Ok(format!("{}@{domain}", normalize_local(&local)))
    } else {
        Ok(format!("{local}@{domain}"))
    }
}

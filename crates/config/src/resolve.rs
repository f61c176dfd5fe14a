//! Recipient routing: which mailboxes (and remote addresses) an address delivers to.

use std::collections::BTreeSet;

use crate::names::{is_valid_mailbox_name, normalize_domain, normalize_local};
use crate::{Config, Domain, RcptError};

/// The deepest chain of aliases expanded before giving up with [`RcptError::AliasLoop`].
const MAX_ALIAS_DEPTH: usize = 10;

/// Where one recipient's mail goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// A local mailbox: `data_dir/mail/<domain>/<mailbox>`. Both names are lowercase and safe
    /// as directory names.
    Mailbox {
        /// The local domain (lowercase, as configured).
        domain: String,
        /// The mailbox name, a valid [mailbox name](crate::is_valid_mailbox_name).
        mailbox: String,
    },
    /// An address in another domain, reached through an alias: to be relayed.
    Remote {
        /// The full address, domain lowercase.
        address: String,
    },
}

impl Config {
    /// The Maildir of mailbox `mailbox` in local domain `domain`: `data_dir/mail/<domain>/<mailbox>`.
    /// Local delivery writes there and POP3 reads there; both ask this function.
    pub fn maildir_path(&self, domain: &str, mailbox: &str) -> std::path::PathBuf {
        self.data_dir.join("mail").join(domain).join(mailbox)
    }

    /// Whether `domain` is one of ours: compared case-insensitively, one trailing dot ignored.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.domains.contains_key(&normalize_domain(domain))
    }

    /// Where mail for `local_part@domain` goes: the sorted, deduplicated targets.
    ///
    /// Domains and local parts compare case-insensitively. RFC 5321 §2.4 allows a server to
    /// treat local parts as case-sensitive, but mailboxes here are directories: folding case
    /// (Unicode lowercase) means `Alice` and `alice` are always the same mailbox. In order:
    /// 1. a domain that is not local is [`RcptError::NotLocal`];
    /// 2. an alias for the exact address expands, recursively, to its targets (local targets
    ///    resolve like this, except that catch-alls do not apply to them; other domains'
    ///    addresses become [`Target::Remote`]; more than 10 nested aliases or a loop is
    ///    [`RcptError::AliasLoop`]);
    /// 3. a configured mailbox with exactly that name;
    /// 4. with the recipient delimiter, `user+tag` is retried as `user`: alias, then mailbox;
    /// 5. under `any_mailbox`, the (untagged) local part is its own mailbox if it is a valid
    ///    mailbox name;
    /// 6. the domain's catch-all;
    /// 7. otherwise [`RcptError::InvalidMailboxName`] under `any_mailbox`, else
    ///    [`RcptError::UnknownMailbox`].
    pub fn resolve(&self, local_part: &str, domain: &str) -> Result<Vec<Target>, RcptError> {
        self.resolve_with(local_part, domain, &no_users)
    }

    /// Like [`Config::resolve`], but users of the user store are mailboxes too.
    ///
    /// When [`Auth::users_are_mailboxes`](crate::Auth::users_are_mailboxes) is true and
    /// `is_user` returns true for `local@domain` (lowercase local part, configured domain
    /// name), that address is a mailbox as if `local` were listed in the domain's `mailboxes`,
    /// provided it is a valid [mailbox name](crate::is_valid_mailbox_name): users are added at
    /// runtime, so the configuration cannot list them. It therefore comes after the exact alias
    /// and the listed mailbox, and the `+tag` base is tried the same way (alias, then listed
    /// mailbox or user), all before `any_mailbox` and the catch-all. Alias targets that are
    /// users are mailboxes too.
    pub fn resolve_with(
        &self,
        local_part: &str,
        domain: &str,
        is_user: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Target>, RcptError> {
        let mut resolver = Resolver::with_users(self, is_user);
        resolver.recipient(local_part, domain, Via::Network)?;
        Ok(resolver.finish())
    }
}

/// The user store of [`Config::resolve`]: empty.
fn no_users(_: &str) -> bool {
    false
}

/// How an address reached the resolver: catch-alls apply only to mail from the network, so that
/// a typo in an alias target is a configuration error rather than mail for the catch-all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Network,
    Alias,
}

/// One resolution: a depth-first expansion that tells loops (an alias on the current path)
/// from diamonds (an alias already expanded through another path), so each alias expands at
/// most once and the work stays linear in the size of the alias table.
pub(crate) struct Resolver<'c> {
    config: &'c Config,
    /// Whether an address (lowercase) is a user of the user store.
    is_user: &'c dyn Fn(&str) -> bool,
    /// Aliases being expanded, outermost first.
    stack: Vec<String>,
    /// Aliases fully expanded.
    done: BTreeSet<String>,
    out: Vec<Target>,
    /// What went wrong, innermost first, for configuration errors.
    detail: Option<String>,
}

impl<'c> Resolver<'c> {
    /// A resolver that knows no users (configuration checks, [`Config::resolve`]).
    pub(crate) fn new(config: &'c Config) -> Self {
        Self::with_users(config, &no_users)
    }

    /// A resolver for which the addresses `is_user` accepts are mailboxes, when
    /// `auth.users_are_mailboxes` is set.
    pub(crate) fn with_users(config: &'c Config, is_user: &'c dyn Fn(&str) -> bool) -> Self {
        Resolver { config, is_user, stack: Vec::new(), done: BTreeSet::new(), out: Vec::new(), detail: None }
    }

    /// The targets found, sorted and deduplicated.
    pub(crate) fn finish(mut self) -> Vec<Target> {
        self.out.sort();
        self.out.dedup();
        self.out
    }

    /// Whether the alias `address` (lowercase) was expanded along the way.
    pub(crate) fn expanded(&self, address: &str) -> bool {
        self.done.contains(address)
    }

    /// A readable account of the failure, if one was recorded.
    pub(crate) fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    fn note(&mut self, detail: impl FnOnce() -> String) {
        if self.detail.is_none() {
            self.detail = Some(detail());
        }
    }

    /// Resolves an alias target as stored in [`Config::aliases`].
    pub(crate) fn target(&mut self, address: &str) -> Result<(), RcptError> {
        let Some((local, domain)) = address.rsplit_once('@') else {
            self.note(|| format!("{address:?} is not an address"));
            return Err(RcptError::UnknownMailbox);
        };
        if !self.config.is_local_domain(domain) {
            self.out.push(Target::Remote { address: address.to_owned() });
            return Ok(());
        }
        self.recipient(local, domain, Via::Alias).inspect_err(|e| {
            let why = match e {
                RcptError::InvalidMailboxName => "is not a valid mailbox name",
                _ => "is no alias or mailbox",
            };
            self.note(|| format!("`{address}` {why}"));
        })
    }

    fn recipient(&mut self, local: &str, domain: &str, via: Via) -> Result<(), RcptError> {
        let config = self.config;
        let Some((domain, dom)) = config.domains.get_key_value(&normalize_domain(domain)) else {
            return Err(RcptError::NotLocal);
        };
        let local = normalize_local(local);
        if self.alias(&local, domain)? || self.mailbox(&local, domain, dom) {
            return Ok(());
        }
        let base = strip_tag(&local, config.recipient_delimiter);
        if let Some(base) = base
            && (self.alias(base, domain)? || self.mailbox(base, domain, dom))
        {
            return Ok(());
        }
        let name = base.unwrap_or(&local);
        if dom.any_mailbox && is_valid_mailbox_name(name) {
            self.push_mailbox(domain, name);
            return Ok(());
        }
        if via == Via::Network {
            let catch_all = dom.catch_all.as_deref().and_then(|a| a.rsplit_once('@'));
            if let Some((mailbox, _)) = catch_all.filter(|(m, _)| is_valid_mailbox_name(m)) {
                self.push_mailbox(domain, mailbox);
                return Ok(());
            }
        }
        Err(if dom.any_mailbox { RcptError::InvalidMailboxName } else { RcptError::UnknownMailbox })
    }

    /// A mailbox `name` of `dom`, listed or (see [`Config::resolve_with`]) a user, if there is
    /// one.
    fn mailbox(&mut self, name: &str, domain: &str, dom: &Domain) -> bool {
        // The validity check repeats load-time validation: a name that reaches the file
        // system must be safe however the Config was built. It comes first so that the user
        // store is never asked about names that could not be mailboxes anyway.
        let found = is_valid_mailbox_name(name)
            && (dom.mailboxes.contains(name)
                || (self.config.auth.users_are_mailboxes && (self.is_user)(&format!("{name}@{domain}"))));
        if found {
            self.push_mailbox(domain, name);
        }
        found
    }

    fn push_mailbox(&mut self, domain: &str, mailbox: &str) {
        self.out.push(Target::Mailbox { domain: domain.to_owned(), mailbox: mailbox.to_owned() });
    }

    /// Expands the alias `local@domain` if there is one: `Ok(false)` if there is none.
    fn alias(&mut self, local: &str, domain: &str) -> Result<bool, RcptError> {
        let config = self.config;
        let key = format!("{local}@{domain}");
        let Some(targets) = config.aliases.get(&key) else {
            return Ok(false);
        };
        if self.done.contains(&key) {
            return Ok(true);
        }
        if let Some(start) = self.stack.iter().position(|k| *k == key) {
            let path = self.stack[start..].join(" → ");
            self.note(|| format!("alias loop: {path} → {key}"));
            return Err(RcptError::AliasLoop);
        }
        if self.stack.len() >= MAX_ALIAS_DEPTH {
            let path = self.stack.join(" → ");
            self.note(|| format!("aliases nest deeper than {MAX_ALIAS_DEPTH} levels: {path} → {key}"));
            return Err(RcptError::AliasLoop);
        }
        self.stack.push(key.clone());
        for target in targets {
            self.target(target)?;
        }
        self.stack.pop();
        self.done.insert(key);
        Ok(true)
    }
}

/// `user` from `user+tag`; `None` without a delimiter, or if `user` would be empty.
fn strip_tag(local: &str, delimiter: Option<char>) -> Option<&str> {
    let (base, _tag) = local.split_once(delimiter?)?;
    (!base.is_empty()).then_some(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(strip_tag("a+b", Some('+')), Some("a"));
        assert_eq!(strip_tag("a+b+c", Some('+')), Some("a"));
        assert_eq!(strip_tag("+b", Some('+')), None);
        assert_eq!(strip_tag("ab", Some('+')), None);
        assert_eq!(strip_tag("a+b", None), None);
        assert_eq!(strip_tag("a-b", Some('-')), Some("a"));
    }
}

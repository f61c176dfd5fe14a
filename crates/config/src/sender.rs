//! Submission policy that depends only on the configuration: which clients are trusted to relay,
//! and which MAIL FROM addresses an authenticated user may use.

use std::net::IpAddr;

use crate::Config;
use crate::names::{normalize_domain, normalize_local};
use crate::resolve::{Resolver, Target};

impl Config {
    /// Whether `ip` is in one of [`Config::trusted_networks`], so that the client may relay
    /// without AUTH.
    ///
    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a dual-stack socket reports IPv4
    /// clients) matches the IPv4 networks, and also IPv6 networks written in mapped form.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.trusted_networks.iter().any(|n| n.contains(&ip) || n.contains(&canonical))
    }

    /// May authenticated `user` use `from` (a MAIL FROM address, lowercase compare; `""` is the
    /// null sender `<>`)?
    ///
    /// `user` and `from` are addresses (`local@domain`, without angle brackets); local parts
    /// and domains compare case-insensitively. Yes for:
    /// 1. the null sender (RFC 5321 §4.5.5: bounces and notifications);
    /// 2. `user` itself;
    /// 3. `user`'s tag variants (`alice+news@dom` with the
    ///    [recipient delimiter](Config::recipient_delimiter)), unless that exact address is an
    ///    alias or a listed mailbox of its own: it then belongs to whoever it delivers to;
    /// 4. an address whose resolution, as an alias target would be resolved (tag stripping
    ///    included, no catch-all), reaches `user`: it expands, at any depth, the alias `user`,
    ///    or delivers to `user`'s mailbox (its lowercase local part in its domain; a user
    ///    counts as a mailbox under `auth.users_are_mailboxes`) or to `user` as a remote
    ///    address;
    /// 5. a [`Config::send_as`] entry for `user`: the exact address, or `@domain` for every
    ///    address of that domain.
    ///
    /// No otherwise, and no if `user` or `from` is not of the form `local@domain`.
    ///
    /// When the delimiter is a character that mailbox names may contain (`-`, `.`, `_`, `=`),
    /// rule 3 cannot tell a tag from another user that is known only to the user store: with
    /// `-`, user `mary` may use `mary-jane` unless `mary-jane` is an alias or listed mailbox.
    /// The default `+` never appears in a mailbox name.
    pub fn may_send_as(&self, user: &str, from: &str) -> bool {
        if from.is_empty() {
            return true;
        }
        let (Some(user), Some(from)) = (Address::new(user), Address::new(from)) else {
            return false;
        };
        from == user || self.tag_of(&user, &from) || self.reaches(&user, &from) || self.send_as_lists(&user, &from)
    }

    /// Rule 3: `from` is `user` with a tag, and not an address of its own.
    fn tag_of(&self, user: &Address, from: &Address) -> bool {
        let claimed = self
            .domains
            .get(&from.domain)
            .is_some_and(|d| self.aliases.contains_key(&from.full()) || d.mailboxes.contains(&from.local));
        from.domain == user.domain
            && !claimed
            && from
                .local
                .strip_prefix(user.local.as_str())
                .and_then(|rest| rest.chars().next())
                .is_some_and(|c| Some(c) == self.recipient_delimiter)
    }

    /// Rule 4: resolving `from` (in a local domain) reaches `user`.
    fn reaches(&self, user: &Address, from: &Address) -> bool {
        if !self.domains.contains_key(&from.domain) {
            return false;
        }
        let user_address = user.full();
        // `user` has authenticated, so it is a user; under users_are_mailboxes its mailbox
        // exists even if no configuration lists it.
        let is_user = |a: &str| a == user_address;
        let mut resolver = Resolver::with_users(self, &is_user);
        // Alias-target resolution: a catch-all must not make its owner every sender.
        if resolver.target(&from.full()).is_err() {
            return false;
        }
        if resolver.expanded(&user_address) {
            return true;
        }
        resolver.finish().iter().any(|t| match t {
            Target::Mailbox { domain, mailbox } => *domain == user.domain && *mailbox == user.local,
            Target::Remote { address } => Address::new(address).as_ref() == Some(user),
        })
    }

    /// Rule 5: `[send_as]` lists `from` or its domain for `user`.
    fn send_as_lists(&self, user: &Address, from: &Address) -> bool {
        let Some(entries) = self.send_as.get(&user.full()) else {
            return false;
        };
        let address = from.full();
        entries.iter().any(|e| *e == address || e.strip_prefix('@') == Some(from.domain.as_str()))
    }
}

/// An address split and normalized for comparison: lowercase local part and domain.
#[derive(Debug, PartialEq, Eq)]
struct Address {
    local: String,
    domain: String,
}

impl Address {
    fn new(address: &str) -> Option<Address> {
        let (local, domain) = address.rsplit_once('@')?;
        let domain = normalize_domain(domain);
        (!local.is_empty() && !domain.is_empty()).then(|| Address { local: normalize_local(local), domain })
    }

    fn full(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }
}

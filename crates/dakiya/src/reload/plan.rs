//! The pure part of a reload: which listeners to start and stop, and which keys cannot change
//! while the server runs. No I/O; unit-tested below.

use dakiya_config::{Config, Listener, Role};
use std::net::SocketAddr;

/// What identifies a listener across reloads: the address as configured (port 0 stays port 0,
/// whatever port it was given), its role, and which of the listeners with that address and
/// role it is (port 0 may be configured more than once). Any role: the diff does not look
/// inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerKey {
    /// The configured address.
    pub address: SocketAddr,
    /// What the listener is for.
    pub role: Role,
    /// How many listeners before it in the configuration have the same address and role.
    pub nth: usize,
}

impl ListenerKey {
    /// The keys of `listeners`, in their order.
    pub fn all(listeners: &[Listener]) -> Vec<ListenerKey> {
        let mut keys: Vec<ListenerKey> = Vec::with_capacity(listeners.len());
        for l in listeners {
            let nth = keys.iter().filter(|k| k.address == l.address && k.role == l.role).count();
            keys.push(ListenerKey { address: l.address, role: l.role, nth });
        }
        keys
    }

    /// This listener in `cfg` (its checks and screening now), if `cfg` has it.
    pub fn listener_in<'c>(&self, cfg: &'c Config) -> Option<&'c Listener> {
        let at = ListenerKey::all(&cfg.listeners).iter().position(|k| k == self)?;
        Some(&cfg.listeners[at])
    }
}

/// How the listeners change from one configuration to the next.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListenerDiff {
    /// In the new configuration only: to start, in its order.
    pub added: Vec<(ListenerKey, Listener)>,
    /// In the old configuration only: to stop accepting on (open sessions finish).
    pub removed: Vec<ListenerKey>,
}

impl ListenerDiff {
    /// Compares `old` and `new` by [`ListenerKey`]. A listener in both is kept as it runs
    /// (its sessions take the new checks from the configuration in force).
    pub fn between(old: &[Listener], new: &[Listener]) -> ListenerDiff {
        let (old_keys, new_keys) = (ListenerKey::all(old), ListenerKey::all(new));
        let added = new_keys.iter().zip(new).filter(|(k, _)| !old_keys.contains(k));
        ListenerDiff {
            added: added.map(|(k, l)| (*k, l.clone())).collect(),
            removed: old_keys.iter().copied().filter(|k| !new_keys.contains(k)).collect(),
        }
    }

    /// The removed listener on the same configured address as the added `key` (the role
    /// changed), if any: its socket is taken over instead of binding the address a second
    /// time. Port 0 is never taken over: it means "any free port", not this one.
    pub fn takes_over(&self, key: &ListenerKey) -> Option<ListenerKey> {
        if key.address.port() == 0 {
            return None;
        }
        self.removed.iter().copied().find(|k| k.address == key.address)
    }
}

/// What a reload says about a key that cannot change while the server runs.
pub const NEEDS_RESTART: &str = "cannot change while the server runs; it needs a restart (nothing was reloaded)";

/// The keys that differ between `old` and `new` but are fixed for the life of the process:
/// the data directory (the spool and its lock, the control socket, the mailboxes), the user
/// store and password-check settings (the authenticator's throttle would be reset), the
/// connection limits (the admission table) and delivery concurrency (the scheduler's bound),
/// the log format (installed once per process), the message history (its writer is
/// started once), `[greylist]` (its state is opened once) and `[tls.acme]` (its task is
/// spawned once). Empty: the reload may go ahead.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (&old.auth, &new.auth);
    let checks: [(&'static str, bool); 24] = [
        ("data_dir", old.data_dir == new.data_dir),
        ("auth.users_file", a.users_file == b.users_file),
        ("auth.backend", a.backend == b.backend),
        ("auth.failure_delay", a.failure_delay == b.failure_delay),
        ("auth.max_failures", a.max_failures == b.max_failures),
        ("auth.failure_window", a.failure_window == b.failure_window),
        ("auth.lockout", a.lockout == b.lockout),
        ("auth.max_concurrent_checks", a.max_concurrent_checks == b.max_concurrent_checks),
        ("auth.check_queue_timeout", a.check_queue_timeout == b.check_queue_timeout),
        ("limits.max_connections", old.limits.max_connections == new.limits.max_connections),
        ("limits.max_connections_per_ip", old.limits.max_connections_per_ip == new.limits.max_connections_per_ip),
        (
            "limits.max_connections_per_network",
            old.limits.max_connections_per_network == new.limits.max_connections_per_network,
        ),
        ("delivery.local_concurrency", old.delivery.local_concurrency == new.delivery.local_concurrency),
        ("delivery.spool_slots", old.delivery.spool_slots == new.delivery.spool_slots),
        ("outbound.concurrency", old.outbound.concurrency == new.outbound.concurrency),
        ("log.format", old.log.format == new.log.format),
        ("log.timestamps", old.log.timestamps == new.log.timestamps),
        ("history.enabled", old.history.enabled == new.history.enabled),
        ("history.days", old.history.days == new.history.days),
        ("greylist", old.greylist == new.greylist),
        // The ACME task is spawned once, at start (acme.rs).
        ("tls.acme", old.tls.acme == new.tls.acme),
        // Applied once, at start, when the process drops root (privdrop.rs).
        ("user", old.privileges.names().0 == new.privileges.names().0),
        ("group", old.privileges.names().1 == new.privileges.names().1),
        ("allow_root", old.privileges.allow_root == new.privileges.allow_root),
    ];
    checks.into_iter().filter(|&(_, same)| !same).map(|(key, _)| key).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        let text = format!(
            "{extra}\n[[listen]]\naddress = \"127.0.0.1:2525\"\nrole = \"mx\"\n[domains.\"example.test\"]\nmailboxes = [\"a\"]\n"
        );
        Config::parse(&text, "test.toml").unwrap()
    }

    fn listeners(specs: &[(&str, &str)]) -> Vec<Listener> {
        let mut text = String::new();
        for (address, role) in specs {
            text.push_str(&format!("[[listen]]\naddress = \"{address}\"\nrole = \"{role}\"\n"));
        }
        Config::parse(&text, "test.toml").unwrap().listeners
    }

    fn key(address: &str, role: Role) -> ListenerKey {
        ListenerKey { address: address.parse().unwrap(), role, nth: 0 }
    }

    fn added(diff: &ListenerDiff) -> Vec<Listener> {
        diff.added.iter().map(|(_, l)| l.clone()).collect()
    }

    #[test]
    fn listeners_are_matched_by_address_and_role() {
        let old = listeners(&[("127.0.0.1:25", "mx"), ("127.0.0.1:587", "submission"), ("127.0.0.1:0", "mx")]);
        let new = listeners(&[("127.0.0.1:0", "mx"), ("127.0.0.1:465", "submissions"), ("127.0.0.1:25", "mx")]);
        let diff = ListenerDiff::between(&old, &new);
        assert_eq!(added(&diff), listeners(&[("127.0.0.1:465", "submissions")]));
        assert_eq!(diff.removed, vec![key("127.0.0.1:587", Role::Submission)]);
        assert_eq!(ListenerDiff::between(&old, &old), ListenerDiff::default());
    }

    #[test]
    fn a_role_change_takes_over_the_socket_except_on_port_zero() {
        let old = listeners(&[("127.0.0.1:25", "mx"), ("127.0.0.1:0", "mx")]);
        let new = listeners(&[("127.0.0.1:25", "submission"), ("127.0.0.1:0", "submission")]);
        let diff = ListenerDiff::between(&old, &new);
        assert_eq!(diff.removed, vec![key("127.0.0.1:25", Role::Mx), key("127.0.0.1:0", Role::Mx)]);
        assert_eq!(diff.takes_over(&diff.added[0].0), Some(key("127.0.0.1:25", Role::Mx)));
        assert_eq!(diff.takes_over(&diff.added[1].0), None);
    }

    #[test]
    fn port_zero_listeners_are_told_apart_by_their_order() {
        let two = listeners(&[("127.0.0.1:0", "mx"), ("127.0.0.1:0", "mx")]);
        let one = listeners(&[("127.0.0.1:0", "mx")]);
        let second = ListenerKey { nth: 1, ..key("127.0.0.1:0", Role::Mx) };
        assert_eq!(ListenerKey::all(&two), [key("127.0.0.1:0", Role::Mx), second]);
        assert_eq!(ListenerDiff::between(&two, &one).removed, [second]);
        let diff = ListenerDiff::between(&one, &two);
        assert_eq!(diff.added.len(), 1);
        assert_eq!(diff.added[0].0, second);
    }

    #[test]
    fn checks_come_from_the_configuration_in_force() {
        let text = "[[listen]]\naddress = \"127.0.0.1:25\"\nrole = \"mx\"\nverify = false\nspf_reject = true\n";
        let c = Config::parse(text, "test.toml").unwrap();
        let checks = key("127.0.0.1:25", Role::Mx).listener_in(&c).unwrap().checks;
        assert!(!checks.verify && checks.spf_reject);
        // Two on port 0: each has its own.
        let text = "[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\nverify = false\n[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"mx\"\n";
        let c = Config::parse(text, "test.toml").unwrap();
        assert!(!key("127.0.0.1:0", Role::Mx).listener_in(&c).unwrap().checks.verify);
        assert!(ListenerKey { nth: 1, ..key("127.0.0.1:0", Role::Mx) }.listener_in(&c).unwrap().checks.verify);
        assert_eq!(key("127.0.0.1:26", Role::Mx).listener_in(&c), None);
        assert_eq!(key("127.0.0.1:25", Role::Submission).listener_in(&c), None);
    }

    #[test]
    fn what_needs_a_restart() {
        let base = cfg("");
        // Domains, aliases, routes, limits, timeouts, listeners: all reloadable.
        let fine = cfg(
            "[limits]\nmax_recipients = 5\n[timeouts]\ncommand = \"10s\"\n[outbound.relay_host]\nhost = \"127.0.0.1:2600\"\n[[listen]]\naddress = \"127.0.0.1:2526\"\nrole = \"submission\"\n[domains.\"other.test\"]\nmailboxes = [\"b\"]\n",
        );
        assert_eq!(needs_restart(&base, &fine), Vec::<&str>::new());
        let fixed = cfg(
            "data_dir = \"/elsewhere\"\nuser = \"nobody\"\n[auth]\nusers_file = \"/elsewhere/users\"\nmax_failures = 3\n[limits]\nmax_connections = 7\n[delivery]\nlocal_concurrency = 9\nspool_slots = 8\n[log]\nformat = \"json\"\n",
        );
        assert_eq!(
            needs_restart(&base, &fixed),
            [
                "data_dir",
                "auth.users_file",
                "auth.max_failures",
                "limits.max_connections",
                "delivery.local_concurrency",
                "delivery.spool_slots",
                "log.format",
                "user"
            ]
        );
    }

    #[test]
    fn acme_needs_a_restart() {
        let http = "[[listen]]\naddress = \"127.0.0.1:8080\"\nrole = \"http\"\n";
        let off = cfg(http);
        let on = cfg(&format!("[tls.acme]\ncontact = \"mailto:a@example.test\"\n{http}"));
        let other = cfg(&format!("[tls.acme]\ncontact = \"mailto:b@example.test\"\n{http}"));
        assert_eq!(needs_restart(&off, &on), ["tls.acme"]);
        assert_eq!(needs_restart(&on, &other), ["tls.acme"]);
        assert_eq!(needs_restart(&on, &on.clone()), Vec::<&str>::new());
    }
}

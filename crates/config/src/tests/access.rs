//! Submission settings that load: roles, `[tls]`, `[auth]`, `trusted_networks`, `[send_as]`,
//! and the questions they answer: `is_trusted`, `may_send_as`, `resolve_with`.

use std::cell::RefCell;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{bad, parse_ok, with_listener};
use crate::{Auth, Config, RcptError, Role, Target};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn mb(domain: &str, mailbox: &str) -> Target {
    Target::Mailbox { domain: domain.to_owned(), mailbox: mailbox.to_owned() }
}

fn round_trip(c: &Config) {
    let text = c.to_toml();
    let again =
        Config::parse(&text, &c.source).unwrap_or_else(|e| panic!("to_toml output does not parse: {e}\n{text}"));
    assert_eq!(&again, c, "{text}");
    assert_eq!(again.to_toml(), text);
}

// --- loading -----------------------------------------------------------------------------------

#[test]
fn roles() {
    let c = parse_ok(
        "[[listen]]\naddress = \"[::1]:587\"\nrole = \"submission\"\n\
         [[listen]]\naddress = \"[::1]:465\"\nrole = \"submissions\"\n\
         [[listen]]\naddress = \"[::1]:25\"\nrole = \"mx\"\n",
    );
    let roles: Vec<Role> = c.listeners.iter().map(|l| l.role).collect();
    assert_eq!(roles, [Role::Submission, Role::Submissions, Role::Mx]);
    let names: Vec<String> = roles.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["submission", "submissions", "mx"]);
    let implicit: Vec<bool> = roles.iter().map(|r| r.implicit_tls()).collect();
    assert_eq!(implicit, [false, true, false]);
    round_trip(&c);
}

#[test]
fn defaults_follow_data_dir() {
    let c = parse_ok(&with_listener("data_dir = \"/srv/mail\"\n"));
    assert_eq!(c.auth, Auth::defaults(Path::new("/srv/mail")));
    assert_eq!(c.auth.users_file, PathBuf::from("/srv/mail/users"));
    // One check per CPU, at most 4: argon2's memory stays at most 4 × 19 MiB by default.
    assert!((1..=4).contains(&c.auth.max_concurrent_checks));
    assert_eq!(c.auth.check_queue_timeout, Duration::from_secs(5));
    assert_eq!(c.tls.files(), None);
    assert_eq!(c.self_signed_tls_dir(), PathBuf::from("/srv/mail/tls"));
    round_trip(&c);
}

#[test]
fn every_access_setting() {
    let c = parse_ok(&with_listener(
        "data_dir = \"/srv/mail\"\n\
         trusted_networks = [\"::1\", \"::ffff:192.0.2.0/120\", \"0.0.0.0/0\", \"2001:DB8::/32\"]\n\
         [tls]\ncert = \"certs/my cert.pem\"\nkey = \"certs/my cert.pem\"\ncheck_interval = 90\n\
         [auth]\nusers_file = \"users.db\"\nplaintext_on_loopback = true\n\
         users_are_mailboxes = false\nfailure_delay = \"500ms\"\nmax_failures = 1\n\
         failure_window = \"1h 30m\"\nlockout = 3600\nmax_concurrent_checks = 256\n\
         check_queue_timeout = \"250ms\"\n\
         [send_as]\n\"Alice@Example.ORG\" = [\"Info@Example.org\", \"@Example.NET.\"]\n\
         \"bob@example.org\" = [\"Élodie@example.org\"]\n",
    ));
    let cert = Path::new("certs/my cert.pem");
    assert_eq!(c.tls.files(), Some((cert, cert)));
    assert_eq!(c.tls.check_interval, Duration::from_secs(90));
    let a = &c.auth;
    // An explicit users_file is kept as written, not joined to data_dir.
    assert_eq!(a.users_file, PathBuf::from("users.db"));
    assert!(a.plaintext_on_loopback);
    assert!(!a.users_are_mailboxes);
    assert_eq!(a.failure_delay, Duration::from_millis(500));
    assert_eq!(a.max_failures, 1);
    assert_eq!(a.failure_window, Duration::from_secs(5400));
    assert_eq!(a.lockout, Duration::from_secs(3600));
    assert_eq!(a.max_concurrent_checks, 256);
    assert_eq!(a.check_queue_timeout, Duration::from_millis(250));
    let nets: Vec<String> = c.trusted_networks.iter().map(ToString::to_string).collect();
    assert_eq!(nets, ["::1/128", "::ffff:192.0.2.0/120", "0.0.0.0/0", "2001:db8::/32"]);
    assert_eq!(
        c.send_as.iter().collect::<Vec<_>>(),
        [
            (&"alice@example.org".to_owned(), &vec!["info@example.org".to_owned(), "@example.net".to_owned()]),
            (&"bob@example.org".to_owned(), &vec!["élodie@example.org".to_owned()]),
        ]
    );
    round_trip(&c);
}

#[test]
fn alias_target_only_a_user_gets_a_hint() {
    // Users are not known at load time; with users_are_mailboxes the error says what to do.
    let text = "[domains.\"example.org\"]\n[aliases]\n\"sales@example.org\" = [\"zoe@example.org\"]\n";
    bad(text, "aliases.\"sales@example.org\"", 3, "list a user that is an alias target");
    let e = Config::parse(&with_listener(&format!("[auth]\nusers_are_mailboxes = false\n{text}")), "x").unwrap_err();
    assert!(!e.message.contains("users_file"), "{e}");
}

// --- is_trusted --------------------------------------------------------------------------------

fn trusting(networks: &str) -> Config {
    parse_ok(&with_listener(&format!("trusted_networks = [{networks}]\n")))
}

#[test]
fn trusted_ipv4() {
    let c = trusting("\"192.0.2.0/24\", \"127.0.0.1\"");
    assert!(c.is_trusted(ip("192.0.2.0")));
    assert!(c.is_trusted(ip("192.0.2.255")));
    assert!(c.is_trusted(ip("127.0.0.1")));
    assert!(!c.is_trusted(ip("127.0.0.2")));
    assert!(!c.is_trusted(ip("192.0.3.1")));
    assert!(!c.is_trusted(ip("::1")));
}

#[test]
fn trusted_ipv6() {
    let c = trusting("\"2001:db8::/32\", \"::1\"");
    assert!(c.is_trusted(ip("2001:db8::1")));
    assert!(c.is_trusted(ip("2001:db8:ffff::5")));
    assert!(c.is_trusted(ip("::1")));
    assert!(!c.is_trusted(ip("2001:db9::1")));
    assert!(!c.is_trusted(ip("127.0.0.1")));
}

#[test]
fn trusted_ipv4_mapped() {
    let c = trusting("\"192.0.2.0/24\", \"127.0.0.1\"");
    assert!(c.is_trusted(ip("::ffff:192.0.2.5")));
    assert!(c.is_trusted(ip("::ffff:127.0.0.1")));
    assert!(!c.is_trusted(ip("::ffff:198.51.100.1")));
    // A network written in mapped form matches mapped addresses.
    let c = trusting("\"::ffff:198.51.100.0/120\"");
    assert!(c.is_trusted(ip("::ffff:198.51.100.9")));
    // 0.0.0.0/0 covers every IPv4 client, mapped or not, and no IPv6 client.
    let c = trusting("\"0.0.0.0/0\"");
    assert!(c.is_trusted(ip("::ffff:203.0.113.1")));
    assert!(c.is_trusted(ip("203.0.113.1")));
    assert!(!c.is_trusted(ip("2001:db8::1")));
}

#[test]
fn nothing_trusted_by_default() {
    let c = Config::embedded_default();
    assert!(!c.is_trusted(ip("127.0.0.1")));
    assert!(!c.is_trusted(ip("::1")));
}

// --- may_send_as -------------------------------------------------------------------------------

const SENDERS: &str = r#"
[domains."example.org"]
mailboxes = ["alice", "bob", "carol"]
catch_all = "carol@example.org"

[domains."example.net"]

[domains."any.example"]
any_mailbox = true

[aliases]
"postmaster@example.org" = ["alice@example.org"]
"abuse@example.org" = ["postmaster@example.org"]
"hostmaster@example.org" = ["abuse@example.org"]
"team@example.org" = ["alice@example.org", "bob@example.org", "ext@elsewhere.example"]
"lists@example.org" = ["bob+lists@example.org"]
"alice+vip@example.org" = ["carol@example.org"]
"fwd@example.org" = ["Dave@Elsewhere.Example"]

[send_as]
"alice@example.org" = ["info@example.org", "@example.net"]
"#;

fn senders() -> Config {
    parse_ok(&with_listener(SENDERS))
}

#[test]
fn send_as_null_sender() {
    let c = senders();
    assert!(c.may_send_as("alice@example.org", ""));
    assert!(c.may_send_as("nobody@elsewhere.example", ""));
}

#[test]
fn send_as_own_address() {
    let c = senders();
    assert!(c.may_send_as("alice@example.org", "alice@example.org"));
    assert!(c.may_send_as("Alice@Example.ORG", "ALICE@example.org."));
    // A user of another domain is still itself.
    assert!(c.may_send_as("dave@elsewhere.example", "Dave@Elsewhere.Example"));
}

#[test]
fn send_as_tag_variants() {
    let c = senders();
    assert!(c.may_send_as("alice@example.org", "alice+news@example.org"));
    assert!(c.may_send_as("alice@example.org", "Alice+News+x@Example.org"));
    assert!(c.may_send_as("dave@elsewhere.example", "dave+x@elsewhere.example"));
    assert!(!c.may_send_as("alice@example.org", "alice+news@any.example"));
    assert!(!c.may_send_as("alice@example.org", "alicex@example.org"));
    // An exact alias that happens to look like a tag belongs to whom it delivers to.
    assert!(!c.may_send_as("alice@example.org", "alice+vip@example.org"));
    assert!(c.may_send_as("carol@example.org", "alice+vip@example.org"));
}

#[test]
fn send_as_tag_variants_need_the_delimiter() {
    let mut c = senders();
    c.recipient_delimiter = None;
    assert!(!c.may_send_as("alice@example.org", "alice+news@example.org"));
    c.recipient_delimiter = Some('-');
    c.domains.get_mut("example.org").unwrap().mailboxes.insert("alice-jane".into());
    assert!(c.may_send_as("alice@example.org", "alice-x@example.org"));
    // A listed mailbox is an address of its own, not a tag.
    assert!(!c.may_send_as("alice@example.org", "alice-jane@example.org"));
}

#[test]
fn send_as_alias() {
    let c = senders();
    assert!(c.may_send_as("alice@example.org", "postmaster@example.org"));
    assert!(c.may_send_as("alice@example.org", "PostMaster@Example.org"));
    assert!(!c.may_send_as("bob@example.org", "postmaster@example.org"));
    // A tagged alias resolves like the alias.
    assert!(c.may_send_as("alice@example.org", "postmaster+dmarc@example.org"));
    // Every member of a list alias.
    assert!(c.may_send_as("alice@example.org", "team@example.org"));
    assert!(c.may_send_as("bob@example.org", "team@example.org"));
    assert!(!c.may_send_as("carol@example.org", "team@example.org"));
    // A target with a tag reaches the tag's user.
    assert!(c.may_send_as("bob@example.org", "lists@example.org"));
    // A remote target is a user too, compared case-insensitively.
    assert!(c.may_send_as("dave@elsewhere.example", "fwd@example.org"));
    assert!(c.may_send_as("ext@elsewhere.example", "team@example.org"));
}

#[test]
fn send_as_alias_chain() {
    let c = senders();
    // hostmaster -> abuse -> postmaster -> alice.
    assert!(c.may_send_as("alice@example.org", "abuse@example.org"));
    assert!(c.may_send_as("alice@example.org", "hostmaster@example.org"));
    assert!(!c.may_send_as("bob@example.org", "hostmaster@example.org"));
    // A user whose address is an alias on the way is reached too.
    assert!(c.may_send_as("postmaster@example.org", "hostmaster@example.org"));
    assert!(c.may_send_as("abuse@example.org", "hostmaster@example.org"));
    assert!(!c.may_send_as("hostmaster@example.org", "abuse@example.org"));
}

#[test]
fn send_as_entries() {
    let c = senders();
    // Exact.
    assert!(c.may_send_as("alice@example.org", "info@example.org"));
    assert!(c.may_send_as("alice@example.org", "INFO@Example.ORG"));
    assert!(!c.may_send_as("alice@example.org", "info+x@example.org"));
    assert!(!c.may_send_as("bob@example.org", "info@example.org"));
    // Whole domain.
    assert!(c.may_send_as("alice@example.org", "anyone@example.net"));
    assert!(c.may_send_as("Alice@example.org", "X.Y@Example.NET"));
    assert!(!c.may_send_as("alice@example.org", "anyone@sub.example.net"));
    assert!(!c.may_send_as("bob@example.org", "anyone@example.net"));
}

#[test]
fn send_as_refuses_other_users_addresses() {
    let c = senders();
    assert!(!c.may_send_as("alice@example.org", "bob@example.org"));
    assert!(!c.may_send_as("alice@example.org", "bob+x@example.org"));
    assert!(!c.may_send_as("bob@example.org", "alice@example.org"));
    // The catch-all's owner is not every sender of the domain.
    assert!(!c.may_send_as("carol@example.org", "unknown@example.org"));
    // any_mailbox makes every name a mailbox, each its own.
    assert!(!c.may_send_as("x@any.example", "y@any.example"));
    assert!(c.may_send_as("x@any.example", "x+tag@any.example"));
}

#[test]
fn send_as_refuses_other_domains() {
    let c = senders();
    assert!(!c.may_send_as("alice@example.org", "alice@elsewhere.example"));
    assert!(!c.may_send_as("alice@example.org", "alice@example.com"));
    assert!(!c.may_send_as("alice@example.org", "postmaster@any.example"));
    assert!(!c.may_send_as("bob@example.org", "postmaster@example.net"));
    assert!(!c.may_send_as("dave@elsewhere.example", "dave@example.org"));
}

#[test]
fn send_as_refuses_non_addresses() {
    let c = senders();
    assert!(!c.may_send_as("alice@example.org", "alice"));
    assert!(!c.may_send_as("alice@example.org", "@example.net"));
    assert!(!c.may_send_as("alice@example.org", "alice@"));
    assert!(!c.may_send_as("alice", "alice@example.org"));
    assert!(!c.may_send_as("", "alice@example.org"));
}

#[test]
fn send_as_alias_to_a_user_mailbox() {
    // Aliases to users that are not listed mailboxes cannot be loaded, but a Config built
    // otherwise still answers: the authenticated user counts as a mailbox.
    let mut c = senders();
    c.aliases.insert("sales@example.org".into(), vec!["zoe@example.org".into()]);
    assert!(c.may_send_as("zoe@example.org", "sales@example.org"));
    assert!(!c.may_send_as("alice@example.org", "sales@example.org"));
    assert!(c.may_send_as("zoe@example.org", "zoe+x@example.org"));
    c.auth.users_are_mailboxes = false;
    assert!(!c.may_send_as("zoe@example.org", "sales@example.org"));
    assert!(c.may_send_as("zoe@example.org", "zoe+x@example.org"));
}

// --- resolve_with ------------------------------------------------------------------------------

const USERS: &str = r#"
[domains."example.org"]
mailboxes = ["alice"]
catch_all = "alice@example.org"

[aliases]
"zoe@example.org" = ["alice@example.org"]
"mary@example.org" = ["alice@example.org"]
"#;

/// The user store of these tests, recording every question.
struct Store {
    users: Vec<&'static str>,
    asked: RefCell<Vec<String>>,
}

impl Store {
    fn new(users: &[&'static str]) -> Store {
        Store { users: users.to_vec(), asked: RefCell::new(Vec::new()) }
    }

    fn is_user(&self, address: &str) -> bool {
        self.asked.borrow_mut().push(address.to_owned());
        self.users.contains(&address)
    }

    fn resolve(&self, c: &Config, local: &str, domain: &str) -> Result<Vec<Target>, RcptError> {
        c.resolve_with(local, domain, &|a: &str| self.is_user(a))
    }
}

fn users() -> (Config, Store) {
    let store = Store::new(&[
        "zoe@example.org",
        "yann@example.org",
        "alice@example.org",
        "mary-jane@example.org",
        "a/b@example.org",
        "ann@elsewhere.example",
    ]);
    (parse_ok(&with_listener(USERS)), store)
}

#[test]
fn user_is_a_mailbox_before_the_catch_all() {
    let (c, s) = users();
    assert_eq!(s.resolve(&c, "yann", "example.org"), Ok(vec![mb("example.org", "yann")]));
    // resolve() knows no users: the catch-all takes it.
    assert_eq!(c.resolve("yann", "example.org"), Ok(vec![mb("example.org", "alice")]));
    assert_eq!(s.resolve(&c, "xavier", "example.org"), Ok(vec![mb("example.org", "alice")]));
}

#[test]
fn user_lookup_is_lowercase() {
    let (c, s) = users();
    assert_eq!(s.resolve(&c, "YANN", "Example.ORG."), Ok(vec![mb("example.org", "yann")]));
    assert_eq!(s.asked.borrow().as_slice(), ["yann@example.org"]);
}

#[test]
fn user_with_tag() {
    let (c, s) = users();
    assert_eq!(s.resolve(&c, "yann+news", "example.org"), Ok(vec![mb("example.org", "yann")]));
    // "yann+news" cannot be a mailbox name, so only the base is asked about.
    assert_eq!(s.asked.borrow().as_slice(), ["yann@example.org"]);
}

#[test]
fn exact_alias_and_listed_mailbox_come_before_users() {
    let (c, s) = users();
    // zoe is a user, but the alias zoe@ wins.
    assert_eq!(s.resolve(&c, "zoe", "example.org"), Ok(vec![mb("example.org", "alice")]));
    assert_eq!(s.resolve(&c, "alice", "example.org"), Ok(vec![mb("example.org", "alice")]));
    assert!(s.asked.borrow().is_empty(), "{:?}", s.asked.borrow());
}

#[test]
fn exact_user_comes_before_the_tag_base() {
    let (mut c, s) = users();
    c.recipient_delimiter = Some('-');
    // mary-jane is a user; mary is an alias: the exact address wins.
    assert_eq!(s.resolve(&c, "mary-jane", "example.org"), Ok(vec![mb("example.org", "mary-jane")]));
    assert_eq!(c.resolve("mary-jane", "example.org"), Ok(vec![mb("example.org", "alice")]));
}

#[test]
fn users_are_not_mailboxes_when_disabled() {
    let (mut c, s) = users();
    c.auth.users_are_mailboxes = false;
    assert_eq!(s.resolve(&c, "yann", "example.org"), Ok(vec![mb("example.org", "alice")]));
    assert!(s.asked.borrow().is_empty());
}

#[test]
fn user_with_invalid_mailbox_name_is_not_a_mailbox() {
    let (c, s) = users();
    assert_eq!(s.resolve(&c, "a/b", "example.org"), Ok(vec![mb("example.org", "alice")]));
    assert!(s.asked.borrow().is_empty());
}

#[test]
fn users_of_other_domains_are_not_local() {
    let (c, s) = users();
    assert_eq!(s.resolve(&c, "ann", "elsewhere.example"), Err(RcptError::NotLocal));
}

#[test]
fn alias_target_that_is_a_user() {
    let (mut c, s) = users();
    c.domains.get_mut("example.org").unwrap().catch_all = None;
    c.aliases.insert("sales@example.org".into(), vec!["yann@example.org".into()]);
    assert_eq!(s.resolve(&c, "sales", "example.org"), Ok(vec![mb("example.org", "yann")]));
    assert_eq!(c.resolve("sales", "example.org"), Err(RcptError::UnknownMailbox));
    assert_eq!(s.resolve(&c, "nobody", "example.org"), Err(RcptError::UnknownMailbox));
}

#[test]
fn auth_backend_dovecot() {
    use crate::{AuthBackend, Endpoint};
    let c = parse_ok(&with_listener("[auth]\nbackend = \"dovecot\"\n"));
    assert_eq!(c.auth.backend, AuthBackend::Dovecot(Endpoint::Unix("/run/dovecot/auth-client".into())));
    round_trip(&c);
    let c = parse_ok(&with_listener("[auth]\nbackend = \"dovecot\"\nsocket = \"inet:127.0.0.1:12345\"\n"));
    assert_eq!(c.auth.backend, AuthBackend::Dovecot(Endpoint::Inet("127.0.0.1:12345".into())));
    round_trip(&c);
    assert_eq!(parse_ok(&with_listener("")).auth.backend, AuthBackend::File);
}

#[test]
fn quotas_per_domain_and_mailbox() {
    let c = parse_ok(&with_listener(
        "[domains.\"example.org\"]\nmailboxes = [\"alice\", \"bob\"]\nquota = \"10M\"\nmailbox_quota = { Alice = 2048 }\n\
         [domains.\"example.net\"]\nany_mailbox = true\n",
    ));
    assert_eq!(c.quota_of("example.org", "alice"), Some(2048));
    assert_eq!(c.quota_of("example.org", "bob"), Some(10 << 20));
    assert_eq!(c.quota_of("example.net", "bob"), None);
    assert_eq!(c.quota_of("example.com", "bob"), None);
    round_trip(&c);
}

#[test]
fn delivery_method_lmtp() {
    use crate::{DeliveryMethod, Endpoint};
    let c = parse_ok(&with_listener("[delivery]\nmethod = \"lmtp\"\n"));
    assert_eq!(c.delivery.method, DeliveryMethod::Lmtp(Endpoint::Unix("/run/dovecot/lmtp".into())));
    round_trip(&c);
    let c = parse_ok(&with_listener("[delivery]\nmethod = \"lmtp\"\nlmtp = \"inet:127.0.0.1:24\"\n"));
    assert_eq!(c.delivery.method, DeliveryMethod::Lmtp(Endpoint::Inet("127.0.0.1:24".into())));
    round_trip(&c);
    assert_eq!(parse_ok(&with_listener("")).delivery.method, DeliveryMethod::Maildir);
}

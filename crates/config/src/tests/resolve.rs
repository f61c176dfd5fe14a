//! Recipient resolution: every path of `Config::resolve`.

use super::{parse_ok, with_listener};
use crate::{Config, RcptError, Target};

const ROUTING: &str = r#"
[domains."example.org"]
mailboxes = ["alice", "bob", "carol", "mary-jane"]

[domains."catch.example"]
mailboxes = ["inbox", "x"]
catch_all = "inbox@catch.example"

[domains."any.example"]
any_mailbox = true

[domains."anycatch.example"]
any_mailbox = true
catch_all = "misc@anycatch.example"

[aliases]
"postmaster@example.org" = ["alice@example.org"]
"team@example.org" = ["alice@example.org", "bob@example.org", "carol@elsewhere.example"]
"all@example.org" = ["team@example.org", "postmaster@example.org", "Bob@Example.org"]
"lists@example.org" = ["bob+lists@example.org"]
"ext@example.org" = ["Someone.Else@Elsewhere.Example"]
"alice+vip@example.org" = ["carol@example.org"]
"anyone@any.example" = ["newbie@any.example"]
"#;

fn config() -> Config {
    parse_ok(&with_listener(ROUTING))
}

fn mb(domain: &str, mailbox: &str) -> Target {
    Target::Mailbox { domain: domain.to_owned(), mailbox: mailbox.to_owned() }
}

fn remote(address: &str) -> Target {
    Target::Remote { address: address.to_owned() }
}

fn ok(c: &Config, local: &str, domain: &str) -> Vec<Target> {
    c.resolve(local, domain).unwrap_or_else(|e| panic!("{local:?}@{domain}: {e:?}"))
}

fn err(c: &Config, local: &str, domain: &str) -> RcptError {
    c.resolve(local, domain).expect_err(&format!("{local:?}@{domain} should be refused"))
}

#[test]
fn local_domains() {
    let c = config();
    assert!(c.is_local_domain("example.org"));
    assert!(c.is_local_domain("EXAMPLE.Org."));
    assert!(!c.is_local_domain("example.org.."));
    assert!(!c.is_local_domain("elsewhere.example"));
    assert!(!c.is_local_domain("[192.0.2.1]"));
}

#[test]
fn not_local() {
    let c = config();
    assert_eq!(err(&c, "alice", "elsewhere.example"), RcptError::NotLocal);
    assert_eq!(err(&c, "alice", "sub.example.org"), RcptError::NotLocal);
}

#[test]
fn mailbox() {
    let c = config();
    assert_eq!(ok(&c, "alice", "example.org"), [mb("example.org", "alice")]);
}

#[test]
fn case_insensitive() {
    let c = config();
    assert_eq!(ok(&c, "ALICE", "Example.ORG."), [mb("example.org", "alice")]);
    assert_eq!(ok(&c, "PostMaster", "example.org"), [mb("example.org", "alice")]);
}

#[test]
fn unknown_mailbox() {
    let c = config();
    assert_eq!(err(&c, "dave", "example.org"), RcptError::UnknownMailbox);
    // Hostile names are simply unknown where mailboxes are listed.
    assert_eq!(err(&c, "../alice", "example.org"), RcptError::UnknownMailbox);
    assert_eq!(err(&c, "", "example.org"), RcptError::UnknownMailbox);
}

#[test]
fn alias_to_mailbox() {
    let c = config();
    assert_eq!(ok(&c, "postmaster", "example.org"), [mb("example.org", "alice")]);
}

#[test]
fn alias_to_local_and_remote() {
    let c = config();
    assert_eq!(
        ok(&c, "team", "example.org"),
        [mb("example.org", "alice"), mb("example.org", "bob"), remote("carol@elsewhere.example"),]
    );
}

#[test]
fn alias_to_remote_keeps_local_part_case() {
    let c = config();
    assert_eq!(ok(&c, "ext", "example.org"), [remote("Someone.Else@elsewhere.example")]);
}

#[test]
fn alias_chain_is_expanded_and_deduplicated() {
    let c = config();
    // all -> team (alice, bob, carol@elsewhere) + postmaster (alice) + bob.
    assert_eq!(
        ok(&c, "all", "example.org"),
        [mb("example.org", "alice"), mb("example.org", "bob"), remote("carol@elsewhere.example"),]
    );
}

#[test]
fn plus_addressing_on_mailbox() {
    let c = config();
    assert_eq!(ok(&c, "bob+news", "example.org"), [mb("example.org", "bob")]);
    assert_eq!(ok(&c, "bob+a+b", "example.org"), [mb("example.org", "bob")]);
    assert_eq!(err(&c, "dave+news", "example.org"), RcptError::UnknownMailbox);
    // No user before the tag: not stripped.
    assert_eq!(err(&c, "+bob", "example.org"), RcptError::UnknownMailbox);
}

#[test]
fn plus_addressing_on_alias() {
    let c = config();
    assert_eq!(ok(&c, "team+offsite", "example.org").len(), 3);
    assert_eq!(ok(&c, "postmaster+dmarc", "example.org"), [mb("example.org", "alice")]);
}

#[test]
fn alias_target_with_tag() {
    let c = config();
    assert_eq!(ok(&c, "lists", "example.org"), [mb("example.org", "bob")]);
}

#[test]
fn exact_alias_wins_over_tag_stripping() {
    let c = config();
    assert_eq!(ok(&c, "alice+vip", "example.org"), [mb("example.org", "carol")]);
    assert_eq!(ok(&c, "alice+other", "example.org"), [mb("example.org", "alice")]);
}

#[test]
fn exact_mailbox_wins_over_tag_stripping() {
    let mut c = config();
    c.recipient_delimiter = Some('-');
    assert_eq!(ok(&c, "mary-jane", "example.org"), [mb("example.org", "mary-jane")]);
    assert_eq!(ok(&c, "alice-x", "example.org"), [mb("example.org", "alice")]);
}

#[test]
fn delimiter_disabled() {
    // Without tags the alias to bob+lists no longer resolves: drop it.
    let routing = ROUTING.replace("\"lists@example.org\" = [\"bob+lists@example.org\"]\n", "");
    let text = format!("recipient_delimiter = \"\"\n{}", with_listener(&routing));
    let c = parse_ok(&text);
    assert_eq!(c.recipient_delimiter, None);
    assert_eq!(err(&c, "bob+news", "example.org"), RcptError::UnknownMailbox);
}

#[test]
fn catch_all() {
    let c = config();
    assert_eq!(ok(&c, "x", "catch.example"), [mb("catch.example", "x")]);
    assert_eq!(ok(&c, "whoever", "catch.example"), [mb("catch.example", "inbox")]);
    // Tagged known mailboxes still reach the mailbox, not the catch-all.
    assert_eq!(ok(&c, "x+tag", "catch.example"), [mb("catch.example", "x")]);
    // A hostile local part cannot escape: it lands in the catch-all's own mailbox.
    assert_eq!(ok(&c, "../../etc", "catch.example"), [mb("catch.example", "inbox")]);
}

#[test]
fn any_mailbox() {
    let c = config();
    assert_eq!(ok(&c, "Newbie", "any.example"), [mb("any.example", "newbie")]);
    assert_eq!(ok(&c, "newbie+tag", "any.example"), [mb("any.example", "newbie")]);
    assert_eq!(ok(&c, "Élodie", "any.example"), [mb("any.example", "élodie")]);
    assert_eq!(ok(&c, "first.last", "any.example"), [mb("any.example", "first.last")]);
    let longest = "a".repeat(64);
    assert_eq!(ok(&c, &longest, "any.example"), [mb("any.example", &longest)]);
    // Aliases still come first.
    assert_eq!(ok(&c, "anyone", "any.example"), [mb("any.example", "newbie")]);
}

#[test]
fn any_mailbox_refuses_hostile_local_parts() {
    let c = config();
    let too_long = "a".repeat(65);
    for hostile in
        ["../x", "..", ".", "a/b", "a\\b", ".hidden", "a\0b", "a..b", "a b", "a\nb", "", &too_long, "a\u{7f}b", "x@y"]
    {
        assert_eq!(err(&c, hostile, "any.example"), RcptError::InvalidMailboxName, "{hostile:?}");
    }
    // The tag is stripped first, so the remaining name is what is checked.
    assert_eq!(err(&c, "../x+tag", "any.example"), RcptError::InvalidMailboxName);
}

#[test]
fn any_mailbox_with_catch_all_takes_invalid_names() {
    let c = config();
    assert_eq!(ok(&c, "fine", "anycatch.example"), [mb("anycatch.example", "fine")]);
    assert_eq!(ok(&c, "../x", "anycatch.example"), [mb("anycatch.example", "misc")]);
    assert_eq!(ok(&c, "a\0b", "anycatch.example"), [mb("anycatch.example", "misc")]);
}

// Loops and too-deep nesting are refused at load time; a Config altered afterwards still
// cannot make resolution run away.

#[test]
fn alias_loop_at_resolve_time() {
    let mut c = config();
    c.aliases.insert("a@example.org".into(), vec!["b@example.org".into()]);
    c.aliases.insert("b@example.org".into(), vec!["alice@example.org".into(), "a@example.org".into()]);
    assert_eq!(err(&c, "a", "example.org"), RcptError::AliasLoop);
    assert_eq!(err(&c, "b+tag", "example.org"), RcptError::AliasLoop);
}

#[test]
fn alias_self_loop_at_resolve_time() {
    let mut c = config();
    c.aliases.insert("bob@example.org".into(), vec!["bob@example.org".into()]);
    assert_eq!(err(&c, "bob", "example.org"), RcptError::AliasLoop);
}

#[test]
fn alias_nesting_limit() {
    let mut c = config();
    // a1 -> ... -> a10 -> alice is fine; one more level is not.
    for i in 1..=10 {
        c.aliases.insert(format!("a{i}@example.org"), vec![format!("a{}@example.org", i + 1)]);
    }
    c.aliases.insert("a11@example.org".into(), vec!["alice@example.org".into()]);
    assert_eq!(ok(&c, "a2", "example.org"), [mb("example.org", "alice")]);
    assert_eq!(err(&c, "a1", "example.org"), RcptError::AliasLoop);
}

#[test]
fn unknown_alias_target_at_resolve_time() {
    let mut c = config();
    c.aliases.insert("ghost@example.org".into(), vec!["nobody@example.org".into()]);
    assert_eq!(err(&c, "ghost", "example.org"), RcptError::UnknownMailbox);
}

#[test]
fn unsafe_mailbox_inserted_after_load_is_refused() {
    let mut c = config();
    c.domains.get_mut("example.org").unwrap().mailboxes.insert("../evil".into());
    assert_eq!(err(&c, "../evil", "example.org"), RcptError::UnknownMailbox);
}

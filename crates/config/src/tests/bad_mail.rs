//! One test per bad `[domains]` or `[aliases]` configuration: each names the key and the line
//! of the mistake.

use super::{DOMAIN, bad};

// --- domains and mailboxes -------------------------------------------------------------------

#[test]
fn domain_name_invalid() {
    bad("[domains.\"exa mple.org\"]\nany_mailbox = true\n", "domains.\"exa mple.org\"", 1, "not a valid domain name");
}

#[test]
fn domain_configured_twice() {
    let text = "[domains.\"example.org\"]\nany_mailbox = true\n[domains.\"Example.ORG\"]\nany_mailbox = true\n";
    // Keys are visited in sorted order: "Example.ORG" sorts first, so "example.org" repeats it.
    bad(text, "domains.\"example.org\"", 1, "configured twice");
}

#[test]
fn mailbox_path_traversal() {
    bad(
        "[domains.\"example.org\"]\nmailboxes = [\"alice\",\n  \"../etc\"]\n",
        "domains.\"example.org\".mailboxes",
        3,
        "not a valid mailbox name",
    );
}

#[test]
fn mailbox_with_slash() {
    bad(
        "[domains.\"example.org\"]\nmailboxes = [\"a/b\"]\n",
        "domains.\"example.org\".mailboxes",
        2,
        "not a valid mailbox name",
    );
}

#[test]
fn mailbox_hidden() {
    bad(
        "[domains.\"example.org\"]\nmailboxes = [\".hidden\"]\n",
        "domains.\"example.org\".mailboxes",
        2,
        "not a valid mailbox name",
    );
}

#[test]
fn mailbox_too_long() {
    let text = format!("[domains.\"example.org\"]\nmailboxes = [\"{}\"]\n", "a".repeat(65));
    bad(&text, "domains.\"example.org\".mailboxes", 2, "not a valid mailbox name");
}

#[test]
fn mailbox_listed_twice() {
    bad(
        "[domains.\"example.org\"]\nmailboxes = [\"alice\", \"Alice\"]\n",
        "domains.\"example.org\".mailboxes",
        2,
        "listed twice",
    );
}

#[test]
fn catch_all_not_an_address() {
    bad(&format!("{DOMAIN}catch_all = \"alice\"\n"), "domains.\"example.org\".catch_all", 3, "not a valid address");
}

#[test]
fn catch_all_in_other_domain() {
    bad(
        &format!("{DOMAIN}catch_all = \"alice@example.net\"\n"),
        "domains.\"example.org\".catch_all",
        3,
        "must be an address in example.org",
    );
}

#[test]
fn catch_all_not_a_mailbox() {
    bad(
        &format!("{DOMAIN}catch_all = \"carol@example.org\"\n"),
        "domains.\"example.org\".catch_all",
        3,
        "not a mailbox of example.org",
    );
}

#[test]
fn catch_all_invalid_name_under_any_mailbox() {
    let text = "[domains.\"example.org\"]\nany_mailbox = true\ncatch_all = \"a+b@example.org\"\n";
    bad(text, "domains.\"example.org\".catch_all", 3, "not a mailbox");
}

// --- aliases -------------------------------------------------------------------------------------

#[test]
fn alias_key_not_an_address() {
    bad(&format!("{DOMAIN}[aliases]\n\"team\" = [\"alice@example.org\"]\n"), "aliases.team", 4, "not a valid address");
}

#[test]
fn alias_key_not_local() {
    let text = format!("{DOMAIN}[aliases]\n\"team@example.net\" = [\"alice@example.org\"]\n");
    bad(&text, "aliases.\"team@example.net\"", 4, "not in a local domain");
}

#[test]
fn alias_defined_twice() {
    let text = format!(
        "{DOMAIN}[aliases]\n\"team@example.org\" = [\"alice@example.org\"]\n\"Team@example.org\" = [\"bob@example.org\"]\n"
    );
    // "Team@..." sorts first, so the lowercase one is the repeat.
    bad(&text, "aliases.\"team@example.org\"", 4, "defined twice");
}

#[test]
fn alias_without_targets() {
    bad(
        &format!("{DOMAIN}[aliases]\n\"team@example.org\" = []\n"),
        "aliases.\"team@example.org\"",
        4,
        "at least one target",
    );
}

#[test]
fn alias_target_not_an_address() {
    let text =
        format!("{DOMAIN}[aliases]\n\"team@example.org\" = [\"alice@example.org\",\n  \"bob at example.org\"]\n");
    bad(&text, "aliases.\"team@example.org\"", 5, "not a valid address");
}

#[test]
fn alias_target_unknown_mailbox() {
    let text = format!("{DOMAIN}[aliases]\n\"team@example.org\" = [\"alcie@example.org\"]\n");
    bad(&text, "aliases.\"team@example.org\"", 4, "alcie@example.org` is no alias or mailbox");
}

#[test]
fn alias_target_unknown_mailbox_is_not_caught_all() {
    let text = format!(
        "{DOMAIN}catch_all = \"alice@example.org\"\n[aliases]\n\"team@example.org\" = [\"alcie@example.org\"]\n"
    );
    bad(&text, "aliases.\"team@example.org\"", 5, "is no alias or mailbox");
}

#[test]
fn alias_target_invalid_mailbox_name_under_any_mailbox() {
    let text = "[domains.\"example.org\"]\nany_mailbox = true\n[aliases]\n\"x@example.org\" = [\"a/b@example.org\"]\n";
    bad(text, "aliases.\"x@example.org\"", 4, "not a valid mailbox name");
}

#[test]
fn alias_loop() {
    let text = format!(
        "{DOMAIN}[aliases]\n\"a@example.org\" = [\"b@example.org\"]\n\"b@example.org\" = [\"alice@example.org\", \"a@example.org\"]\n"
    );
    bad(&text, "aliases.\"a@example.org\"", 4, "alias loop: b@example.org → a@example.org → b@example.org");
}

#[test]
fn alias_names_itself() {
    let text = format!("{DOMAIN}[aliases]\n\"alice@example.org\" = [\"alice@example.org\"]\n");
    bad(&text, "aliases.\"alice@example.org\"", 4, "alias loop");
}

#[test]
fn alias_loop_through_tag() {
    let text = format!("{DOMAIN}[aliases]\n\"a@example.org\" = [\"a+again@example.org\"]\n");
    bad(&text, "aliases.\"a@example.org\"", 4, "alias loop");
}

#[test]
fn aliases_nested_too_deep() {
    // a0 -> a1 -> ... -> a11 -> alice: twelve levels of aliases.
    let mut text = format!("{DOMAIN}[aliases]\n");
    for i in 0..11 {
        text.push_str(&format!("\"a{i}@example.org\" = [\"a{}@example.org\"]\n", i + 1));
    }
    text.push_str("\"a11@example.org\" = [\"alice@example.org\"]\n");
    bad(&text, "aliases.\"a0@example.org\"", 4, "deeper than 10");
}

// --- quotas ------------------------------------------------------------------------------------

#[test]
fn domain_quota_zero() {
    bad(&format!("{DOMAIN}quota = 0\n"), "domains.\"example.org\".quota", 3, "greater than zero");
}

#[test]
fn domain_quota_not_a_size() {
    bad(&format!("{DOMAIN}quota = \"lots\"\n"), "domains.\"example.org\".quota", 3, "got \"lots\"");
}

#[test]
fn mailbox_quota_bad_name() {
    let text = format!("{DOMAIN}[domains.\"example.org\".mailbox_quota]\n\"a b\" = \"1M\"\n");
    bad(&text, "domains.\"example.org\".mailbox_quota.\"a b\"", 4, "not a valid mailbox name");
}

#[test]
fn mailbox_quota_bad_size() {
    let text = format!("{DOMAIN}mailbox_quota = {{ alice = \"1Q\" }}\n");
    bad(&text, "domains.\"example.org\".mailbox_quota.alice", 3, "got \"1Q\"");
}

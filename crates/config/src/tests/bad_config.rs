//! One test per bad configuration (syntax, types, top-level keys, listeners, limits,
//! timeouts, delivery): each names the key and the line of the mistake.

use super::{DOMAIN, bad, check, parse, with_listener};

// --- syntax, unknown keys, types -------------------------------------------------------------

#[test]
fn syntax_error() {
    check("hostname = \"a\"\ndata_dir = = 1\n", None, Some(2), "invalid");
}

#[test]
fn duplicate_key() {
    check(&with_listener("hostname = \"a\"\nhostname = \"b\"\n"), None, Some(2), "duplicate");
}

#[test]
fn unknown_top_level_key() {
    bad("hostname = \"a.example\"\nhostnme = \"x\"\n", "hostnme", 2, "unknown field `hostnme`");
}

#[test]
fn unknown_key_in_limits() {
    bad("[limits]\nmax_recipent = 5\n", "limits.max_recipent", 2, "unknown field");
}

#[test]
fn unknown_key_in_inline_table() {
    bad("timeouts = { command = \"1m\", idle = \"1m\" }\n", "timeouts.idle", 1, "unknown field `idle`");
}

#[test]
fn unknown_key_in_listener() {
    let text = "[[listen]]\naddress = \"127.0.0.1:25\"\nrole = \"mx\"\ntls = true\n";
    check(text, Some("listen[0].tls"), Some(4), "unknown field `tls`");
}

#[test]
fn unknown_key_in_domain() {
    bad(&format!("{DOMAIN}mailbox = [\"x\"]\n"), "domains.\"example.org\".mailbox", 3, "unknown field");
}

#[test]
fn hostname_wrong_type() {
    bad("hostname = 3\n", "hostname", 1, "expected a string");
}

#[test]
fn count_wrong_type() {
    bad("[limits]\nmax_recipients = \"many\"\n", "limits.max_recipients", 2, "invalid type");
}

#[test]
fn any_mailbox_wrong_type() {
    bad(
        "[domains.\"example.org\"]\nany_mailbox = \"yes\"\n",
        "domains.\"example.org\".any_mailbox",
        2,
        "expected a boolean",
    );
}

#[test]
fn mailboxes_element_wrong_type() {
    bad(
        "[domains.\"example.org\"]\nmailboxes = [\"a\", 3]\n",
        "domains.\"example.org\".mailboxes[1]",
        2,
        "invalid type",
    );
}

#[test]
fn domains_wrong_type() {
    bad("domains = 3\n", "domains", 1, "invalid type");
}

#[test]
fn alias_targets_not_a_list() {
    let text = format!("{DOMAIN}[aliases]\n\"x@example.org\" = \"alice@example.org\"\n");
    bad(&text, "aliases.\"x@example.org\"", 4, "invalid type");
}

// --- top-level values --------------------------------------------------------------------------

#[test]
fn hostname_not_a_domain() {
    bad("hostname = \"mail_server\"\n", "hostname", 1, "not a valid domain name");
}

#[test]
fn hostname_ip_address() {
    bad("hostname = \"192.0.2.1\"\n", "hostname", 1, "not a valid domain name");
}

#[test]
fn data_dir_empty() {
    bad("data_dir = \"\"\n", "data_dir", 1, "non-empty");
}

#[test]
fn delimiter_too_long() {
    bad("recipient_delimiter = \"+-\"\n", "recipient_delimiter", 1, "single character");
}

#[test]
fn delimiter_letter() {
    bad("recipient_delimiter = \"x\"\n", "recipient_delimiter", 1, "cannot separate");
}

#[test]
fn delimiter_at_sign() {
    bad("recipient_delimiter = \"@\"\n", "recipient_delimiter", 1, "cannot separate");
}

// --- listeners ---------------------------------------------------------------------------------

#[test]
fn no_listeners() {
    check("hostname = \"a.example\"\n", Some("listen"), None, "no listeners");
}

#[test]
fn listener_address_not_socket_address() {
    let text = "[[listen]]\naddress = \"localhost:25\"\nrole = \"mx\"\n";
    check(text, Some("listen[0].address"), Some(2), "not a socket address");
}

#[test]
fn listener_address_without_port() {
    let text = "[[listen]]\naddress = \"127.0.0.1\"\nrole = \"mx\"\n";
    check(text, Some("listen[0].address"), Some(2), "not a socket address");
}

#[test]
fn listener_without_role() {
    let text = "[[listen]]\naddress = \"127.0.0.1:25\"\n";
    check(text, Some("listen[0]"), Some(1), "missing field `role`");
}

#[test]
fn listener_unknown_role() {
    let text = "[[listen]]\naddress = \"127.0.0.1:25\"\nrole = \"relay\"\n";
    check(text, Some("listen[0].role"), Some(3), "unknown role");
}

#[test]
fn listener_unknown_role_lists_the_roles() {
    let text = "[[listen]]\naddress = \"127.0.0.1:25\"\nrole = \"Submission\"\n";
    check(
        text,
        Some("listen[0].role"),
        Some(3),
        "expected \"mx\", \"submission\", \"submissions\", \"pop3\", \"pop3s\", \"metrics\", \"http\" or \"https\"",
    );
}

#[test]
fn duplicate_listener_address() {
    // The listener appended by `bad` is listen[1] and repeats listen[0]'s address.
    bad(
        "[[listen]]\naddress = \"127.0.0.1:2525\"\nrole = \"mx\"\n",
        "listen[1].address",
        6,
        "duplicate listener address",
    );
}

/// The message authentication switches of a listener.
const CHECK_KEYS: [&str; 4] = ["verify", "dmarc_reject", "dmarc_quarantine", "spf_reject"];

#[test]
fn checks_on_a_submission_listener() {
    for role in ["submission", "submissions", "pop3", "pop3s"] {
        for name in CHECK_KEYS {
            // Off as well as on: the keys have no meaning there at all.
            for value in [true, false] {
                let text = format!("[[listen]]\naddress = \"127.0.0.1:587\"\nrole = \"{role}\"\n{name} = {value}\n");
                check(
                    &text,
                    Some(&format!("listen[0].{name}")),
                    Some(4),
                    "message authentication checks apply to mx listeners only; submitted mail is signed instead",
                );
            }
        }
    }
}

#[test]
fn checks_on_a_submission_listener_before_its_role() {
    // The second listener; the key comes before the role and is still found at its line.
    bad(
        "[[listen]]\naddress = \"127.0.0.1:587\"\nspf_reject = true\nrole = \"submissions\"\n",
        "listen[0].spf_reject",
        3,
        "apply to mx listeners only",
    );
    let text = "[[listen]]\naddress = \"127.0.0.1:25\"\nrole = \"mx\"\nverify = false\n\
                [[listen]]\naddress = \"127.0.0.1:587\"\nrole = \"submission\"\ndmarc_reject = true\n";
    check(text, Some("listen[1].dmarc_reject"), Some(8), "apply to mx listeners only");
}

#[test]
fn check_switch_wrong_type() {
    for name in CHECK_KEYS {
        let text = format!("[[listen]]\naddress = \"127.0.0.1:25\"\nrole = \"mx\"\n{name} = \"yes\"\n");
        check(&text, Some(&format!("listen[0].{name}")), Some(4), "expected a boolean");
    }
}

// --- limits, timeouts, delivery -------------------------------------------------------------

#[test]
fn size_unparseable() {
    bad("[limits]\nmax_message_size = \"35MB\"\n", "limits.max_message_size", 2, "expected a size");
}

#[test]
fn size_zero() {
    bad("[limits]\nmax_message_size = 0\n", "limits.max_message_size", 2, "greater than zero");
}

#[test]
fn size_negative() {
    bad("[limits]\nmax_message_size = -1\n", "limits.max_message_size", 2, "got -1");
}

#[test]
fn size_wrong_type() {
    bad("[limits]\nmax_message_size = 3.5\n", "limits.max_message_size", 2, "expected a size");
}

#[test]
fn max_recipients_zero() {
    bad("[limits]\nmax_recipients = 0\n", "limits.max_recipients", 2, "at least 1");
}

#[test]
fn max_errors_negative() {
    bad("[limits]\nmax_errors = -3\n", "limits.max_errors", 2, "at least 1, not -3");
}

#[test]
fn max_errors_too_large() {
    bad("[limits]\nmax_errors = 5000000000\n", "limits.max_errors", 2, "too large");
}

#[test]
fn max_connections_zero() {
    bad("[limits]\nmax_connections = 0\n", "limits.max_connections", 2, "at least 1");
}

#[test]
fn max_connections_per_ip_zero() {
    bad("[limits]\nmax_connections_per_ip = 0\n", "limits.max_connections_per_ip", 2, "at least 1");
}

#[test]
fn max_connections_per_network_zero() {
    bad("[limits]\nmax_connections_per_network = 0\n", "limits.max_connections_per_network", 2, "at least 1");
}

#[test]
fn data_min_rate_zero() {
    bad("[timeouts]\ndata_min_rate = 0\n", "timeouts.data_min_rate", 2, "greater than zero");
}

#[test]
fn data_min_rate_not_a_size() {
    bad("[timeouts]\ndata_min_rate = \"fast\"\n", "timeouts.data_min_rate", 2, "size");
}

#[test]
fn write_timeout_zero() {
    bad("[timeouts]\nwrite = \"0s\"\n", "timeouts.write", 2, "greater than zero");
}

#[test]
fn shutdown_grace_unparseable() {
    bad("\n[timeouts]\nshutdown_grace = \"soon\"\n", "timeouts.shutdown_grace", 3, "expected a duration");
}

#[test]
fn command_timeout_unparseable() {
    bad("[timeouts]\ncommand = \"five minutes\"\n", "timeouts.command", 2, "expected a duration");
}

#[test]
fn data_timeout_zero() {
    bad("[timeouts]\ndata = \"0s\"\n", "timeouts.data", 2, "greater than zero");
}

#[test]
fn data_timeout_zero_seconds_integer() {
    bad("[timeouts]\ndata = 0\n", "timeouts.data", 2, "greater than zero");
}

#[test]
fn retry_schedule_empty() {
    bad("[delivery]\nretry_schedule = []\n", "delivery.retry_schedule", 2, "at least one");
}

#[test]
fn retry_schedule_bad_element() {
    bad(
        "[delivery]\nretry_schedule = [\n  \"1m\",\n  \"soon\",\n]\n",
        "delivery.retry_schedule[1]",
        4,
        "expected a duration",
    );
}

#[test]
fn retry_schedule_zero_element() {
    bad("[delivery]\nretry_schedule = [\"1m\", 0]\n", "delivery.retry_schedule[1]", 2, "greater than zero");
}

#[test]
fn max_age_zero() {
    bad("[delivery]\nmax_age = \"0d\"\n", "delivery.max_age", 2, "greater than zero");
}

#[test]
fn local_concurrency_zero() {
    bad("[delivery]\nlocal_concurrency = 0\n", "delivery.local_concurrency", 2, "at least 1");
}

#[test]
fn spool_slots_out_of_range() {
    bad("[delivery]\nspool_slots = 257\n", "delivery.spool_slots", 2, "between 0 and 256, not 257");
    bad("\n[delivery]\nspool_slots = -1\n", "delivery.spool_slots", 3, "between 0 and 256, not -1");
}

// --- files ---------------------------------------------------------------------------------------

#[test]
fn unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.toml");
    let e = crate::Config::from_file(&path).unwrap_err();
    assert_eq!(e.file, path.display().to_string());
    assert_eq!((e.line, e.key.as_deref()), (None, None));
    assert!(e.message.contains("cannot read"), "{e}");
    assert!(e.to_string().starts_with(&format!("{}: cannot read", path.display())));
}

#[test]
fn display_names_file_line_and_key() {
    let e = parse(&with_listener("[limits]\nmax_errors = 0\n")).unwrap_err();
    assert_eq!(e.to_string(), "test.toml: line 2: key `limits.max_errors`: must be at least 1, not 0");
}

// --- [log] -----------------------------------------------------------------------------------

#[test]
fn log_format_unknown() {
    bad("[log]\nformat = \"xml\"\n", "log.format", 2, "unknown value \"xml\" (expected \"text\", \"json\")");
}

#[test]
fn log_timestamps_unknown() {
    bad(
        "[log]\nformat = \"json\"\ntimestamps = \"yes\"\n",
        "log.timestamps",
        3,
        "expected \"auto\", \"always\", \"never\"",
    );
}

#[test]
fn log_unknown_key() {
    bad("[log]\nlevel = \"debug\"\n", "log.level", 2, "unknown field `level`");
}

#[test]
fn log_keys_read() {
    let c = parse(&with_listener("[log]\nformat = \"json\"\ntimestamps = \"never\"\n")).unwrap();
    assert_eq!(c.log, crate::Log { format: crate::LogFormat::Json, timestamps: crate::Timestamps::Never });
    let d = parse(&with_listener("")).unwrap();
    assert_eq!(d.log, crate::Log { format: crate::LogFormat::Text, timestamps: crate::Timestamps::Auto });
    let again = parse(&c.to_toml()).unwrap();
    assert_eq!(again.log, c.log);
}

// --- [history] -------------------------------------------------------------------------------

#[test]
fn history_days_zero() {
    bad("[history]\ndays = 0\n", "history.days", 2, "at least 1");
}

#[test]
fn history_enabled_not_a_bool() {
    check(&with_listener("[history]\nenabled = \"yes\"\n"), Some("history.enabled"), Some(2), "invalid type");
}

#[test]
fn history_unknown_key() {
    bad("[history]\nkeep = 3\n", "history.keep", 2, "unknown field `keep`");
}

#[test]
fn history_keys_read() {
    let c = parse(&with_listener("[history]\nenabled = false\ndays = 30\n")).unwrap();
    assert_eq!(c.history, crate::History { enabled: false, days: 30 });
    assert_eq!(parse(&with_listener("")).unwrap().history, crate::History { enabled: true, days: 7 });
    assert_eq!(parse(&c.to_toml()).unwrap().history, c.history);
}

#[test]
fn metrics_listener_takes_no_message_authentication_keys() {
    let text = "[[listen]]\naddress = \"127.0.0.1:9425\"\nrole = \"metrics\"\nverify = false\n";
    check(text, Some("listen[0].verify"), Some(4), "apply to mx listeners only");
}

// --- [delivery] method -------------------------------------------------------------------------

#[test]
fn delivery_method_unknown() {
    bad("[delivery]\nmethod = \"mbox\"\n", "delivery.method", 2, "unknown method \"mbox\"");
}

#[test]
fn delivery_lmtp_without_method() {
    bad("[delivery]\nlmtp = \"inet:127.0.0.1:24\"\n", "delivery.lmtp", 2, "only used with delivery.method");
}

#[test]
fn delivery_lmtp_bad_socket() {
    bad("[delivery]\nmethod = \"lmtp\"\nlmtp = \"localhost:24\"\n", "delivery.lmtp", 3, "expected unix:/PATH");
}

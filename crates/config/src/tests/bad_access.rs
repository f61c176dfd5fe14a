//! One test per bad `[tls]`, `[auth]`, `trusted_networks` or `[send_as]` configuration: each
//! names the key and the line of the mistake.

use super::bad;

// --- [tls] -----------------------------------------------------------------------------------

#[test]
fn tls_cert_without_key() {
    bad("[tls]\ncheck_interval = \"1m\"\ncert = \"/etc/c.pem\"\n", "tls.cert", 3, "given without tls.key");
}

#[test]
fn tls_key_without_cert() {
    bad("[tls]\nkey = \"/etc/k.pem\"\n", "tls.key", 2, "given without tls.cert");
}

#[test]
fn tls_cert_empty() {
    bad("[tls]\ncert = \"\"\nkey = \"/etc/k.pem\"\n", "tls.cert", 2, "non-empty path");
}

#[test]
fn tls_key_with_nul() {
    bad("[tls]\ncert = \"/etc/c.pem\"\nkey = \"/etc/k\\u0000.pem\"\n", "tls.key", 3, "without NUL");
}

#[test]
fn tls_cert_wrong_type() {
    bad("[tls]\ncert = true\nkey = \"k.pem\"\n", "tls.cert", 2, "invalid type");
}

#[test]
fn tls_check_interval_zero() {
    bad("[tls]\ncheck_interval = 0\n", "tls.check_interval", 2, "greater than zero");
}

#[test]
fn tls_check_interval_unparseable() {
    bad("[tls]\ncheck_interval = \"often\"\n", "tls.check_interval", 2, "expected a duration");
}

#[test]
fn tls_unknown_key() {
    bad("[tls]\ncertificate = \"c.pem\"\n", "tls.certificate", 2, "unknown field `certificate`");
}

#[test]
fn tls_wrong_type() {
    bad("tls = true\n", "tls", 1, "invalid type");
}

// --- [auth] ----------------------------------------------------------------------------------

#[test]
fn auth_users_file_empty() {
    bad("[auth]\nusers_file = \"\"\n", "auth.users_file", 2, "non-empty path");
}

#[test]
fn auth_users_file_wrong_type() {
    bad("[auth]\nusers_file = [\"a\"]\n", "auth.users_file", 2, "invalid type");
}

#[test]
fn auth_plaintext_on_loopback_wrong_type() {
    bad("[auth]\nplaintext_on_loopback = \"yes\"\n", "auth.plaintext_on_loopback", 2, "expected a boolean");
}

#[test]
fn auth_users_are_mailboxes_wrong_type() {
    bad("[auth]\nusers_are_mailboxes = 1\n", "auth.users_are_mailboxes", 2, "expected a boolean");
}

#[test]
fn auth_failure_delay_unparseable() {
    bad("[auth]\nfailure_delay = \"a bit\"\n", "auth.failure_delay", 2, "expected a duration");
}

#[test]
fn auth_failure_delay_zero() {
    bad("[auth]\nfailure_delay = \"0s\"\n", "auth.failure_delay", 2, "greater than zero");
}

#[test]
fn auth_max_failures_zero() {
    bad("[auth]\nmax_failures = 0\n", "auth.max_failures", 2, "at least 1, not 0");
}

#[test]
fn auth_max_failures_negative() {
    bad("[auth]\nmax_failures = -5\n", "auth.max_failures", 2, "at least 1, not -5");
}

#[test]
fn auth_max_failures_too_large() {
    bad("[auth]\nmax_failures = 5000000000\n", "auth.max_failures", 2, "too large");
}

#[test]
fn auth_max_failures_wrong_type() {
    bad("[auth]\nmax_failures = \"5\"\n", "auth.max_failures", 2, "invalid type");
}

#[test]
fn auth_failure_window_zero() {
    bad("[auth]\nfailure_window = 0\n", "auth.failure_window", 2, "greater than zero");
}

#[test]
fn auth_lockout_wrong_type() {
    bad("[auth]\nlockout = 1.5\n", "auth.lockout", 2, "expected a duration");
}

#[test]
fn auth_max_concurrent_checks_zero() {
    bad("[auth]\nmax_concurrent_checks = 0\n", "auth.max_concurrent_checks", 2, "at least 1, not 0");
}

#[test]
fn auth_max_concurrent_checks_negative() {
    bad("[auth]\nmax_concurrent_checks = -4\n", "auth.max_concurrent_checks", 2, "at least 1, not -4");
}

#[test]
fn auth_max_concurrent_checks_absurd() {
    bad("[auth]\n\nmax_concurrent_checks = 100000\n", "auth.max_concurrent_checks", 3, "at most 256");
}

#[test]
fn auth_max_concurrent_checks_wrong_type() {
    bad("[auth]\nmax_concurrent_checks = \"4\"\n", "auth.max_concurrent_checks", 2, "invalid type");
}

#[test]
fn auth_check_queue_timeout_zero() {
    bad("[auth]\ncheck_queue_timeout = \"0s\"\n", "auth.check_queue_timeout", 2, "greater than zero");
}

#[test]
fn auth_check_queue_timeout_absurd() {
    bad("[auth]\ncheck_queue_timeout = \"2h\"\n", "auth.check_queue_timeout", 2, "at most 60s, not 2h");
}

#[test]
fn auth_check_queue_timeout_unparseable() {
    bad("[auth]\ncheck_queue_timeout = \"soon\"\n", "auth.check_queue_timeout", 2, "expected a duration");
}

#[test]
fn auth_unknown_key() {
    bad("[auth]\nmax_failures = 3\nmax_failure = 3\n", "auth.max_failure", 3, "unknown field `max_failure`");
}

// --- trusted_networks ------------------------------------------------------------------------

#[test]
fn trusted_network_invalid() {
    bad(
        "trusted_networks = [\n  \"192.0.2.0/24\",\n  \"192.0.2.300\",\n]\n",
        "trusted_networks[1]",
        3,
        "\"192.0.2.300\": expected an IP network",
    );
}

#[test]
fn trusted_network_hostname() {
    bad("trusted_networks = [\"localhost\"]\n", "trusted_networks[0]", 1, "expected an IP network");
}

#[test]
fn trusted_network_prefix_too_long() {
    bad("trusted_networks = [\"2001:db8::/129\"]\n", "trusted_networks[0]", 1, "expected an IP network");
}

#[test]
fn trusted_network_host_bits_set() {
    bad(
        "trusted_networks = [\"10.0.0.0/8\", \"192.0.2.7/24\"]\n",
        "trusted_networks[1]",
        1,
        "write the network as \"192.0.2.0/24\"",
    );
}

#[test]
fn trusted_network_twice() {
    bad(
        "trusted_networks = [\"127.0.0.1\",\n\"::1\",\n\"127.0.0.1/32\"]\n",
        "trusted_networks[2]",
        3,
        "listed twice (already trusted_networks[0])",
    );
}

#[test]
fn trusted_networks_not_a_list() {
    bad("trusted_networks = \"192.0.2.0/24\"\n", "trusted_networks", 1, "invalid type");
}

#[test]
fn trusted_networks_element_wrong_type() {
    bad("trusted_networks = [\"192.0.2.0/24\", 10]\n", "trusted_networks[1]", 1, "invalid type");
}

// --- [send_as] -------------------------------------------------------------------------------

#[test]
fn send_as_user_not_an_address() {
    bad("[send_as]\nalice = [\"info@example.org\"]\n", "send_as.alice", 2, "not a valid user address");
}

#[test]
fn send_as_user_twice() {
    // Keys are visited in sorted order: "Alice@..." sorts first, so "alice@..." repeats it.
    bad(
        "[send_as]\n\"alice@example.org\" = [\"a@example.org\"]\n\"Alice@Example.org\" = [\"b@example.org\"]\n",
        "send_as.\"alice@example.org\"",
        2,
        "listed twice",
    );
}

#[test]
fn send_as_empty_list() {
    bad("[send_as]\n\"alice@example.org\" = []\n", "send_as.\"alice@example.org\"", 2, "at least one");
}

#[test]
fn send_as_value_not_an_address() {
    bad(
        "[send_as]\n\"alice@example.org\" = [\n  \"info@example.org\",\n  \"info\",\n]\n",
        "send_as.\"alice@example.org\"[1]",
        4,
        "neither an address nor @domain",
    );
}

#[test]
fn send_as_value_bad_domain() {
    bad(
        "[send_as]\n\"alice@example.org\" = [\"@exa mple.net\"]\n",
        "send_as.\"alice@example.org\"[0]",
        2,
        "neither an address nor @domain",
    );
}

#[test]
fn send_as_value_bare_at() {
    bad(
        "[send_as]\n\"alice@example.org\" = [\"@\"]\n",
        "send_as.\"alice@example.org\"[0]",
        2,
        "neither an address nor @domain",
    );
}

#[test]
fn send_as_value_twice() {
    bad(
        "[send_as]\n\"alice@example.org\" = [\"@example.net\", \"@Example.NET\"]\n",
        "send_as.\"alice@example.org\"[1]",
        2,
        "@example.net is listed twice",
    );
}

#[test]
fn send_as_not_a_list() {
    bad(
        "[send_as]\n\"alice@example.org\" = \"info@example.org\"\n",
        "send_as.\"alice@example.org\"",
        2,
        "invalid type",
    );
}

#[test]
fn send_as_element_wrong_type() {
    bad(
        "[send_as]\n\"alice@example.org\" = [\"info@example.org\", 3]\n",
        "send_as.\"alice@example.org\"[1]",
        2,
        "invalid type",
    );
}

#[test]
fn send_as_wrong_type() {
    bad("send_as = [\"a@b.org\"]\n", "send_as", 1, "invalid type");
}

// --- [auth] backend ----------------------------------------------------------------------------

#[test]
fn auth_backend_unknown() {
    bad("[auth]\nbackend = \"ldap\"\n", "auth.backend", 2, "unknown backend \"ldap\"");
}

#[test]
fn auth_socket_without_dovecot() {
    bad("[auth]\nsocket = \"/run/dovecot/auth-client\"\n", "auth.socket", 2, "only used with auth.backend");
}

#[test]
fn auth_socket_relative() {
    bad("[auth]\nbackend = \"dovecot\"\nsocket = \"run/auth\"\n", "auth.socket", 3, "expected unix:/PATH");
}

#[test]
fn auth_socket_inet_without_port() {
    bad("[auth]\nbackend = \"dovecot\"\nsocket = \"inet:127.0.0.1\"\n", "auth.socket", 3, "inet:HOST:PORT");
}

//! One test per bad `[outbound]` or `delivery.delay_notice` configuration: each names the key
//! and the line of the mistake.

use super::{DOMAIN, bad};

// --- delivery.delay_notice -------------------------------------------------------------------

#[test]
fn delay_notice_unparseable() {
    bad("[delivery]\ndelay_notice = \"never\"\n", "delivery.delay_notice", 2, "or \"off\"");
}

#[test]
fn delay_notice_negative() {
    bad("[delivery]\ndelay_notice = -1\n", "delivery.delay_notice", 2, "expected a duration");
}

#[test]
fn delay_notice_wrong_type() {
    bad("[delivery]\ndelay_notice = false\n", "delivery.delay_notice", 2, "expected a duration");
}

// --- [outbound] ------------------------------------------------------------------------------

#[test]
fn outbound_unknown_key() {
    bad("[outbound]\nsmtp_prot = 25\n", "outbound.smtp_prot", 2, "unknown field `smtp_prot`");
}

#[test]
fn outbound_wrong_type() {
    bad("outbound = \"mx\"\n", "outbound", 1, "invalid type");
}

#[test]
fn helo_name_invalid() {
    bad("[outbound]\nhelo_name = \"mail_1.example\"\n", "outbound.helo_name", 2, "neither a valid domain");
}

#[test]
fn helo_name_bare_ip() {
    bad("[outbound]\nhelo_name = \"192.0.2.1\"\n", "outbound.helo_name", 2, "address literal");
}

#[test]
fn helo_name_ipv6_literal_without_tag() {
    bad("[outbound]\nhelo_name = \"[2001:db8::1]\"\n", "outbound.helo_name", 2, "[IPv6:2001:db8::1]");
}

#[test]
fn nameserver_by_name() {
    bad(
        "[outbound]\nnameservers = [\"127.0.0.1\",\n  \"ns.example.org\"]\n",
        "outbound.nameservers[1]",
        3,
        "cannot be given by name",
    );
}

#[test]
fn nameserver_port_zero() {
    bad("[outbound]\nnameservers = [\"127.0.0.1:0\"]\n", "outbound.nameservers[0]", 2, "port 0");
}

#[test]
fn nameserver_twice() {
    bad("[outbound]\nnameservers = [\"::1\", \"[::1]:53\"]\n", "outbound.nameservers[1]", 2, "listed twice");
}

#[test]
fn nameservers_not_a_list() {
    bad("[outbound]\nnameservers = \"127.0.0.1\"\n", "outbound.nameservers", 2, "invalid type");
}

#[test]
fn smtp_port_zero() {
    bad("[outbound]\nsmtp_port = 0\n", "outbound.smtp_port", 2, "from 1 to 65535");
}

#[test]
fn smtp_port_too_large() {
    bad("[outbound]\nsmtp_port = 65536\n", "outbound.smtp_port", 2, "from 1 to 65535");
}

#[test]
fn tls_unknown() {
    bad("[outbound]\ntls = \"always\"\n", "outbound.tls", 2, "unknown TLS mode \"always\"");
}

#[test]
fn tls_ca_file_empty() {
    bad("[outbound]\ntls_ca_file = \"\"\n", "outbound.tls_ca_file", 2, "non-empty path");
}

#[test]
fn ip_preference_unknown() {
    bad("[outbound]\nip_preference = \"ipv6\"\n", "outbound.ip_preference", 2, "unknown IP preference");
}

#[test]
fn concurrency_zero() {
    bad("[outbound]\nconcurrency = 0\n", "outbound.concurrency", 2, "at least 1");
}

#[test]
fn per_destination_negative() {
    bad("[outbound]\nper_destination = -3\n", "outbound.per_destination", 2, "at least 1");
}

#[test]
fn connect_timeout_zero() {
    bad("[outbound]\nconnect_timeout = \"0s\"\n", "outbound.connect_timeout", 2, "greater than zero");
}

#[test]
fn idle_timeout_unparseable() {
    bad("[outbound]\nidle_timeout = \"short\"\n", "outbound.idle_timeout", 2, "expected a duration");
}

// --- [outbound.relay_host] -------------------------------------------------------------------

#[test]
fn relay_host_without_host() {
    bad("[outbound.relay_host]\ntls = \"require\"\n", "outbound.relay_host", 1, "missing field `host`");
}

#[test]
fn relay_host_unknown_key() {
    bad(
        "[outbound.relay_host]\nhost = \"::1\"\npassword = \"x\"\n",
        "outbound.relay_host.password",
        3,
        "unknown field",
    );
}

#[test]
fn relay_host_bad_host() {
    bad("[outbound.relay_host]\nhost = \"smtp provider\"\n", "outbound.relay_host.host", 2, "expected a host name");
}

#[test]
fn relay_host_port_zero() {
    bad("[outbound.relay_host]\nhost = \"relay.example:0\"\n", "outbound.relay_host.host", 2, "port 0");
}

#[test]
fn relay_host_tls_unknown() {
    bad(
        "[outbound.relay_host]\nhost = \"::1\"\ntls = \"starttls\"\n",
        "outbound.relay_host.tls",
        3,
        "unknown TLS mode",
    );
}

#[test]
fn relay_host_username_without_password_file() {
    bad(
        "[outbound.relay_host]\nhost = \"::1\"\nusername = \"me\"\n",
        "outbound.relay_host.username",
        3,
        "without outbound.relay_host.password_file",
    );
}

#[test]
fn relay_host_password_file_without_username() {
    bad(
        "[outbound.relay_host]\nhost = \"::1\"\npassword_file = \"/etc/pw\"\n",
        "outbound.relay_host.password_file",
        3,
        "without outbound.relay_host.username",
    );
}

#[test]
fn relay_host_username_empty() {
    bad(
        "[outbound.relay_host]\nhost = \"::1\"\nusername = \"\"\npassword_file = \"pw\"\n",
        "outbound.relay_host.username",
        3,
        "non-empty user name",
    );
}

#[test]
fn relay_host_username_with_nul() {
    bad(
        "[outbound.relay_host]\nhost = \"::1\"\nusername = \"a\\u0000b\"\npassword_file = \"pw\"\n",
        "outbound.relay_host.username",
        3,
        "control characters",
    );
}

#[test]
fn relay_host_password_file_empty() {
    bad(
        "[outbound.relay_host]\nhost = \"::1\"\nusername = \"me\"\npassword_file = \"\"\n",
        "outbound.relay_host.password_file",
        4,
        "non-empty path",
    );
}

#[test]
fn relay_host_implicit_tls_without_tls() {
    bad(
        "[outbound.relay_host]\nhost = \"::1\"\ntls = \"none\"\nimplicit_tls = true\n",
        "outbound.relay_host.implicit_tls",
        4,
        "cannot go with tls = \"none\"",
    );
}

#[test]
fn relay_host_implicit_tls_wrong_type() {
    bad(
        "[outbound.relay_host]\nhost = \"::1\"\nimplicit_tls = \"yes\"\n",
        "outbound.relay_host.implicit_tls",
        3,
        "expected a boolean",
    );
}

// --- [outbound.routes] -----------------------------------------------------------------------

#[test]
fn route_key_not_a_domain() {
    bad(
        "[outbound.routes]\n\"exa mple.test\" = \"::1\"\n",
        "outbound.routes.\"exa mple.test\"",
        2,
        "not a valid domain",
    );
}

#[test]
fn route_key_ip_address() {
    bad(
        "[outbound.routes.\"192.0.2.1\"]\nhosts = [\"::1\"]\n",
        "outbound.routes.\"192.0.2.1\"",
        1,
        "not a valid domain",
    );
}

#[test]
fn route_for_local_domain() {
    let text = format!("{DOMAIN}[outbound.routes]\n\"Example.ORG.\" = \"127.0.0.1:2626\"\n");
    bad(&text, "outbound.routes.\"Example.ORG.\"", 4, "is a local domain");
}

#[test]
fn route_twice() {
    let text = "[outbound.routes]\n\"a.test\" = \"::1\"\n\"A.test\" = \"127.0.0.1\"\n";
    // Keys are visited in sorted order: "A.test" sorts first, so "a.test" repeats it.
    bad(text, "outbound.routes.\"a.test\"", 2, "two routes");
}

#[test]
fn route_short_form_bad_host() {
    bad("[outbound.routes]\n\"a.test\" = \"127.0.0.1:x\"\n", "outbound.routes.\"a.test\"", 2, "not a port");
}

#[test]
fn route_short_form_port_zero() {
    bad("[outbound.routes]\n\"a.test\" = \"host.a.test:0\"\n", "outbound.routes.\"a.test\"", 2, "port 0");
}

#[test]
fn route_list_bad_host() {
    bad(
        "[outbound.routes]\n\"a.test\" = [\"127.0.0.1\", \"[::1\"]\n",
        "outbound.routes.\"a.test\"[1]",
        2,
        "expected a host name",
    );
}

#[test]
fn route_list_empty() {
    bad("[outbound.routes]\n\"a.test\" = []\n", "outbound.routes.\"a.test\"", 2, "at least one host");
}

#[test]
fn route_list_wrong_element_type() {
    bad("[outbound.routes]\n\"a.test\" = [\"::1\", 25]\n", "outbound.routes.\"a.test\"[1]", 2, "invalid type");
}

#[test]
fn route_wrong_type() {
    bad("[outbound.routes]\n\"a.test\" = 25\n", "outbound.routes.\"a.test\"", 2, "a host, a list of hosts, or a table");
}

#[test]
fn route_table_bad_host() {
    bad(
        "[outbound.routes.\"a.test\"]\nhosts = [\n  \"127.0.0.1:2626\",\n  \"backup_1.a.test\",\n]\n",
        "outbound.routes.\"a.test\".hosts[1]",
        4,
        "expected a host name",
    );
}

#[test]
fn route_table_host_twice() {
    bad(
        "[outbound.routes.\"a.test\"]\nhosts = [\"Mx.A.test\", \"mx.a.test.\"]\n",
        "outbound.routes.\"a.test\".hosts[1]",
        2,
        "listed twice",
    );
}

#[test]
fn route_table_empty_hosts() {
    bad("[outbound.routes.\"a.test\"]\nhosts = []\n", "outbound.routes.\"a.test\".hosts", 2, "at least one host");
}

#[test]
fn route_table_without_hosts() {
    bad("[outbound.routes.\"a.test\"]\ntls = \"none\"\n", "outbound.routes.\"a.test\"", 1, "missing field `hosts`");
}

#[test]
fn route_table_tls_unknown() {
    bad(
        "[outbound.routes.\"a.test\"]\nhosts = [\"::1\"]\ntls = \"yes\"\n",
        "outbound.routes.\"a.test\".tls",
        3,
        "unknown TLS mode",
    );
}

#[test]
fn route_table_unknown_key() {
    bad(
        "[outbound.routes.\"a.test\"]\nhosts = [\"::1\"]\nport = 25\n",
        "outbound.routes.\"a.test\".port",
        3,
        "unknown field `port`",
    );
}

#[test]
fn route_inline_table_unknown_key() {
    bad(
        "[outbound.routes]\n\"a.test\" = { hosts = [\"::1\"], mx = true }\n",
        "outbound.routes.\"a.test\".mx",
        2,
        "unknown field `mx`",
    );
}

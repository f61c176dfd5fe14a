//! [`Config::to_toml`](crate::Config::to_toml): the effective configuration as TOML.

use crate::locate::{key, quote};
use crate::units::{format_duration, format_size};
use crate::{Config, Outbound, Role};

/// Lines of TOML being written.
#[derive(Default)]
struct Out(String);

impl Out {
    fn line(&mut self, line: impl AsRef<str>) {
        self.0.push_str(line.as_ref());
        self.0.push('\n');
    }

    fn kv(&mut self, k: &str, value: impl AsRef<str>) {
        self.line(format!("{} = {}", key(k), value.as_ref()));
    }

    fn table(&mut self, header: &str) {
        self.0.push('\n');
        self.line(header);
    }
}

fn strings<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let quoted: Vec<String> = items.into_iter().map(|s| quote(s.as_ref())).collect();
    format!("[{}]", quoted.join(", "))
}

/// The source name made safe for a one-line comment.
fn comment(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

pub(crate) fn to_toml(c: &Config) -> String {
    let mut out = Out::default();
    out.line(format!("# dakiya: effective configuration from {}", comment(&c.source)));
    out.line("# Every default is filled in; this text is itself a valid configuration.");
    out.kv("hostname", quote(&c.hostname));
    out.kv("data_dir", quote(&c.data_dir.to_string_lossy()));
    let delimiter = c.recipient_delimiter.map(String::from).unwrap_or_default();
    out.kv("recipient_delimiter", quote(&delimiter));
    let networks = c.trusted_networks.iter().map(ToString::to_string);
    out.kv("trusted_networks", strings(networks));
    let p = &c.privileges;
    if let Some(user) = &p.user {
        out.kv("user", quote(&user.name));
    }
    if let Some(group) = &p.group {
        out.kv("group", quote(&group.name));
    }
    out.kv("allow_root", p.allow_root.to_string());
    for l in &c.listeners {
        out.table("[[listen]]");
        out.kv("address", quote(&l.address.to_string()));
        out.kv("role", quote(l.role.as_str()));
        // Only mx listeners take these keys (the others may not name them).
        if l.role == Role::Mx {
            out.kv("verify", l.checks.verify.to_string());
            out.kv("dmarc_reject", l.checks.dmarc_reject.to_string());
            out.kv("dmarc_quarantine", l.checks.dmarc_quarantine.to_string());
            out.kv("spf_reject", l.checks.spf_reject.to_string());
            out.kv("greylist", l.greylist.to_string());
        }
        if let Some(name) = &l.rate_limits_name {
            out.kv("rate_limits", quote(name));
        }
        out.kv("screen", l.screen.to_string());
        out.kv("greet_delay", quote(&format_duration(l.greet_delay)));
        if !l.milters.is_empty() {
            out.kv("milters", strings(&l.milters));
        }
    }
    if c.domains.is_empty() {
        out.table("[domains]");
    }
    for (name, d) in &c.domains {
        out.table(&format!("[domains.{}]", key(name)));
        out.kv("mailboxes", strings(&d.mailboxes));
        if let Some(catch_all) = &d.catch_all {
            out.kv("catch_all", quote(catch_all));
        }
        out.kv("any_mailbox", d.any_mailbox.to_string());
        if let Some(q) = d.quota {
            out.kv("quota", q.to_string());
        }
        if !d.mailbox_quota.is_empty() {
            let items: Vec<String> = d.mailbox_quota.iter().map(|(m, q)| format!("{} = {q}", key(m))).collect();
            out.kv("mailbox_quota", format!("{{ {} }}", items.join(", ")));
        }
    }
    out.table("[aliases]");
    for (alias, targets) in &c.aliases {
        out.kv(alias, strings(targets));
    }
    let l = &c.limits;
    out.table("[limits]");
    out.kv("max_message_size", quote(&format_size(l.max_message_size)));
    out.kv("max_recipients", l.max_recipients.to_string());
    out.kv("max_errors", l.max_errors.to_string());
    out.kv("max_connections", l.max_connections.to_string());
    out.kv("max_connections_per_ip", l.max_connections_per_ip.to_string());
    out.kv("max_connections_per_network", l.max_connections_per_network.to_string());
    out.table("[timeouts]");
    out.kv("command", quote(&format_duration(c.timeouts.command)));
    out.kv("data", quote(&format_duration(c.timeouts.data)));
    out.kv("data_min_rate", c.timeouts.data_min_rate.to_string());
    out.kv("write", quote(&format_duration(c.timeouts.write)));
    out.kv("shutdown_grace", quote(&format_duration(c.timeouts.shutdown_grace)));
    let d = &c.delivery;
    out.table("[delivery]");
    let schedule = d.retry_schedule.iter().map(|t| format_duration(*t));
    out.kv("retry_schedule", strings(schedule));
    out.kv("max_age", quote(&format_duration(d.max_age)));
    out.kv("local_concurrency", d.local_concurrency.to_string());
    out.kv("spool_slots", d.spool_slots.to_string());
    let notice = d.delay_notice.map_or_else(|| "off".to_owned(), format_duration);
    out.kv("delay_notice", quote(&notice));
    match &d.method {
        crate::DeliveryMethod::Lmtp(socket) => {
            out.kv("method", quote("lmtp"));
            out.kv("lmtp", quote(&socket.to_string()));
        }
        _ => out.kv("method", quote("maildir")),
    }
    access(&mut out, c);
    outbound(&mut out, &c.outbound);
    out.table("[log]");
    out.kv("format", quote(c.log.format.as_str()));
    out.kv("timestamps", quote(c.log.timestamps.as_str()));
    out.table("[history]");
    out.kv("enabled", c.history.enabled.to_string());
    out.kv("days", c.history.days.to_string());
    if let Some(s) = &c.screen {
        screen(&mut out, s);
    }
    greylist_and_rates(&mut out, c);
    client(&mut out, c);
    milters(&mut out, c);
    out.0
}

/// `[client]`, `[mta_sts]` and `[dns]`.
fn client(out: &mut Out, c: &Config) {
    let cl = &c.client;
    out.table("[client]");
    out.kv("host", quote(&cl.host));
    out.kv("imap_host", quote(&cl.imap_host));
    if let Some(p) = cl.imap_port {
        out.kv("imap_port", p.to_string());
    }
    if let Some(p) = cl.imaps_port {
        out.kv("imaps_port", p.to_string());
    }
    out.kv("addresses", strings(cl.addresses.iter().map(ToString::to_string)));
    out.table("[mta_sts]");
    out.kv("mode", quote(c.mta_sts.mode.as_str()));
    out.kv("max_age", quote(&format_duration(c.mta_sts.max_age)));
    out.kv("mx", strings(&c.mta_sts.mx));
    out.table("[dns]");
    out.kv("dmarc_policy", quote(c.dns.dmarc_policy.as_str()));
    if let Some(a) = &c.dns.report_address {
        out.kv("report_address", quote(a));
    }
}

/// `[screen]` and its `[[screen.zone]]` tables.
fn screen(out: &mut Out, s: &crate::Screen) {
    out.table("[screen]");
    out.kv("action", quote(s.action.as_str()));
    out.kv("threshold", s.threshold.to_string());
    out.kv("timeout", quote(&format_duration(s.timeout)));
    out.kv("cache_size", s.cache_size.to_string());
    out.kv("fcrdns", s.fcrdns.to_string());
    out.kv("require_fcrdns", s.require_fcrdns.to_string());
    out.kv("reject_pipelining", s.reject_pipelining.to_string());
    out.kv("helo_checks", strings(s.helo.names()));
    for z in &s.zones {
        out.table("[[screen.zone]]");
        out.kv("name", quote(&z.name));
        out.kv("weight", z.weight.to_string());
        out.kv("codes", strings(z.codes.iter().map(ToString::to_string)));
    }
}

/// `[tls]`, `[auth]` and `[send_as]`.
fn access(out: &mut Out, c: &Config) {
    let path = |p: &std::path::Path| quote(&p.to_string_lossy());
    out.table("[tls]");
    // TOML has no null: absent files are left out, which reads back as "none".
    if let Some((cert, key)) = c.tls.files() {
        out.kv("cert", path(cert));
        out.kv("key", path(key));
    }
    out.kv("check_interval", quote(&format_duration(c.tls.check_interval)));
    if let Some(acme) = &c.tls.acme {
        out.table("[tls.acme]");
        out.kv("directory", quote(&acme.directory));
        if let Some(contact) = &acme.contact {
            out.kv("contact", quote(contact));
        }
        let names: Vec<String> = acme.names.iter().map(|n| quote(n)).collect();
        out.kv("names", format!("[{}]", names.join(", ")));
        if let Some(file) = &acme.ca_file {
            out.kv("ca_file", path(file));
        }
        out.kv("renew_before", quote(&format_duration(acme.renew_before)));
        out.kv("check_interval", quote(&format_duration(acme.check_interval)));
    }
    let a = &c.auth;
    out.table("[auth]");
    out.kv("users_file", path(&a.users_file));
    out.kv("plaintext_on_loopback", a.plaintext_on_loopback.to_string());
    out.kv("users_are_mailboxes", a.users_are_mailboxes.to_string());
    out.kv("failure_delay", quote(&format_duration(a.failure_delay)));
    out.kv("max_failures", a.max_failures.to_string());
    out.kv("failure_window", quote(&format_duration(a.failure_window)));
    out.kv("lockout", quote(&format_duration(a.lockout)));
    out.kv("max_concurrent_checks", a.max_concurrent_checks.to_string());
    out.kv("check_queue_timeout", quote(&format_duration(a.check_queue_timeout)));
    match &a.backend {
        crate::AuthBackend::Dovecot(socket) => {
            out.kv("backend", quote("dovecot"));
            out.kv("socket", quote(&socket.to_string()));
        }
        _ => out.kv("backend", quote("file")),
    }
    out.table("[send_as]");
    for (user, senders) in &c.send_as {
        out.kv(user, strings(senders));
    }
}

/// `[outbound]`, its relay host and its routes.
fn outbound(out: &mut Out, o: &Outbound) {
    let path = |p: &std::path::Path| quote(&p.to_string_lossy());
    out.table("[outbound]");
    out.kv("helo_name", quote(&o.helo_name));
    out.kv("nameservers", strings(o.nameservers.iter().map(ToString::to_string)));
    out.kv("smtp_port", o.smtp_port.to_string());
    out.kv("tls", quote(o.tls.as_str()));
    if let Some(file) = &o.tls_ca_file {
        out.kv("tls_ca_file", path(file));
    }
    if let Some(file) = &o.dnssec_trust_anchor {
        out.kv("dnssec_trust_anchor", path(file));
    }
    out.kv("ip_preference", quote(o.ip_preference.as_str()));
    out.kv("concurrency", o.concurrency.to_string());
    out.kv("per_destination", o.per_destination.to_string());
    out.kv("connect_timeout", quote(&format_duration(o.connect_timeout)));
    out.kv("idle_timeout", quote(&format_duration(o.idle_timeout)));
    out.kv("mta_sts_port", o.mta_sts_port.to_string());
    out.kv("tls_report_interval", quote(&format_duration(o.tls_report_interval)));
    if let Some(r) = &o.relay_host {
        out.table("[outbound.relay_host]");
        out.kv("host", quote(&r.host.to_string()));
        out.kv("tls", quote(r.tls.as_str()));
        out.kv("implicit_tls", r.implicit_tls.to_string());
        if let Some(user) = &r.username {
            out.kv("username", quote(user));
        }
        if let Some(file) = &r.password_file {
            out.kv("password_file", path(file));
        }
    }
    if o.routes.is_empty() {
        out.table("[outbound.routes]");
    }
    for (domain, route) in &o.routes {
        out.table(&format!("[outbound.routes.{}]", key(domain)));
        out.kv("hosts", strings(route.hosts.iter().map(ToString::to_string)));
        out.kv("tls", quote(route.tls.as_str()));
    }
}

/// `[greylist]` and the `[rate_limits.NAME]` profiles.
fn greylist_and_rates(out: &mut Out, c: &Config) {
    let g = &c.greylist;
    out.table("[greylist]");
    out.kv("enabled", g.enabled.to_string());
    out.kv("min_delay", quote(&format_duration(g.min_delay)));
    out.kv("window", quote(&format_duration(g.window)));
    out.kv("pass_days", g.pass_days.to_string());
    out.kv("auto_allow_after", g.auto_allow_after.to_string());
    out.kv("max_entries", g.max_entries.to_string());
    out.kv("exempt", strings(g.exempt_list()));
    for (name, r) in &c.rate_limits {
        out.table(&format!("[rate_limits.{}]", key(name)));
        for (k, v) in r.entries() {
            out.kv(k, quote(&v));
        }
        out.kv("max_entries", r.max_entries.to_string());
    }
}

/// The `[[milter]]` tables.
fn milters(out: &mut Out, c: &Config) {
    for m in &c.milters {
        out.table("[[milter]]");
        out.kv("name", quote(&m.name));
        out.kv("address", quote(&m.address.to_string()));
        out.kv("connect_timeout", quote(&format_duration(m.connect_timeout)));
        out.kv("command_timeout", quote(&format_duration(m.command_timeout)));
        out.kv("eom_timeout", quote(&format_duration(m.eom_timeout)));
        out.kv("default_action", quote(m.default_action.as_str()));
        out.kv("skip_authenticated", m.skip_authenticated.to_string());
    }
}

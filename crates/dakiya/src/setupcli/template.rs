//! The configuration `dakiya setup` writes: a complete production file, commented for the
//! person who will edit it. Every key is documented in dakiya.example.toml.

use super::names::Name;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// What goes into the file.
pub(crate) struct Settings {
    pub domain: Name,
    pub hostname: Name,
    pub data_dir: PathBuf,
    /// The addresses of the public listeners (each gets ports 25, 587, 465 and 995).
    pub addresses: Vec<IpAddr>,
    /// The first user's mailbox (local part), if any.
    pub mailbox: Option<String>,
    /// The account to run as, and whether it exists on this system (else it is left
    /// commented out, so that the file passes `dakiya check-config`).
    pub run_as: String,
    pub run_as_exists: bool,
    /// The certificate and key, if given.
    pub tls: Option<(PathBuf, PathBuf)>,
}

fn q(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn path(p: &Path) -> String {
    q(&p.to_string_lossy())
}

/// The whole file.
pub(crate) fn render(s: &Settings) -> String {
    let mut out = String::new();
    header(&mut out, s);
    listeners(&mut out, s);
    domain(&mut out, s);
    tls_and_auth(&mut out, s);
    out
}

fn header(out: &mut String, s: &Settings) {
    let d = &s.domain;
    out.push_str(&format!(
        "# dakiya configuration for the mail domain {}, written by `dakiya setup`.\n\
         # Every key is explained in dakiya.example.toml. After a change, check the file with\n\
         # `dakiya check-config FILE` and apply it with `systemctl reload dakiya` (docs/reload.md).\n\n",
        d.shown()
    ));
    out.push_str(&format!(
        "# Our name in the greeting, EHLO and Received: headers. The MX record of {} points\n\
         # here, and the reverse DNS (PTR) of this server's addresses should name it too.\n\
         hostname = {}\n\n",
        d.ascii,
        q(&s.hostname.ascii)
    ));
    out.push_str(&format!(
        "# The queue, the mailboxes, the DKIM keys and the users: owned by the user below, mode 0750.\n\
         data_dir = {}\n\n",
        path(&s.data_dir)
    ));
    out.push_str(
        "# Started as root, dakiya binds its ports and then runs as this user (and its primary\n\
         # group, or `group`), before it reads a byte from the network. The packaged systemd unit\n\
         # starts it as this user with CAP_NET_BIND_SERVICE instead: nothing to drop then.\n\
         # Running as root is refused unless allow_root = true. Changing these needs a restart.\n",
    );
    if s.run_as_exists {
        out.push_str(&format!("user = {}\n", q(&s.run_as)));
    } else {
        out.push_str(&format!(
            "# The account {0:?} does not exist yet: create it (`useradd --system --home-dir {1} \
             --shell /usr/sbin/nologin {0}`),\n# `chown -R {0}: {1}` and remove the # below.\n# user = {2}\n",
            s.run_as,
            s.data_dir.display(),
            q(&s.run_as)
        ));
    }
    out.push_str("allow_root = false\n");
}

fn socket(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

fn listener(out: &mut String, address: &str, role: &str, extra: &str) {
    out.push_str(&format!("\n[[listen]]\naddress = {}\nrole = {}\n{extra}", q(address), q(role)));
}

fn listeners(out: &mut String, s: &Settings) {
    out.push_str(
        "\n# Mail from the world for our domain (MX, port 25): SPF, DKIM and DMARC are checked, and\n\
         # a client that talks before the greeting (3 s) is refused.\n",
    );
    for ip in &s.addresses {
        listener(out, &socket(*ip, 25), "mx", "verify = true\ngreet_delay = \"3s\"\n");
    }
    out.push_str(
        "\n# Our users' mail programs: submission with STARTTLS (587, RFC 6409) and over TLS (465,\n\
         # RFC 8314). AUTH is required. Mail they send from our domain is DKIM-signed with the\n\
         # key in data_dir/dkim.\n",
    );
    for ip in &s.addresses {
        listener(out, &socket(*ip, 587), "submission", "");
        listener(out, &socket(*ip, 465), "submissions", "");
    }
    out.push_str("\n# POP3 over TLS (995) for users to fetch their mail.\n");
    for ip in &s.addresses {
        listener(out, &socket(*ip, 995), "pop3s", "");
    }
    out.push_str(
        "\n# Prometheus metrics, /healthz and /readyz (docs/operations.md). No authentication: loopback only.\n",
    );
    listener(out, "127.0.0.1:9425", "metrics", "");
    out.push_str(
        "\n# HTTP and HTTPS: autoconfig/Autodiscover/Apple profiles for mail programs and the\n\
         # MTA-STS policy at mta-sts.DOMAIN (docs/clients.md); port 80 also answers ACME HTTP-01.\n",
    );
    for ip in &s.addresses {
        listener(out, &socket(*ip, 80), "http", "");
        listener(out, &socket(*ip, 443), "https", "");
    }
}

fn domain(out: &mut String, s: &Settings) {
    let d = &s.domain.ascii;
    out.push_str(&format!(
        "\n# Our domain{}. Users of the user store in it (`dakiya user add NAME@{d}`) are\n\
         # mailboxes too (auth.users_are_mailboxes below).\n[domains.{}]\n",
        if s.domain.ascii == s.domain.unicode { String::new() } else { format!(", {}", s.domain.unicode) },
        q(d)
    ));
    match &s.mailbox {
        None => {
            out.push_str("mailboxes = [\"postmaster\"]\n");
        }
        Some(m) => {
            out.push_str(&format!("mailboxes = [{}]\n", q(m)));
            out.push_str("\n# RFC 5321 §4.5.1 and RFC 2142: postmaster and abuse must reach a person.\n[aliases]\n");
            for role in ["postmaster", "abuse"].into_iter().filter(|r| r != m) {
                out.push_str(&format!("{} = [{}]\n", q(&format!("{role}@{d}")), q(&format!("{m}@{d}"))));
            }
        }
    }
}

fn tls_and_auth(out: &mut String, s: &Settings) {
    out.push_str(&format!(
        "\n# The certificate for STARTTLS and TLS, for {}: fullchain and key, readable by the user\n\
         # above (e.g. certbot's files with a deploy hook that copies them). Renewed files are picked\n\
         # up by themselves. Without them, a self-signed certificate in data_dir/tls is used.\n[tls]\n",
        s.hostname.ascii
    ));
    match &s.tls {
        Some((cert, key)) => out.push_str(&format!("cert = {}\nkey = {}\n", path(cert), path(key))),
        None => out.push_str(&format!(
            "# cert = \"/etc/dakiya/tls/fullchain.pem\"\n# key = \"/etc/dakiya/tls/privkey.pem\"\n# ({})\n",
            "set both, then `systemctl reload dakiya`"
        )),
    }
    out.push_str(&format!(
        "\n# Users who may send (SMTP AUTH) and fetch (POP3): `dakiya user add|passwd|del|list`.\n\
         [auth]\nusers_file = {}\nusers_are_mailboxes = true\n",
        path(&s.data_dir.join("users"))
    ));
}

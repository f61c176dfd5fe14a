//! A DNSSEC-signed zone served by Knot DNS on loopback, for DANE tests: the zone is signed
//! with fresh keys by `ldns-signzone` (Debian `ldnsutils`) and served by `knotd` (Debian
//! `knot`), unprivileged, on a free port. The zone's single signing key is the trust anchor.

use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running signed zone; dropping it stops the server.
#[derive(Debug)]
pub struct SignedZone {
    /// Where the server answers (UDP and TCP).
    pub addr: SocketAddr,
    /// A file with the zone's DNSKEY key-signing key, for `outbound.dnssec_trust_anchor`.
    pub trust_anchor: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

/// What to break after signing.
#[derive(Debug, Clone, Default)]
pub struct Damage {
    /// Corrupt the signature over this owner's records of this type (e.g.
    /// `("_25._tcp.mx.example.test.", "TLSA")`): a bogus answer.
    pub bad_rrsig: Option<(String, String)>,
}

impl SignedZone {
    /// Signs `records` (zone-file lines, relative to `origin` or absolute) for `origin`,
    /// adds SOA and NS, and serves the result. Panics when the tools are missing.
    pub fn start(origin: &str, records: &str, damage: &Damage) -> SignedZone {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path();
        let zone = format!(
            "$ORIGIN {origin}.\n$TTL 300\n@ IN SOA ns.{origin}. admin.{origin}. 1 3600 600 86400 300\n\
             @ IN NS ns.{origin}.\nns IN A 127.0.0.1\n{records}\n"
        );
        std::fs::write(path.join("zone"), zone).expect("zone file");
        let ksk = run(path, "ldns-keygen", &["-a", "ECDSAP256SHA256", "-k", origin]);
        // One key signs everything (a CSK): hickory trusts a DNSKEY RRset without asking the
        // parent for DS records only when every key in it is a trust anchor.
        run(path, "ldns-signzone", &["-n", "-f", "signed", "zone", &ksk]);
        if let Some((owner, rtype)) = &damage.bad_rrsig {
            corrupt(&path.join("signed"), owner, rtype);
        }
        let trust_anchor = path.join("anchor");
        std::fs::copy(path.join(format!("{ksk}.key")), &trust_anchor).expect("trust anchor");
        let port = free_port();
        let conf = format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: {dir}\ndatabase:\n    storage: {dir}\n\
             zone:\n  - domain: {origin}\n    file: {dir}/signed\n    journal-content: none\n    zonefile-sync: -1\n",
            dir = path.display()
        );
        std::fs::write(path.join("knot.conf"), conf).expect("knot.conf");
        let child = Command::new("knotd")
            .arg("-c")
            .arg(path.join("knot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("knotd (Debian package knot) must be installed");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let zone = SignedZone { addr, trust_anchor, child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "knotd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        zone
    }
}

impl Drop for SignedZone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a tool in `dir`; returns its first output line (ldns-keygen prints the key's name).
fn run(dir: &Path, tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{tool} (Debian package ldnsutils) must be installed: {e}"));
    assert!(out.status.success(), "{tool}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().trim().to_owned()
}

/// Flips a character in the middle of the signature of the RRSIG covering `owner`/`rtype`.
fn corrupt(file: &Path, owner: &str, rtype: &str) {
    let text = std::fs::read_to_string(file).expect("signed zone");
    let mut done = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let hit = f.len() > 12 && f[0].eq_ignore_ascii_case(owner) && f[3] == "RRSIG" && f[4] == rtype;
            if !hit || done {
                return line.to_owned();
            }
            done = true;
            let mut sig: Vec<char> = f[12].chars().collect();
            let at = sig.len() / 2;
            sig[at] = if sig[at] == 'A' { 'B' } else { 'A' };
            let sig: String = sig.into_iter().collect();
            format!("{} {}", f[..12].join(" "), sig)
        })
        .collect();
    assert!(done, "no RRSIG {rtype} for {owner}");
    std::fs::write(file, lines.join("\n") + "\n").expect("signed zone");
}

/// A port free on 127.0.0.1 for both UDP and TCP, as far as one can tell.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("udp");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

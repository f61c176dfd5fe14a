//! The greylist's text snapshot: what the server writes to disk and reads back at start.
//!
//! ```text
//! dakiya-greylist 1
//! p <TAB> 192.0.2.0/24 <TAB> sender <TAB> recipient <TAB> first-seen   (pending)
//! k <TAB> 192.0.2.0/24 <TAB> sender <TAB> recipient <TAB> last-used    (known: passed)
//! n <TAB> 192.0.2.0/24 <TAB> passes <TAB> last-pass                    (network)
//! ```
//! Times are Unix seconds. Addresses are escaped: `%`, control characters and DEL as `%XX`,
//! so a field never holds a tab or a line break. The empty sender is the null sender.

use crate::greylist::{Greylist, GreylistSettings, NetRecord, Triplet};
use crate::net::Network;
use std::fmt::Write;

const HEADER: &str = "dakiya-greylist 1";

impl Greylist {
    /// The state as text (see the module docs of `snapshot.rs` for the format).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(64 * self.len() + HEADER.len() + 1);
        out.push_str(HEADER);
        out.push('\n');
        for (kind, map) in [('p', &self.pending), ('k', &self.passed)] {
            for (t, time) in map {
                let _ = writeln!(out, "{kind}\t{}\t{}\t{}\t{time}", t.net, escape(&t.sender), escape(&t.recipient));
            }
        }
        for (net, n) in &self.networks {
            let _ = writeln!(out, "n\t{net}\t{}\t{}", n.passes, n.last);
        }
        out
    }

    /// Reads a snapshot back with `settings`, dropping what has expired at `now` and, beyond
    /// `max_entries`, the least valuable entries. Returns the greylist and how many lines
    /// could not be read (skipped). Text without the header gives an empty greylist and
    /// counts every line as skipped.
    pub fn decode(text: &str, settings: GreylistSettings, now: u64) -> (Greylist, usize) {
        let mut g = Greylist::new(settings);
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return (g, text.lines().count());
        }
        let mut skipped = 0;
        for line in lines {
            if line.is_empty() {
                continue;
            }
            if parse_line(&mut g, line, now).is_none() {
                skipped += 1;
            }
        }
        g.prune(now);
        g.take_dirty();
        (g, skipped)
    }
}

fn parse_line(g: &mut Greylist, line: &str, now: u64) -> Option<()> {
    let fields: Vec<&str> = line.split('\t').collect();
    match fields.as_slice() {
        [kind @ ("p" | "k"), net, sender, recipient, time] => {
            let t = Triplet { net: net.parse().ok()?, sender: unescape(sender)?, recipient: unescape(recipient)? };
            let time: u64 = time.parse().ok()?;
            g.make_room(now);
            if *kind == "p" {
                g.pending.insert(t, time)
            } else {
                g.passed.insert(t, time)
            };
        }
        ["n", net, passes, last] => {
            let net: Network = net.parse().ok()?;
            let record = NetRecord { passes: passes.parse().ok()?, last: last.parse().ok()? };
            g.make_room(now);
            g.networks.insert(net, record);
        }
        _ => return None,
    }
    Some(())
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '%' || c.is_ascii_control() {
            let _ = write!(out, "%{:02X}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GreylistVerdict;

    const T0: u64 = 1_800_000_000;

    fn settings() -> GreylistSettings {
        GreylistSettings { min_delay: 60, window: 3600, pass_ttl: 86_400, auto_allow_after: 2, max_entries: 100 }
    }

    fn t(ip: &str, from: &str, to: &str) -> Triplet {
        Triplet::new(ip.parse().unwrap(), from, to)
    }

    #[test]
    fn a_snapshot_reads_back_the_same_decisions() {
        let mut g = Greylist::new(settings());
        let pending = t("192.0.2.1", "", "bob@example.test");
        let known = t("2001:db8::1", "\"odd\tname%\"@remote.test", "bob@example.test");
        g.check(&pending, T0);
        g.check(&known, T0);
        g.check(&known, T0 + 60);
        let (mut back, skipped) = Greylist::decode(&g.encode(), settings(), T0 + 61);
        assert_eq!(skipped, 0);
        assert_eq!(back.len(), g.len());
        assert_eq!(back.check(&known, T0 + 61), GreylistVerdict::Known);
        assert_eq!(back.check(&pending, T0 + 59), GreylistVerdict::Deferred { retry_in: 1 });
        assert_eq!(back.check(&pending, T0 + 61), GreylistVerdict::Retried);
    }

    #[test]
    fn expired_entries_are_dropped_and_bad_lines_skipped() {
        let text = format!(
            "{HEADER}\np\t192.0.2.0/24\ta@x.test\tb@y.test\t{T0}\nk\t192.0.2.0/24\tnot\tenough\n\
             n\t192.0.2.0/25\t3\t{T0}\np\t192.0.2.0/24\tbad%zz\tb@y.test\t{T0}\n"
        );
        let (g, skipped) = Greylist::decode(&text, settings(), T0 + 3601);
        assert_eq!(skipped, 3);
        assert!(g.is_empty());
        let (g, skipped) = Greylist::decode("something else\nx\n", settings(), T0);
        assert_eq!((g.len(), skipped), (0, 2));
    }

    #[test]
    fn a_larger_snapshot_is_cut_to_max_entries() {
        let mut g = Greylist::new(GreylistSettings { max_entries: 1000, ..settings() });
        for i in 0..1000 {
            g.check(&t("192.0.2.1", &format!("s{i}@x.test"), "b@y.test"), T0);
        }
        let (back, _) = Greylist::decode(&g.encode(), GreylistSettings { max_entries: 10, ..settings() }, T0);
        assert!(back.len() <= 10);
    }
}

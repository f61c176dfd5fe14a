//! The body of a fuzz target for the client: arbitrary bytes as everything a server says.
//! Kept in the library so an ordinary test (and, later, a cargo-fuzz target) can run it;
//! the tests also drive it with a reactive fake server that answers each command.

use super::{AuthCredentials, Client, ClientConfig, ClientEvent, DataEncoder, Job, JobRecipient, Outcome, TlsPolicy};
use crate::address::{Mailbox, ReversePath};
use crate::params::{Notify, Ret};

/// Drives a whole client session with `data` as everything the server says. The first two
/// octets choose the client's policy, the job and the size of each read; the rest is the
/// server's bytes. Panics if an invariant breaks:
/// - every write is one or more complete command lines, CRLF-terminated, with no lone CR
///   or LF (no reply can make the client inject or garble a command);
/// - every job gets exactly one [`ClientEvent::Done`], with one result per recipient when
///   results are per recipient;
/// - the session always ends in [`ClientEvent::Closed`], in a bounded number of steps.
pub fn replies(data: &[u8]) {
    let flags = [data.first().copied().unwrap_or(0), data.get(1).copied().unwrap_or(0)];
    let rest = data.get(2..).unwrap_or_default();
    let mut peer = Bytes { chunks: rest.chunks(usize::from(flags[1] & 0x0f) + 1) };
    // Each round either consumes input or moves the state machine forward; a generous
    // bound catches a loop that does neither.
    drive(flags, &mut peer, rest.len() * 8 + 64);
}

/// The server side of a fuzzed session.
pub(crate) trait Peer {
    /// The client wrote `bytes` (commands, or the encoded content).
    fn hear(&mut self, bytes: &[u8]);
    /// What the server sends next; `None` is the end of the stream.
    fn say(&mut self) -> Option<Vec<u8>>;
}

/// A server that says fixed bytes, whatever it hears.
struct Bytes<'a> {
    chunks: std::slice::Chunks<'a, u8>,
}

impl Peer for Bytes<'_> {
    fn hear(&mut self, _: &[u8]) {}
    fn say(&mut self) -> Option<Vec<u8>> {
        self.chunks.next().map(<[u8]>::to_vec)
    }
}

/// How far a session got, so tests can check the fuzzing reaches the deep paths.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Reach {
    pub handshakes: usize,
    pub bodies: usize,
    pub authenticated: usize,
    pub per_recipient: usize,
    pub reused: usize,
}

/// Runs one session against `peer`: `flags[0]` picks the client configuration, `flags[1]`
/// the job (its low four bits are left to the peer).
pub(crate) fn drive(flags: [u8; 2], peer: &mut impl Peer, max_rounds: usize) -> Reach {
    let mut reach = Reach::default();
    let mut client = Client::new(config(flags[0]), job(flags[1]));
    let mut input = Vec::new();
    let (mut started, mut done) = (1, 0);
    for _ in 0..max_rounds {
        match client.poll(&mut input) {
            ClientEvent::Write(bytes) => {
                check_commands(bytes);
                peer.hear(bytes);
            }
            ClientEvent::NeedInput => match peer.say() {
                Some(bytes) => input.extend_from_slice(&bytes),
                None => client.connection_lost("end of fuzz input"),
            },
            ClientEvent::StartTls => {
                reach.handshakes += 1;
                client.tls_established();
            }
            ClientEvent::SendBody => {
                reach.bodies += 1;
                peer.hear(&DataEncoder::encode_all(b"Subject: fuzz\r\n\r\n.\r\nbody\r\n"));
                client.body_sent();
            }
            ClientEvent::Done(outcome) => {
                done += 1;
                reach.authenticated += usize::from(client.is_authenticated());
                if let Outcome::Recipients(all) = &outcome {
                    reach.per_recipient += 1;
                    assert_eq!(all.len(), job(flags[1]).recipients.len(), "one result per recipient");
                }
                if started < 3 && client.next_job(job(flags[1])).is_ok() {
                    started += 1;
                    reach.reused += 1;
                } else {
                    client.finish();
                }
            }
            ClientEvent::Ready => client.finish(),
            ClientEvent::Closed => {
                assert_eq!(started, done, "every job reported exactly once");
                assert_eq!(client.poll(&mut input), ClientEvent::Closed, "closed stays closed");
                return reach;
            }
        }
    }
    panic!("client session did not end");
}

/// Bits 0-1: TLS policy; bit 2: implicit TLS; bit 3: credentials; bit 7: LMTP.
fn config(flags: u8) -> ClientConfig {
    let mut cfg = ClientConfig::new("client.fuzz.test");
    cfg.tls = match flags & 3 {
        0 => TlsPolicy::None,
        1 => TlsPolicy::Opportunistic,
        _ => TlsPolicy::Required,
    };
    cfg.implicit_tls = flags & 4 != 0;
    if flags & 8 != 0 {
        cfg.credentials = Some(AuthCredentials { username: "u".into(), password: "p".into() });
    }
    cfg.lmtp = flags & 0x80 != 0;
    cfg
}

/// Three recipients; bit 4: 8-bit content; bit 5: SMTPUTF8 needed; bit 6: a large size.
fn job(flags: u8) -> Job {
    let mb = |local: &str| Mailbox { local: local.into(), domain: "fuzz.test".into() };
    let mut job = Job::new(ReversePath::Mailbox(mb("from")), [mb("a"), mb("b"), mb("c")]);
    job.size = Some(if flags & 0x40 != 0 { 20_000 } else { 1000 });
    job.eight_bit = flags & 0x10 != 0;
    job.smtputf8 = flags & 0x20 != 0;
    job.ret = Some(Ret::Hdrs);
    job.envid = Some("env id".into());
    job.recipients[1] = JobRecipient {
        mailbox: mb("b"),
        notify: Some(Notify { success: true, failure: true, delay: false }),
        orcpt: Some(("rfc822".into(), "b@fuzz.test".into())),
    };
    job
}

fn check_commands(bytes: &[u8]) {
    assert!(bytes.ends_with(b"\r\n"), "a write ends with CRLF: {bytes:?}");
    for line in bytes[..bytes.len() - 2].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(!line.is_empty(), "empty command line");
        assert!(!line.contains(&b'\r') && !line.contains(&b'\n'), "lone CR or LF in a command");
    }
    let text = std::str::from_utf8(bytes).expect("commands are UTF-8");
    assert_eq!(text.matches("\r\n").count(), text.matches('\n').count(), "every LF is part of a CRLF");
}

#[cfg(test)]
mod tests {
    use super::{Peer, Reach, drive, replies};

    /// xorshift64: deterministic, so a failure names its seed and replays.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    fn add(total: &mut Reach, r: Reach) {
        total.handshakes += r.handshakes;
        total.bodies += r.bodies;
        total.authenticated += r.authenticated;
        total.per_recipient += r.per_recipient;
        total.reused += r.reused;
    }

    /// Every deep path was reached at least `n` times.
    fn assert_reach(total: Reach, n: usize) {
        let all = [total.handshakes, total.bodies, total.authenticated, total.per_recipient, total.reused];
        assert!(all.iter().all(|&x| x >= n), "fuzzing does not reach far enough: {total:?}");
    }

    #[test]
    fn random_bytes_as_replies() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let len = rng.below(300);
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            replies(&data);
        }
    }

    /// A fake server that answers every command, usually as a good server would, sometimes
    /// with a refusal, a 421, a malformed line, an extra reply or random octets; it sends
    /// its bytes in reads of random sizes. It reaches every part of the client.
    struct Reactive {
        rng: Rng,
        queue: Vec<u8>,
        greeted: bool,
        in_data: bool,
        login: u8,
    }

    /// Replies that can come at any time, in place of the usual one.
    const NASTY: &[&str] = &[
        "421 4.4.2 closing",
        "250 surprise",
        "354 out of place",
        "334 ",
        "2x0 malformed",
        "550-multi\r\n551 code changes",
        "250-unfinished",
        "220 again",
    ];

    impl Reactive {
        fn new(seed: u64) -> Reactive {
            Reactive { rng: Rng(seed), queue: Vec::new(), greeted: false, in_data: false, login: 0 }
        }

        /// Queues `options[0]` most of the time, another option or a nasty one otherwise;
        /// returns which option was used (`usize::MAX` for a nasty one).
        fn reply(&mut self, options: &[&str]) -> usize {
            let roll = self.rng.below(100);
            let (i, text) = if roll < 75 || options.len() == 1 && roll < 90 {
                (0, options[0])
            } else if roll < 90 {
                let i = 1 + self.rng.below(options.len() - 1);
                (i, options[i])
            } else if roll < 98 {
                (usize::MAX, self.rng.pick(NASTY))
            } else {
                let junk: Vec<u8> = (0..self.rng.below(20)).map(|_| self.rng.next() as u8).collect();
                self.queue.extend_from_slice(&junk);
                return usize::MAX;
            };
            let end = if self.rng.below(20) == 0 { "\n" } else { "\r\n" };
            self.queue.extend_from_slice(format!("{text}{end}").as_bytes());
            i
        }

        fn ehlo(&mut self) {
            let keywords = ["PIPELINING", "STARTTLS", "AUTH PLAIN LOGIN", "AUTH LOGIN", "SIZE 5000", "8BITMIME"];
            let more = ["SMTPUTF8", "DSN", "CHUNKING", "ENHANCEDSTATUSCODES", "SIZE 0"];
            let mut text = String::from("250-mx.fuzz.test");
            for k in keywords.iter().chain(&more) {
                if self.rng.below(3) != 0 {
                    text.push_str("\r\n250-");
                    text.push_str(k);
                }
            }
            text.push_str("\r\n250 HELP");
            self.reply(&[&text, "500 5.5.1 what", "502 5.5.1 no EHLO", "554 5.7.1 no"]);
        }

        fn command(&mut self, line: &str) {
            if self.login > 0 {
                let step = self.login;
                self.login = 0;
                if step == 1 && self.reply(&["334 UGFzc3dvcmQ6", "535 5.7.8 no"]) == 0 {
                    self.login = 2;
                } else if step == 2 {
                    self.reply(&["235 2.7.0 ok", "535 5.7.8 bad", "454 4.7.0 later"]);
                }
                return;
            }
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            match verb.as_str() {
                "EHLO" => self.ehlo(),
                "HELO" => _ = self.reply(&["250 mx.fuzz.test", "550 no"]),
                "STARTTLS" => _ = self.reply(&["220 2.0.0 go", "454 4.7.0 no TLS", "554 5.7.3 no"]),
                "AUTH" if line.contains("LOGIN") => {
                    if self.reply(&["334 VXNlcm5hbWU6", "504 5.5.4 no"]) == 0 {
                        self.login = 1;
                    }
                }
                "AUTH" => _ = self.reply(&["235 2.7.0 ok", "535 5.7.8 bad", "454 4.7.0 later", "334 "]),
                "MAIL" => _ = self.reply(&["250 2.1.0 ok", "451 4.3.0 later", "550 5.7.1 no", "552 5.3.4 big"]),
                "RCPT" => _ = self.reply(&["250 2.1.5 ok", "450 4.2.1 busy", "550 5.1.1 no", "452 4.5.3 too many"]),
                "DATA" => self.in_data = self.reply(&["354 go", "554 5.5.1 no recipients", "451 4.3.0 later"]) == 0,
                "RSET" => _ = self.reply(&["250 2.0.0 ok", "502 5.5.1 no"]),
                "QUIT" => _ = self.reply(&["221 2.0.0 bye"]),
                _ => _ = self.reply(&["500 5.5.1 unknown"]),
            }
        }
    }

    impl Peer for Reactive {
        fn hear(&mut self, bytes: &[u8]) {
            if self.in_data {
                self.in_data = false;
                self.reply(&["250 2.0.0 queued", "451 4.3.0 later", "552 5.3.4 too big"]);
                return;
            }
            let text = String::from_utf8_lossy(bytes).into_owned();
            for line in text.split_terminator("\r\n") {
                self.command(line);
            }
        }

        fn say(&mut self) -> Option<Vec<u8>> {
            if !std::mem::replace(&mut self.greeted, true) {
                self.reply(&["220 mx.fuzz.test ESMTP", "421 4.3.2 busy", "554 5.7.1 no service"]);
            }
            if self.queue.is_empty() {
                return None;
            }
            let n = 1 + self.rng.below(self.queue.len());
            Some(self.queue.drain(..n).collect())
        }
    }

    #[test]
    fn reactive_server() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut total = Reach::default();
        for _ in 0..4000 {
            let flags = [rng.next() as u8, rng.next() as u8];
            let mut server = Reactive::new(rng.next() | 1);
            add(&mut total, drive(flags, &mut server, 10_000));
        }
        assert_reach(total, 100);
    }

    /// A transcript that takes the client through TLS, AUTH LOGIN, a pipelined transaction
    /// with mixed recipient replies, a job with every recipient refused, one after RSET
    /// whose content is deferred, and QUIT; then damaged at random.
    #[test]
    fn mutated_good_dialogs() {
        let good: &[u8] = b"\x09\x03220 mx ESMTP\r\n250-mx\r\n250-STARTTLS\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n\
            220 go\r\n250-mx\r\n250-PIPELINING\r\n250-DSN\r\n250-8BITMIME\r\n250-SIZE 5000\r\n250 AUTH LOGIN\r\n\
            334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 ok\r\n\
            250 ok\r\n250 ok\r\n550 5.1.1 no\r\n450 4.2.1 busy\r\n354 go\r\n250 2.0.0 queued\r\n\
            250 ok\r\n550 no\r\n550 no\r\n550 no\r\n\
            250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n451 4.3.0 later\r\n221 bye\r\n";
        let r = drive([good[0], good[1]], &mut super::Bytes { chunks: good[2..].chunks(4) }, 10_000);
        let got = (r.handshakes, r.authenticated, r.bodies, r.per_recipient, r.reused);
        assert_eq!(got, (1, 3, 2, 2, 2), "{r:?}");
        let mut total = Reach::default();
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        for _ in 0..5000 {
            let mut data = good.to_vec();
            for _ in 0..rng.below(4) + 1 {
                let at = 2 + rng.below(data.len() - 2);
                match rng.below(5) {
                    0 => data[at] = rng.next() as u8,
                    1 => _ = data.remove(at),
                    2 => data.insert(at, b"\r\n-0 5"[rng.below(6)]),
                    3 => data.truncate(at),
                    _ => {
                        let from = rng.below(data.len());
                        let piece = data[from..(from + rng.below(30)).min(data.len())].to_vec();
                        data.splice(at..at, piece);
                    }
                }
                if data.len() < 3 {
                    data.extend_from_slice(b"220 x\r\n");
                }
            }
            let flags = [data[0], data[1]];
            add(&mut total, drive(flags, &mut super::Bytes { chunks: data[2..].chunks(4) }, 10_000));
            replies(&data);
        }
        assert_reach(total, 50);
    }
}

//! In-memory dialogs between the client state machine and a scripted fake server.
//!
//! Each script lists what the server says (`s`), exactly what the client writes in each
//! write (`c`), where it asks for the TLS handshake (`Tls`) and where the connection breaks
//! (`Lost`). Every dialog runs several times with the server's bytes split into reads of
//! different sizes (one octet at a time included), and must give the same result each time.

mod session;
mod transaction;

use super::{
    AuthCredentials, Client, ClientConfig, ClientEvent, DataEncoder, Failure, FailureKind, Job, JobRecipient, Outcome,
    Phase, RecipientOutcome, TlsPolicy,
};
use crate::address::{Mailbox, ReversePath, parse_path};
use crate::params::{Notify, Ret};
use crate::reply::{Enhanced, Reply};

#[derive(Debug, Clone)]
enum T {
    S(String),
    C(String),
    Tls,
    Lost,
}

fn s(x: &str) -> T {
    T::S(x.into())
}
fn c(x: &str) -> T {
    T::C(x.into())
}

const GREETING: &str = "220 mx.test ESMTP\r\n";
const BODY: &[u8] = b"Subject: hi\r\n\r\n.dot\r\nbye\r\n";
const BODY_WIRE: &str = "Subject: hi\r\n\r\n..dot\r\nbye\r\n.\r\n";

/// What a dialog produced.
#[derive(Debug, PartialEq)]
struct Run {
    outcomes: Vec<Outcome>,
    /// The phase whenever the server is about to speak, and when the content is sent.
    phases: Vec<Phase>,
    /// Jobs that `next_job` gave back.
    refused_jobs: usize,
    tls: bool,
    authenticated: bool,
}

fn mb(addr: &str) -> Mailbox {
    parse_path(&format!("<{addr}>")).unwrap()
}

fn job(rcpts: &[&str]) -> Job {
    Job::new(ReversePath::Mailbox(mb("from@a.test")), rcpts.iter().map(|r| mb(r)))
}

fn cfg() -> ClientConfig {
    ClientConfig::new("client.test")
}

fn with_credentials(mut cfg: ClientConfig) -> ClientConfig {
    cfg.credentials = Some(AuthCredentials { username: "user".into(), password: "secret".into() });
    cfg
}

/// A 250 EHLO reply listing `keywords`.
fn ehlo(keywords: &[&str]) -> String {
    let mut lines = vec!["mx.test greets client.test"];
    lines.extend_from_slice(keywords);
    Reply::plain(250, lines.iter().map(|l| l.to_string()).collect()).to_wire()
}

/// Greeting and EHLO with `keywords`.
fn hello(keywords: &[&str]) -> Vec<T> {
    vec![s(GREETING), c("EHLO client.test\r\n"), s(&ehlo(keywords))]
}

/// DATA, content, final 250, QUIT.
fn data_and_quit() -> Vec<T> {
    vec![
        c("DATA\r\n"),
        s("354 go ahead\r\n"),
        c(BODY_WIRE),
        s("250 2.0.0 queued as X\r\n"),
        c("QUIT\r\n"),
        s("221 bye\r\n"),
    ]
}

fn script(parts: &[Vec<T>]) -> Vec<T> {
    parts.concat()
}

/// Runs the dialog with reads of several sizes and checks they agree.
fn check(cfg: ClientConfig, jobs: Vec<Job>, script: &[T]) -> Run {
    let whole = run(cfg.clone(), jobs.clone(), script, usize::MAX);
    for chunk in [1, 2, 5] {
        assert_eq!(run(cfg.clone(), jobs.clone(), script, chunk), whole, "reads of {chunk} octets");
    }
    whole
}

/// Runs the dialog once, with the server's bytes delivered `chunk` octets per read.
fn run(cfg: ClientConfig, jobs: Vec<Job>, script: &[T], chunk: usize) -> Run {
    let mut jobs = jobs.into_iter();
    let mut client = Client::new(cfg, jobs.next().unwrap());
    let mut steps = script.iter();
    let mut pending: Vec<u8> = Vec::new();
    let mut input = Vec::new();
    let mut out = Run { outcomes: vec![], phases: vec![], refused_jobs: 0, tls: false, authenticated: false };
    for _ in 0..100_000 {
        match client.poll(&mut input) {
            ClientEvent::Write(bytes) => {
                let wrote = String::from_utf8_lossy(bytes).into_owned();
                match steps.next() {
                    Some(T::C(want)) => assert_eq!(&wrote, want),
                    other => panic!("client wrote {wrote:?}, script has {other:?}"),
                }
            }
            ClientEvent::NeedInput => {
                if pending.is_empty() {
                    out.phases.push(client.phase());
                    match steps.next() {
                        Some(T::S(text)) => pending = text.as_bytes().to_vec(),
                        Some(T::Lost) => {
                            client.connection_lost("connection reset");
                            continue;
                        }
                        other => panic!("client waits for input, script has {other:?}"),
                    }
                }
                let n = chunk.min(pending.len());
                input.extend(pending.drain(..n));
            }
            ClientEvent::StartTls => {
                assert!(matches!(steps.next(), Some(T::Tls)), "unexpected STARTTLS handshake");
                // A TLS layer takes over the socket: plaintext still in it never reaches SMTP.
                pending.clear();
                client.tls_established();
            }
            ClientEvent::SendBody => {
                out.phases.push(client.phase());
                let mut wire = Vec::new();
                let mut enc = DataEncoder::new();
                for piece in BODY.chunks(3) {
                    enc.encode(piece, &mut wire);
                }
                enc.finish(&mut wire);
                match steps.next() {
                    Some(T::C(want)) => assert_eq!(String::from_utf8_lossy(&wire), *want),
                    other => panic!("client sends the content, script has {other:?}"),
                }
                client.body_sent();
            }
            ClientEvent::Done(outcome) => {
                out.outcomes.push(outcome);
                out.tls = client.is_tls();
                out.authenticated = client.is_authenticated();
                match jobs.next() {
                    Some(next) => {
                        if client.next_job(next).is_err() {
                            out.refused_jobs += 1 + jobs.len();
                            jobs = Vec::new().into_iter();
                            client.finish();
                        }
                    }
                    None => client.finish(),
                }
            }
            ClientEvent::Ready => panic!("the harness always decides after Done"),
            ClientEvent::Closed => {
                let rest: Vec<_> = steps.collect();
                assert!(rest.is_empty(), "script not finished: {rest:?}");
                assert!(pending.is_empty(), "server bytes never read: {pending:?}");
                return out;
            }
        }
    }
    panic!("dialog did not end");
}

fn delivered(o: &RecipientOutcome) -> &Reply {
    match o {
        RecipientOutcome::Delivered(r) => r,
        other => panic!("expected delivery, got {other:?}"),
    }
}

fn recipients(o: &Outcome) -> &[RecipientOutcome] {
    match o {
        Outcome::Recipients(all) => all,
        other => panic!("expected per-recipient results, got {other:?}"),
    }
}

/// The whole-job failure and whether it is permanent.
fn whole(o: &Outcome) -> (&Failure, bool) {
    match o {
        Outcome::Temporary(f) => (f, false),
        Outcome::Permanent(f) => (f, true),
        other => panic!("expected a whole-job failure, got {other:?}"),
    }
}

/// Greeting, EHLO offering STARTTLS, the handshake, and EHLO again with `keywords`.
fn tls_hello(keywords: &[&str]) -> Vec<T> {
    script(&[
        hello(&["STARTTLS", "AUTH PLAIN LOGIN"]),
        vec![c("STARTTLS\r\n"), s("220 ready\r\n"), T::Tls, c("EHLO client.test\r\n"), s(&ehlo(keywords))],
    ])
}

fn simple_transaction() -> Vec<T> {
    script(&[
        vec![c("MAIL FROM:<from@a.test>\r\n"), s("250 ok\r\n"), c("RCPT TO:<a@b.test>\r\n"), s("250 ok\r\n")],
        data_and_quit(),
    ])
}

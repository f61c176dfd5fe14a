//! The client state machine through its public API, driven as the connection driver will:
//! against dakiya's own server state machine in memory (STARTTLS, AUTH, pipelining, DSN,
//! reuse), ending a session mid-job, an idle connection, answers out of turn, and keeping
//! secrets out of debug output. The scripted dialogs are unit tests in
//! `src/client/tests/`.

use dakiya_proto::address::{ForwardPath, ReversePath, parse_path};
use dakiya_proto::client::{
    AuthCredentials, Client, ClientConfig, ClientEvent, DataEncoder, FailureKind, Job, Outcome, Phase, TlsPolicy,
};
use dakiya_proto::params::Notify;
use dakiya_proto::server::SessionPolicy;
use dakiya_proto::{Enhanced, Event, Reply, Server, ServerConfig};
use std::sync::Arc;
use std::time::Duration;

const GREETING: &str = "220 mx.test ESMTP\r\n";

fn job(rcpts: &[&str]) -> Job {
    let rcpts = rcpts.iter().map(|r| parse_path(&format!("<{r}>")).unwrap());
    Job::new(ReversePath::Mailbox(parse_path("<from@a.test>").unwrap()), rcpts)
}

fn cfg() -> ClientConfig {
    ClientConfig::new("client.test")
}

fn with_credentials(mut cfg: ClientConfig) -> ClientConfig {
    cfg.credentials = Some(AuthCredentials { username: "user".into(), password: "secret".into() });
    cfg
}

fn ehlo(keywords: &[&str]) -> String {
    let mut lines = vec!["mx.test greets client.test"];
    lines.extend_from_slice(keywords);
    Reply::plain(250, lines.iter().map(|l| l.to_string()).collect()).to_wire()
}

#[test]
fn finish_during_a_job_abandons_it_without_quit() {
    let mut client = Client::new(cfg(), job(&["a@b.test"]));
    let mut input = GREETING.as_bytes().to_vec();
    assert_eq!(client.poll(&mut input), ClientEvent::Write(b"EHLO client.test\r\n"));
    assert_eq!(client.poll(&mut input), ClientEvent::NeedInput);
    client.finish();
    let ClientEvent::Done(outcome) = client.poll(&mut input) else { panic!("no outcome") };
    let Outcome::Temporary(f) = outcome else { panic!("{outcome:?}") };
    assert_eq!((f.kind, f.phase, f.status), (FailureKind::Connection, Phase::Ehlo, Enhanced(4, 4, 2)));
    assert_eq!(client.poll(&mut input), ClientEvent::Closed);
    assert_eq!(client.phase().timeout(), Duration::from_secs(300));
}

#[test]
fn an_idle_421_between_jobs_ends_reuse() {
    let mut client = Client::new(cfg(), job(&[]));
    let mut input = format!("{GREETING}{}", ehlo(&[])).into_bytes();
    assert!(matches!(client.poll(&mut input), ClientEvent::Write(_)));
    assert_eq!(client.poll(&mut input), ClientEvent::Done(Outcome::Recipients(vec![])));
    assert!(client.is_reusable());
    assert_eq!(client.poll(&mut input), ClientEvent::Ready);
    input.extend_from_slice(b"421 4.4.2 idle timeout\r\n");
    assert_eq!(client.poll(&mut input), ClientEvent::Ready);
    assert!(!client.is_reusable());
    assert!(client.next_job(job(&["a@b.test"])).is_err());
    assert!(!client.extensions().pipelining);
    assert_eq!(client.greeting().map(|g| g.code), Some(220));
}

#[test]
fn answers_out_of_turn_are_ignored() {
    let mut client = Client::new(cfg(), job(&["a@b.test"]));
    client.tls_established();
    client.body_sent();
    let mut input = Vec::new();
    assert_eq!(client.poll(&mut input), ClientEvent::NeedInput);
    assert_eq!(client.phase(), Phase::Greeting);
    assert!(client.job().is_some());
    assert!(client.next_job(job(&["b@b.test"])).is_err(), "one job at a time");
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let mut config = with_credentials(cfg());
    config.implicit_tls = true;
    let mut client = Client::new(config.clone(), job(&["a@b.test"]));
    let mut input = format!("{GREETING}{}", ehlo(&["AUTH PLAIN"])).into_bytes();
    assert_eq!(client.poll(&mut input), ClientEvent::Write(b"EHLO client.test\r\n"));
    assert_eq!(client.poll(&mut input), ClientEvent::Write(b"AUTH PLAIN AHVzZXIAc2VjcmV0\r\n"));
    // The AUTH line is still in the output buffer here.
    let shown = format!("{client:?} {config:?}");
    assert!(!shown.contains("secret") && !shown.contains("AHVzZXIAc2VjcmV0"), "{shown}");
}

/// A stored message: envelope recipients with their NOTIFY, and the content.
type Stored = (Vec<(String, Option<Notify>)>, Vec<u8>);

/// dakiya's own server state machine as the far end, answering as the binary's driver does.
struct Far {
    server: Server<()>,
    body: Vec<u8>,
    /// Envelope recipients (with their NOTIFY) and content of each message committed.
    stored: Vec<Stored>,
}

impl Far {
    fn new() -> Far {
        let cfg = ServerConfig {
            hostname: "mx.far.test".into(),
            max_message_size: 10_000,
            max_recipients: 10,
            max_errors: 5,
        };
        let policy = SessionPolicy { starttls: true, auth: true, ..SessionPolicy::default() };
        Far { server: Server::with_policy(Arc::new(cfg), policy), body: Vec::new(), stored: Vec::new() }
    }

    /// Feeds what the client wrote; returns what the server answers.
    fn exchange(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut input = bytes.to_vec();
        loop {
            match self.server.poll(&mut input) {
                Event::NeedInput | Event::StartTls | Event::Close => break,
                Event::CheckSender => self.server.sender_verdict(Ok(())),
                Event::CheckRecipient => {
                    let (path, _) = self.server.pending_recipient().unwrap();
                    let known = !matches!(path, ForwardPath::Mailbox(m) if m.local == "nobody");
                    let refusal = Reply::new(550, Enhanced(5, 1, 1), "no such user");
                    self.server.recipient_verdict(if known { Ok(()) } else { Err(refusal) });
                }
                Event::Authenticate => {
                    let ok = self.server.pending_auth().is_some_and(|c| c.password == "secret");
                    let refusal = Reply::new(535, Enhanced(5, 7, 8), "bad credentials");
                    self.server.auth_result(if ok { Ok("user".into()) } else { Err(refusal) });
                }
                Event::MessageStart => self.body.clear(),
                Event::Body(b) => self.body.extend_from_slice(b),
                Event::MessageEnd => {
                    let tx = self.server.transaction().unwrap();
                    let rcpts = tx
                        .rcpts
                        .iter()
                        .map(|r| match &r.path {
                            ForwardPath::Mailbox(m) => (m.to_string(), r.params.notify),
                            ForwardPath::Postmaster => ("postmaster".into(), r.params.notify),
                        })
                        .collect();
                    self.stored.push((rcpts, std::mem::take(&mut self.body)));
                    self.server.message_committed(Ok("Q1"));
                }
                Event::MessageAbort => self.body.clear(),
                other => panic!("server event {other:?}"),
            }
        }
        let out = self.server.output().to_vec();
        self.server.clear_output();
        out
    }
}

#[test]
fn delivers_to_dakiyas_own_server() {
    let message = b"Subject: caf\xc3\xa9\r\n\r\n.a line with a leading dot\r\nbye\r\n";
    let mut first = job(&["a@far.test", "nobody@far.test"]);
    first.size = Some(message.len() as u64);
    first.eight_bit = true;
    first.recipients[0].notify = Some(Notify { success: true, failure: true, delay: false });
    let mut too_big = job(&["a@far.test"]);
    too_big.size = Some(20_000);
    let mut jobs = vec![job(&["b@far.test"]), too_big].into_iter();

    let mut config = with_credentials(cfg());
    config.tls = TlsPolicy::Required;
    let mut client = Client::new(config, first);
    let mut far = Far::new();
    let mut input = far.exchange(b"");
    let mut outcomes = Vec::new();
    loop {
        match client.poll(&mut input) {
            ClientEvent::Write(bytes) => {
                let bytes = bytes.to_vec();
                input.extend(far.exchange(&bytes));
            }
            ClientEvent::NeedInput => panic!("the far end owes no reply: {:?}", client.phase()),
            ClientEvent::StartTls => {
                client.tls_established();
                far.server.tls_established();
            }
            ClientEvent::SendBody => {
                input.extend(far.exchange(&DataEncoder::encode_all(message)));
                client.body_sent();
            }
            ClientEvent::Done(outcome) => {
                outcomes.push(outcome);
                match jobs.next() {
                    Some(next) => client.next_job(next).unwrap(),
                    None => client.finish(),
                }
            }
            ClientEvent::Ready => panic!("undecided"),
            ClientEvent::Closed => break,
            other => panic!("unknown event {other:?}"),
        }
    }
    assert!(client.is_tls() && client.is_authenticated());
    let ext = client.extensions();
    assert!(ext.pipelining && ext.dsn && ext.eight_bit_mime && ext.smtputf8 && ext.chunking);
    assert_eq!(ext.size_limit, Some(10_000));

    let Outcome::Recipients(first) = &outcomes[0] else { panic!("{:?}", outcomes[0]) };
    assert!(first[0].is_delivered() && first[1].is_permanent());
    assert_eq!(first[1].failure().unwrap().diagnostic_code().as_deref(), Some("smtp; 550 5.1.1 no such user"));
    let Outcome::Recipients(second) = &outcomes[1] else { panic!("{:?}", outcomes[1]) };
    assert!(second[0].is_delivered());
    let Outcome::Permanent(f) = &outcomes[2] else { panic!("{:?}", outcomes[2]) };
    assert_eq!((f.kind, f.status), (FailureKind::Unsupported, Enhanced(5, 3, 4)));

    // What the far end stored: the content exactly, the DSN request passed on.
    let notify = Some(Notify { success: true, failure: true, delay: false });
    assert_eq!(far.stored.len(), 2);
    assert_eq!(far.stored[0], (vec![("a@far.test".to_string(), notify)], message.to_vec()));
    assert_eq!(far.stored[1].0, [("b@far.test".to_string(), None)]);
    assert!(far.server.is_closed(), "QUIT was sent");
}

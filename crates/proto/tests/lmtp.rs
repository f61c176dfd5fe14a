//! The client state machine in LMTP mode (RFC 2033): LHLO, no HELO fallback, and one reply
//! per accepted recipient after the content (§4.2), each recipient's result its own.

use dakiya_proto::Enhanced;
use dakiya_proto::address::{ReversePath, parse_path};
use dakiya_proto::client::{Client, ClientConfig, ClientEvent, FailureKind, Job, Outcome, Phase, RecipientOutcome};

fn job(rcpts: &[&str]) -> Job {
    let rcpts = rcpts.iter().map(|r| parse_path(&format!("<{r}>")).unwrap());
    Job::new(ReversePath::Mailbox(parse_path("<from@a.test>").unwrap()), rcpts)
}

const LHLO_REPLY: &str =
    "220 lmtp.test LMTP ready\r\n250-lmtp.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n";

/// Drives `client` to the content: the lines it writes, with the replies in `replies`.
fn to_body(client: &mut Client, input: &mut Vec<u8>) -> Vec<String> {
    let mut written = Vec::new();
    loop {
        match client.poll(input) {
            ClientEvent::Write(bytes) => written.push(String::from_utf8(bytes.to_vec()).unwrap()),
            ClientEvent::SendBody => return written,
            other => panic!("unexpected {other:?} after {written:?}"),
        }
    }
}

#[test]
fn one_reply_per_accepted_recipient() {
    let mut client = Client::new(ClientConfig::lmtp("dakiya.test"), job(&["a@x.test", "b@x.test", "c@x.test"]));
    // b is refused at RCPT; a and c get their own replies after the dot.
    let mut input =
        format!("{LHLO_REPLY}250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n250 2.1.5 ok\r\n354 go\r\n")
            .into_bytes();
    let written = to_body(&mut client, &mut input).concat();
    assert!(written.starts_with("LHLO dakiya.test\r\n"), "{written}");
    assert!(written.ends_with("DATA\r\n"), "{written}");
    client.body_sent();
    input.extend_from_slice(b"250 2.0.0 <a@x.test> saved\r\n");
    assert_eq!(client.poll(&mut input), ClientEvent::NeedInput, "c's reply is still due");
    assert_eq!(client.phase(), Phase::DataTermination);
    input.extend_from_slice(b"452 4.2.2 <c@x.test> Quota exceeded\r\n");
    let ClientEvent::Done(Outcome::Recipients(results)) = client.poll(&mut input) else { panic!("no outcome") };
    assert!(matches!(&results[0], RecipientOutcome::Delivered(r) if r.code == 250));
    assert!(matches!(&results[1], RecipientOutcome::Permanent(f) if f.status == Enhanced(5, 1, 1)));
    let RecipientOutcome::Temporary(f) = &results[2] else { panic!("{results:?}") };
    assert_eq!((f.phase, f.kind, f.status), (Phase::DataTermination, FailureKind::Refused, Enhanced(4, 2, 2)));
    // The connection is reused for the next message, without RSET.
    assert!(client.is_reusable());
    assert_eq!(client.poll(&mut input), ClientEvent::Ready);
    client.next_job(job(&["d@x.test"])).unwrap();
    let ClientEvent::Write(bytes) = client.poll(&mut input) else { panic!("no MAIL") };
    assert!(bytes.starts_with(b"MAIL FROM:<from@a.test>"), "{:?}", String::from_utf8_lossy(bytes));
}

#[test]
fn a_connection_lost_between_replies_keeps_the_replies_received() {
    let mut client = Client::new(ClientConfig::lmtp("dakiya.test"), job(&["a@x.test", "b@x.test"]));
    let mut input = format!("{LHLO_REPLY}250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n").into_bytes();
    to_body(&mut client, &mut input);
    client.body_sent();
    input.extend_from_slice(b"250 2.0.0 saved\r\n");
    assert_eq!(client.poll(&mut input), ClientEvent::NeedInput);
    client.connection_lost("connection closed by the server");
    let ClientEvent::Done(Outcome::Recipients(results)) = client.poll(&mut input) else { panic!("no outcome") };
    assert!(results[0].is_delivered(), "a's 250 stands: a retry would duplicate it");
    assert!(matches!(&results[1], RecipientOutcome::Temporary(f) if f.kind == FailureKind::Connection));
}

#[test]
fn a_refused_lhlo_has_no_helo_fallback() {
    let mut client = Client::new(ClientConfig::lmtp("dakiya.test"), job(&["a@x.test"]));
    let mut input = b"220 lmtp.test LMTP\r\n500 5.5.1 what?\r\n".to_vec();
    assert_eq!(client.poll(&mut input), ClientEvent::Write(b"LHLO dakiya.test\r\n"));
    let ClientEvent::Done(outcome) = client.poll(&mut input) else { panic!("no outcome") };
    assert!(matches!(outcome, Outcome::Permanent(_) | Outcome::Temporary(_)), "{outcome:?}");
}

#[test]
fn smtp_mode_still_says_ehlo_and_gets_one_reply() {
    let mut client = Client::new(ClientConfig::new("dakiya.test"), job(&["a@x.test", "b@x.test"]));
    let mut input =
        "220 mx\r\n250-mx\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n".as_bytes().to_vec();
    let written = to_body(&mut client, &mut input).concat();
    assert!(written.starts_with("EHLO dakiya.test\r\n"));
    client.body_sent();
    input.extend_from_slice(b"250 2.0.0 queued\r\n");
    let ClientEvent::Done(Outcome::Recipients(results)) = client.poll(&mut input) else { panic!("no outcome") };
    assert!(results.iter().all(RecipientOutcome::is_delivered));
}

//! Local delivery over LMTP (`[delivery] method = "lmtp"`) against a small scripted LMTP
//! server on loopback: each recipient's reply after the content decides its own fate
//! (RFC 2033 §4.2) — delivered, deferred on the schedule, bounced at `max_age` as 5.2.2 —
//! and the session is reused for the next message. The real Dovecot is exercised by
//! tests/interop/test_dovecot_lmtp.py.

mod common;

use common::{Env, MESSAGE, T0, closed_port};
use dakiya_queue::run;
use dakiya_spool::RcptState;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What the scripted server saw: connections, and the RCPT addresses of each transaction.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    rcpts: Mutex<Vec<Vec<String>>>,
}

/// Serves LMTP on a loopback port; `answer(rcpt)` is the reply line after the content for
/// each recipient (all RCPTs are accepted).
fn lmtp_server(answer: fn(&str) -> &'static str) -> (u16, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let shared = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            shared.connections.fetch_add(1, Ordering::SeqCst);
            let seen = shared.clone();
            std::thread::spawn(move || session(stream, answer, &seen));
        }
    });
    (port, seen)
}

fn session(stream: std::net::TcpStream, answer: fn(&str) -> &'static str, seen: &Seen) {
    let mut out = stream.try_clone().unwrap();
    let mut lines = BufReader::new(stream);
    out.write_all(b"220 lmtp.test LMTP ready\r\n").unwrap();
    let mut rcpts = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("LHLO ") {
            "250-lmtp.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n".into()
        } else if upper.starts_with("MAIL ") || upper.starts_with("RSET") {
            rcpts.clear();
            "250 2.1.0 ok\r\n".into()
        } else if upper.starts_with("RCPT TO:<") {
            rcpts.push(line[9..].split('>').next().unwrap().to_owned());
            "250 2.1.5 ok\r\n".into()
        } else if upper.starts_with("DATA") {
            out.write_all(b"354 go\r\n").unwrap();
            let mut body = String::new();
            while body != ".\r\n" {
                body.clear();
                lines.read_line(&mut body).unwrap();
            }
            seen.rcpts.lock().unwrap().push(rcpts.clone());
            rcpts.iter().map(|r| format!("{}\r\n", answer(r))).collect()
        } else if upper.starts_with("QUIT") {
            let _ = out.write_all(b"221 bye\r\n");
            return;
        } else {
            "500 what\r\n".into()
        };
        out.write_all(reply.as_bytes()).unwrap();
    }
}

fn delivery(port: u16) -> String {
    format!(
        "retry_schedule = [\"1m\"]\nmax_age = \"1h\"\ndelay_notice = \"off\"\nmethod = \"lmtp\"\nlmtp = \"inet:127.0.0.1:{port}\""
    )
}

#[tokio::test]
async fn each_recipient_follows_its_own_reply() {
    let (port, seen) = lmtp_server(|rcpt| {
        if rcpt.starts_with("bob@") { "452 4.2.2 <bob@example.test> Mailbox full" } else { "250 2.0.0 saved" }
    });
    let env = Env::new(closed_port(), &delivery(port));
    let id = env.commit("carol@elsewhere.test", &[("alice@example.test", None), ("bob@example.test", None)], MESSAGE);
    let out = run(env.ctx.clone(), id.clone(), false).await;
    assert_eq!(out.retry_at, Some(T0 + 60), "bob is retried on the schedule");
    let states = env.spool.load(&id).unwrap().states;
    assert!(matches!(states[0], RcptState::Delivered { .. }), "{states:?}");
    let RcptState::Deferred { detail, .. } = &states[1] else { panic!("{states:?}") };
    let detail = detail.as_ref().unwrap();
    assert_eq!(detail.status.to_string(), "4.2.2");
    assert_eq!(detail.diagnostic.as_deref(), Some("smtp; 452 4.2.2 <bob@example.test> Mailbox full"));
    assert!(env.mailbox("alice").is_empty(), "written by the LMTP server, not by dakiya");

    // The retry carries only bob, on the same session; past max_age he bounces with 5.2.2.
    env.set_time(T0 + 7200);
    let out = run(env.ctx.clone(), id.clone(), false).await;
    assert_eq!(out.notices.len(), 1, "a failure notice to the sender");
    assert!(!env.queued(&id));
    let transactions = seen.rcpts.lock().unwrap().clone();
    assert_eq!(transactions, [vec!["alice@example.test", "bob@example.test"], vec!["bob@example.test"]]);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1, "the session was reused");
    let notice = env.spool.load(&out.notices[0]).unwrap();
    assert_eq!(notice.envelope.recipients[0].address, "carol@elsewhere.test");
}

#[tokio::test]
async fn a_permanent_reply_bounces_at_once_and_an_unreachable_server_defers() {
    let (port, _) = lmtp_server(|rcpt| {
        if rcpt.starts_with("bob@") { "550 5.1.1 <bob@example.test> User doesn't exist" } else { "250 2.0.0 saved" }
    });
    let env = Env::new(closed_port(), &delivery(port));
    let id = env.commit("carol@elsewhere.test", &[("alice@example.test", None), ("bob@example.test", None)], MESSAGE);
    let out = run(env.ctx.clone(), id.clone(), false).await;
    assert_eq!((out.retry_at, out.notices.len()), (None, 1));
    assert!(!env.queued(&id), "alice delivered, bob failed and told");

    let env = Env::new(closed_port(), &delivery(closed_port()));
    let id = env.commit("carol@elsewhere.test", &[("alice@example.test", None)], MESSAGE);
    let out = run(env.ctx.clone(), id.clone(), false).await;
    assert_eq!(out.retry_at, Some(T0 + 60));
    let state = &env.spool.load(&id).unwrap().states[0];
    let RcptState::Deferred { detail, .. } = state else { panic!("{state:?}") };
    assert_eq!(detail.as_ref().unwrap().status.to_string(), "4.4.1");
}

#[tokio::test]
async fn a_refused_greeting_defers_never_bounces() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(b"554 5.3.2 not accepting mail\r\n");
        }
    });
    let env = Env::new(closed_port(), &delivery(port));
    let id = env.commit("carol@elsewhere.test", &[("alice@example.test", None)], MESSAGE);
    let out = run(env.ctx.clone(), id.clone(), false).await;
    assert_eq!((out.retry_at, out.notices.len()), (Some(T0 + 60), 0));
    assert!(matches!(env.spool.load(&id).unwrap().states[0], RcptState::Deferred { .. }));
}

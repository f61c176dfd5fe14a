//! Dialogs that set up the session: greeting, EHLO/HELO, STARTTLS and AUTH.

use super::*;

#[test]
fn greeting_554_is_permanent_for_the_host_and_still_quits() {
    let dialog = [s("554 5.7.1 no SMTP service here\r\n"), c("QUIT\r\n"), s("221 bye\r\n")];
    let run = check(cfg(), vec![job(&["a@b.test"]), job(&["b@b.test"])], &dialog);
    let (f, permanent) = whole(&run.outcomes[0]);
    assert!(permanent && f.phase == Phase::Greeting && f.phase.is_session_setup());
    assert_eq!(f.status, Enhanced(5, 7, 1));
    assert_eq!(run.refused_jobs, 1, "a refused session takes no further job");
}

#[test]
fn greeting_4xx_defers() {
    // 421: the server is closing; no QUIT.
    let run = check(cfg(), vec![job(&["a@b.test"])], &[s("421 4.3.2 busy\r\n")]);
    let (f, permanent) = whole(&run.outcomes[0]);
    assert_eq!((permanent, f.status, f.phase), (false, Enhanced(4, 3, 2), Phase::Greeting));
    let dialog = [s("450 try later\r\n"), c("QUIT\r\n"), s("221 bye\r\n")];
    let run = check(cfg(), vec![job(&["a@b.test"])], &dialog);
    let (f, permanent) = whole(&run.outcomes[0]);
    assert!(!permanent);
    assert_eq!((f.kind, f.status), (FailureKind::Refused, Enhanced(4, 0, 0)));
}

#[test]
fn nonsense_greetings_are_protocol_failures() {
    for greeting in ["hello there\r\n", "250 what\r\n", "220-unfinished\r\n221 other code\r\n"] {
        let run = check(cfg(), vec![job(&["a@b.test"])], &[s(greeting)]);
        let (f, permanent) = whole(&run.outcomes[0]);
        assert!(!permanent, "{greeting:?}");
        assert_eq!(f.kind, FailureKind::Protocol, "{greeting:?}");
    }
}

#[test]
fn ehlo_not_recognised_falls_back_to_helo_without_parameters() {
    for code in ["500 5.5.1 what?\r\n", "502 5.5.1 not implemented\r\n"] {
        let mut j = job(&["a@b.test"]);
        j.size = Some(100);
        j.ret = Some(Ret::Full);
        let dialog = script(&[
            vec![s(GREETING), c("EHLO client.test\r\n"), s(code), c("HELO client.test\r\n"), s("250 mx.test\r\n")],
            vec![c("MAIL FROM:<from@a.test>\r\n"), s("250 ok\r\n"), c("RCPT TO:<a@b.test>\r\n"), s("250 ok\r\n")],
            data_and_quit(),
        ]);
        let run = check(cfg(), vec![j], &dialog);
        delivered(&recipients(&run.outcomes[0])[0]);
    }
}

#[test]
fn ehlo_and_helo_refusals() {
    let helo_refused = [
        s(GREETING),
        c("EHLO client.test\r\n"),
        s("500 no\r\n"),
        c("HELO client.test\r\n"),
        s("550 5.7.1 go away\r\n"),
        c("QUIT\r\n"),
        s("221 bye\r\n"),
    ];
    let run = check(cfg(), vec![job(&["a@b.test"])], &helo_refused);
    assert!(whole(&run.outcomes[0]).1);
    for (reply, permanent, quits) in [
        ("421 4.7.0 closing\r\n", false, false),
        ("451 4.3.0 later\r\n", false, true),
        ("554 5.7.1 no\r\n", true, true),
    ] {
        let mut dialog = vec![s(GREETING), c("EHLO client.test\r\n"), s(reply)];
        if quits {
            dialog.extend([c("QUIT\r\n"), s("221 bye\r\n")]);
        }
        let run = check(cfg(), vec![job(&["a@b.test"])], &dialog);
        let (f, perm) = whole(&run.outcomes[0]);
        assert_eq!((perm, f.phase), (permanent, Phase::Ehlo), "{reply:?}");
    }
}

#[test]
fn starttls_when_offered_then_ehlo_again_forgetting_old_keywords() {
    let mut j = job(&["a@b.test", "c@b.test"]);
    j.size = Some(100);
    let dialog = script(&[
        hello(&["STARTTLS", "PIPELINING", "SIZE 10"]),
        vec![c("STARTTLS\r\n"), s("220 2.0.0 ready\r\n"), T::Tls, c("EHLO client.test\r\n"), s(&ehlo(&["8BITMIME"]))],
        // No SIZE limit, no SIZE= and no pipelining any more: only the new list counts.
        vec![c("MAIL FROM:<from@a.test>\r\n"), s("250 ok\r\n")],
        vec![c("RCPT TO:<a@b.test>\r\n"), s("250 ok\r\n"), c("RCPT TO:<c@b.test>\r\n"), s("250 ok\r\n")],
        data_and_quit(),
    ]);
    let run = check(cfg(), vec![j], &dialog);
    assert!(run.tls);
    assert!(recipients(&run.outcomes[0]).iter().all(RecipientOutcome::is_delivered));
    assert_eq!(run.phases[..4], [Phase::Greeting, Phase::Ehlo, Phase::StartTls, Phase::Ehlo]);
}

#[test]
fn opportunistic_tls_refused_continues_in_clear() {
    let dialog = script(&[
        hello(&["STARTTLS", "PIPELINING"]),
        vec![c("STARTTLS\r\n"), s("454 4.7.0 TLS not available\r\n")],
        vec![c("MAIL FROM:<from@a.test>\r\nRCPT TO:<a@b.test>\r\n"), s("250 ok\r\n250 ok\r\n")],
        data_and_quit(),
    ]);
    let run = check(cfg(), vec![job(&["a@b.test"])], &dialog);
    assert!(!run.tls);
    delivered(&recipients(&run.outcomes[0])[0]);
}

#[test]
fn tls_policy_none_never_starts_tls() {
    let mut config = cfg();
    config.tls = TlsPolicy::None;
    let dialog = script(&[
        hello(&["STARTTLS"]),
        vec![c("MAIL FROM:<from@a.test>\r\n"), s("250 ok\r\n"), c("RCPT TO:<a@b.test>\r\n"), s("250 ok\r\n")],
        data_and_quit(),
    ]);
    assert!(!check(config, vec![job(&["a@b.test"])], &dialog).tls);
}

#[test]
fn required_tls_not_offered_or_refused_is_temporary() {
    let mut config = cfg();
    config.tls = TlsPolicy::Required;
    let not_offered = script(&[hello(&["PIPELINING"]), vec![c("QUIT\r\n"), s("221 bye\r\n")]]);
    let run = check(config.clone(), vec![job(&["a@b.test"])], &not_offered);
    let (f, permanent) = whole(&run.outcomes[0]);
    assert!(!permanent);
    assert_eq!((f.phase, f.kind, f.status), (Phase::StartTls, FailureKind::Policy, Enhanced(4, 7, 5)));
    assert!(f.reason.contains("does not offer STARTTLS"), "{}", f.reason);

    let refused = script(&[
        hello(&["STARTTLS"]),
        vec![c("STARTTLS\r\n"), s("554 5.7.3 no\r\n"), c("QUIT\r\n"), s("221 bye\r\n")],
    ]);
    let run = check(config, vec![job(&["a@b.test"])], &refused);
    let (f, permanent) = whole(&run.outcomes[0]);
    assert!(!permanent, "a refused STARTTLS under a TLS-required policy is retried later");
    assert_eq!((f.kind, f.status, f.reply.as_ref().unwrap().code), (FailureKind::Policy, Enhanced(4, 7, 3), 554));
}

#[test]
fn plaintext_after_the_starttls_reply_is_discarded() {
    // Response injection: a man in the middle appends a forged EHLO reply (offering
    // PIPELINING) to the 220. It must not be taken as the answer to the EHLO sent over TLS.
    let dialog = script(&[
        hello(&["STARTTLS"]),
        vec![c("STARTTLS\r\n"), s("220 go ahead\r\n250-evil\r\n250 PIPELINING\r\n"), T::Tls],
        vec![c("EHLO client.test\r\n"), s(&ehlo(&[]))],
        vec![c("MAIL FROM:<from@a.test>\r\n"), s("250 ok\r\n"), c("RCPT TO:<a@b.test>\r\n"), s("250 ok\r\n")],
        data_and_quit(),
    ]);
    let run = run(cfg(), vec![job(&["a@b.test"])], &dialog, usize::MAX);
    delivered(&recipients(&run.outcomes[0])[0]);
}

#[test]
fn auth_plain_after_tls() {
    let dialog = script(&[
        tls_hello(&["AUTH LOGIN PLAIN"]),
        // base64("\0user\0secret")
        vec![c("AUTH PLAIN AHVzZXIAc2VjcmV0\r\n"), s("235 2.7.0 Authentication successful\r\n")],
        simple_transaction(),
    ]);
    let run = check(with_credentials(cfg()), vec![job(&["a@b.test"])], &dialog);
    assert!(run.tls && run.authenticated);
    assert!(run.phases.contains(&Phase::Auth));
}

#[test]
fn auth_login_when_plain_is_not_offered() {
    let dialog = script(&[
        tls_hello(&["AUTH=LOGIN"]),
        vec![
            c("AUTH LOGIN\r\n"),
            s("334 VXNlcm5hbWU6\r\n"),
            c("dXNlcg==\r\n"),
            s("334 UGFzc3dvcmQ6\r\n"),
            c("c2VjcmV0\r\n"),
            s("235 2.7.0 ok\r\n"),
        ],
        simple_transaction(),
    ]);
    assert!(check(with_credentials(cfg()), vec![job(&["a@b.test"])], &dialog).authenticated);
}

#[test]
fn auth_refusals() {
    // Both defer: a 535 means the operator's relay credentials are wrong, which is no reason
    // to bounce the sender's mail (see `on_auth`).
    for (reply, permanent) in [("535 5.7.8 bad credentials\r\n", false), ("454 4.7.0 try later\r\n", false)] {
        let dialog = script(&[
            tls_hello(&["AUTH PLAIN"]),
            vec![c("AUTH PLAIN AHVzZXIAc2VjcmV0\r\n"), s(reply), c("QUIT\r\n"), s("221 bye\r\n")],
        ]);
        let run = check(with_credentials(cfg()), vec![job(&["a@b.test"]), job(&["x@b.test"])], &dialog);
        let (f, perm) = whole(&run.outcomes[0]);
        assert_eq!((perm, f.phase, f.kind), (permanent, Phase::Auth, FailureKind::Refused), "{reply:?}");
        assert_eq!(run.refused_jobs, 1);
        assert!(!run.authenticated);
    }
}

#[test]
fn credentials_are_never_sent_in_clear() {
    // AUTH offered, STARTTLS not: no AUTH command at all.
    let dialog = script(&[hello(&["AUTH PLAIN LOGIN"]), vec![c("QUIT\r\n"), s("221 bye\r\n")]]);
    let run = check(with_credentials(cfg()), vec![job(&["a@b.test"])], &dialog);
    let (f, permanent) = whole(&run.outcomes[0]);
    assert_eq!((permanent, f.kind, f.status), (false, FailureKind::Policy, Enhanced(4, 7, 10)));
}

#[test]
fn credentials_without_a_usable_mechanism_defer() {
    for keywords in [&[][..], &["AUTH CRAM-MD5"][..]] {
        let dialog = script(&[tls_hello(keywords), vec![c("QUIT\r\n"), s("221 bye\r\n")]]);
        let run = check(with_credentials(cfg()), vec![job(&["a@b.test"])], &dialog);
        let (f, permanent) = whole(&run.outcomes[0]);
        assert_eq!((permanent, f.phase, f.kind), (false, Phase::Auth, FailureKind::Policy));
    }
}

#[test]
fn implicit_tls_authenticates_at_once() {
    let mut config = with_credentials(cfg());
    config.implicit_tls = true;
    config.tls = TlsPolicy::Required;
    let dialog = script(&[
        hello(&["AUTH PLAIN"]),
        vec![c("AUTH PLAIN AHVzZXIAc2VjcmV0\r\n"), s("235 ok\r\n")],
        simple_transaction(),
    ]);
    let run = check(config, vec![job(&["a@b.test"])], &dialog);
    assert!(run.tls && run.authenticated);
}

#[test]
fn an_unusable_helo_name_never_reaches_the_wire() {
    let mut config = cfg();
    config.helo_name = "client.test\r\nMAIL FROM:<x@y.test>".into();
    let run = check(config, vec![job(&["a@b.test"])], &[s(GREETING), c("QUIT\r\n"), s("221 bye\r\n")]);
    let (f, permanent) = whole(&run.outcomes[0]);
    assert_eq!((permanent, f.phase, f.status), (false, Phase::Ehlo, Enhanced(4, 3, 5)));
}

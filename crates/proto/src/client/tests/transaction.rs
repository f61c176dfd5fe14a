//! Dialogs of the mail transaction: extensions, pipelining, per-recipient results, reuse
//! and failures along the way.

use super::*;

#[test]
fn plain_delivery_one_command_at_a_time() {
    let dialog = script(&[
        hello(&["8BITMIME"]),
        vec![
            c("MAIL FROM:<from@a.test>\r\n"),
            s("250 2.1.0 ok\r\n"),
            c("RCPT TO:<a@b.test>\r\n"),
            s("250 2.1.5 ok\r\n"),
            c("RCPT TO:<c@d.test>\r\n"),
            s("251 2.1.5 will forward\r\n"),
        ],
        data_and_quit(),
    ]);
    let run = check(cfg(), vec![job(&["a@b.test", "c@d.test"])], &dialog);
    let all = recipients(&run.outcomes[0]);
    assert_eq!(all.len(), 2);
    for r in all {
        let reply = delivered(r);
        assert_eq!((reply.code, reply.enhanced), (250, Some(Enhanced(2, 0, 0))));
        assert_eq!(reply.lines, ["queued as X"]);
    }
    use Phase::*;
    assert_eq!(run.phases, [Greeting, Ehlo, Mail, Rcpt, Rcpt, DataInit, DataBlock, DataTermination, Quit]);
    let timeouts: Vec<u64> = run.phases.iter().map(|p| p.timeout().as_secs() / 60).collect();
    assert_eq!(timeouts, [5, 5, 5, 5, 5, 2, 3, 10, 5]);
    assert!(!run.tls && !run.authenticated);
}

#[test]
fn pipelining_groups_mail_and_rcpts_and_results_are_per_recipient() {
    let dialog = script(&[
        hello(&["PIPELINING", "ENHANCEDSTATUSCODES"]),
        vec![
            c("MAIL FROM:<from@a.test>\r\nRCPT TO:<a@b.test>\r\nRCPT TO:<b@b.test>\r\nRCPT TO:<c@b.test>\r\n"),
            s("250 2.1.0 ok\r\n250 2.1.5 ok\r\n450 4.2.1 mailbox busy\r\n550-5.1.1 no such\r\n550 5.1.1 user\r\n"),
        ],
        data_and_quit(),
    ]);
    let run = check(cfg(), vec![job(&["a@b.test", "b@b.test", "c@b.test"])], &dialog);
    let all = recipients(&run.outcomes[0]);
    delivered(&all[0]);
    let RecipientOutcome::Temporary(busy) = &all[1] else { panic!("{:?}", all[1]) };
    assert_eq!((busy.phase, busy.kind, busy.status), (Phase::Rcpt, FailureKind::Refused, Enhanced(4, 2, 1)));
    assert_eq!(busy.reply.as_ref().unwrap().code, 450);
    let RecipientOutcome::Permanent(gone) = &all[2] else { panic!("{:?}", all[2]) };
    assert_eq!(gone.status, Enhanced(5, 1, 1));
    assert_eq!(gone.diagnostic_code().as_deref(), Some("smtp; 550 5.1.1 no such user"));
    assert_eq!(run.phases[2], Phase::Mail, "waiting for the group's first reply");
}

#[test]
fn large_pipelined_jobs_are_written_in_groups() {
    let rcpts: Vec<String> = (0..150).map(|i| format!("r{i}@b.test")).collect();
    let rcpt_lines =
        |range: std::ops::Range<usize>| -> String { range.map(|i| format!("RCPT TO:<{}>\r\n", rcpts[i])).collect() };
    let dialog = script(&[
        hello(&["PIPELINING"]),
        vec![
            c(&format!("MAIL FROM:<from@a.test>\r\n{}", rcpt_lines(0..99))),
            s(&"250 ok\r\n".repeat(100)),
            c(&rcpt_lines(99..150)),
            s(&"250 ok\r\n".repeat(51)),
        ],
        data_and_quit(),
    ]);
    let names: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let run = run(cfg(), vec![job(&names)], &dialog, usize::MAX);
    assert_eq!(recipients(&run.outcomes[0]).iter().filter(|r| r.is_delivered()).count(), 150);
}

#[test]
fn size_limit_refuses_without_sending_and_size_is_declared() {
    let mut big = job(&["a@b.test"]);
    big.size = Some(2000);
    let mut small = job(&["a@b.test"]);
    small.size = Some(500);
    let dialog = script(&[
        hello(&["SIZE 1000"]),
        // The first job never reaches the wire; the connection serves the second one.
        vec![c("MAIL FROM:<from@a.test> SIZE=500\r\n"), s("250 ok\r\n"), c("RCPT TO:<a@b.test>\r\n"), s("250 ok\r\n")],
        data_and_quit(),
    ]);
    let run = check(cfg(), vec![big, small], &dialog);
    let (f, permanent) = whole(&run.outcomes[0]);
    assert_eq!(
        (permanent, f.kind, f.status, f.phase),
        (true, FailureKind::Unsupported, Enhanced(5, 3, 4), Phase::Mail)
    );
    assert!(f.reply.is_none() && f.reason.contains("1000"));
    delivered(&recipients(&run.outcomes[1])[0]);

    // SIZE 0 declares no limit.
    let dialog = script(&[
        hello(&["SIZE 0"]),
        vec![c("MAIL FROM:<from@a.test> SIZE=2000\r\n"), s("250 ok\r\n"), c("RCPT TO:<a@b.test>\r\n"), s("250 ok\r\n")],
        data_and_quit(),
    ]);
    let mut big = job(&["a@b.test"]);
    big.size = Some(2000);
    delivered(&recipients(&check(cfg(), vec![big], &dialog).outcomes[0])[0]);
}

#[test]
fn eight_bit_content_needs_8bitmime() {
    let mut j = job(&["a@b.test"]);
    j.eight_bit = true;
    let run = check(cfg(), vec![j.clone()], &script(&[hello(&["SMTPUTF8"]), vec![c("QUIT\r\n"), s("221 bye\r\n")]]));
    let (f, permanent) = whole(&run.outcomes[0]);
    assert_eq!((permanent, f.status), (true, Enhanced(5, 6, 3)));
    assert_eq!(f.reason, "next hop does not support 8BITMIME");

    let dialog = script(&[
        hello(&["8BITMIME"]),
        vec![
            c("MAIL FROM:<from@a.test> BODY=8BITMIME\r\n"),
            s("250 ok\r\n"),
            c("RCPT TO:<a@b.test>\r\n"),
            s("250 ok\r\n"),
        ],
        data_and_quit(),
    ]);
    delivered(&recipients(&check(cfg(), vec![j], &dialog).outcomes[0])[0]);
}

#[test]
fn utf8_addresses_need_smtputf8() {
    let j = job(&["jos\u{e9}@b.test"]);
    let run = check(cfg(), vec![j.clone()], &script(&[hello(&["8BITMIME"]), vec![c("QUIT\r\n"), s("221 bye\r\n")]]));
    let (f, permanent) = whole(&run.outcomes[0]);
    assert_eq!((permanent, f.status), (true, Enhanced(5, 6, 7)));

    let dialog = script(&[
        hello(&["SMTPUTF8", "8BITMIME"]),
        vec![
            c("MAIL FROM:<from@a.test> SMTPUTF8\r\n"),
            s("250 ok\r\n"),
            c("RCPT TO:<jos\u{e9}@b.test>\r\n"),
            s("250 ok\r\n"),
        ],
        data_and_quit(),
    ]);
    delivered(&recipients(&check(cfg(), vec![j], &dialog).outcomes[0])[0]);
}

fn dsn_job() -> Job {
    let mut j = job(&["a@b.test"]);
    j.ret = Some(Ret::Hdrs);
    j.envid = Some("abc+def".into());
    j.recipients[0].notify = Some(Notify { success: false, failure: true, delay: true });
    j.recipients[0].orcpt = Some(("rfc822".into(), "x+y@orig.test".into()));
    j
}

#[test]
fn dsn_parameters_only_when_offered() {
    let dialog = script(&[
        hello(&["DSN"]),
        vec![
            c("MAIL FROM:<from@a.test> RET=HDRS ENVID=abc+2Bdef\r\n"),
            s("250 ok\r\n"),
            c("RCPT TO:<a@b.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;x+2By@orig.test\r\n"),
            s("250 ok\r\n"),
        ],
        data_and_quit(),
    ]);
    check(cfg(), vec![dsn_job()], &dialog);
    let dialog = script(&[hello(&[]), simple_transaction()]);
    check(cfg(), vec![dsn_job()], &dialog);
}

#[test]
fn mail_refused_reads_every_pipelined_reply_and_keeps_the_connection() {
    let dialog = script(&[
        hello(&["PIPELINING"]),
        vec![
            c("MAIL FROM:<from@a.test>\r\nRCPT TO:<a@b.test>\r\nRCPT TO:<c@b.test>\r\n"),
            s("550 5.7.1 sender refused\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n"),
            // No transaction was opened, so no RSET.
            c("MAIL FROM:<from@a.test>\r\nRCPT TO:<d@b.test>\r\n"),
            s("250 ok\r\n250 ok\r\n"),
        ],
        data_and_quit(),
    ]);
    let run = check(cfg(), vec![job(&["a@b.test", "c@b.test"]), job(&["d@b.test"])], &dialog);
    let (f, permanent) = whole(&run.outcomes[0]);
    assert_eq!((permanent, f.phase, f.status), (true, Phase::Mail, Enhanced(5, 7, 1)));
    delivered(&recipients(&run.outcomes[1])[0]);
}

#[test]
fn mail_deferred_without_pipelining_sends_no_rcpt() {
    let dialog = script(&[
        hello(&[]),
        vec![c("MAIL FROM:<from@a.test>\r\n"), s("451 4.3.0 later\r\n"), c("QUIT\r\n"), s("221 bye\r\n")],
    ]);
    let run = check(cfg(), vec![job(&["a@b.test", "c@b.test"])], &dialog);
    assert!(!whole(&run.outcomes[0]).1);
}

#[test]
fn no_accepted_recipient_means_no_data_and_rset_before_the_next_job() {
    let refused_all = vec![
        c("MAIL FROM:<from@a.test>\r\nRCPT TO:<a@b.test>\r\nRCPT TO:<c@b.test>\r\n"),
        s("250 ok\r\n550 5.1.1 no\r\n450 4.2.2 full\r\n"),
    ];
    // Reused: RSET joins the next group (RFC 2920 §3.1).
    let dialog = script(&[
        hello(&["PIPELINING"]),
        refused_all.clone(),
        vec![c("RSET\r\nMAIL FROM:<from@a.test>\r\nRCPT TO:<d@b.test>\r\n"), s("250 ok\r\n250 ok\r\n250 ok\r\n")],
        data_and_quit(),
    ]);
    let run = check(cfg(), vec![job(&["a@b.test", "c@b.test"]), job(&["d@b.test"])], &dialog);
    let first = recipients(&run.outcomes[0]);
    assert!(first[0].is_permanent() && matches!(first[1], RecipientOutcome::Temporary(_)));
    delivered(&recipients(&run.outcomes[1])[0]);
    assert!(run.phases.contains(&Phase::Rset));
    // Not reused: straight to QUIT.
    let dialog = script(&[hello(&["PIPELINING"]), refused_all, vec![c("QUIT\r\n"), s("221 bye\r\n")]]);
    check(cfg(), vec![job(&["a@b.test", "c@b.test"])], &dialog);
}

#[test]
fn refused_rset_ends_reuse() {
    let dialog = script(&[
        hello(&[]),
        vec![c("MAIL FROM:<from@a.test>\r\n"), s("250 ok\r\n"), c("RCPT TO:<a@b.test>\r\n"), s("550 no\r\n")],
        vec![c("RSET\r\n"), s("502 5.5.1 no RSET here\r\n"), c("QUIT\r\n"), s("221 bye\r\n")],
    ]);
    let run = check(cfg(), vec![job(&["a@b.test"]), job(&["d@b.test"]), job(&["e@b.test"])], &dialog);
    let (f, permanent) = whole(&run.outcomes[1]);
    assert_eq!((permanent, f.phase), (false, Phase::Rset));
    assert_eq!(run.refused_jobs, 1);
}

#[test]
fn data_refusal_falls_on_accepted_recipients_only() {
    let dialog = script(&[
        hello(&["PIPELINING"]),
        vec![
            c("MAIL FROM:<from@a.test>\r\nRCPT TO:<a@b.test>\r\nRCPT TO:<c@b.test>\r\n"),
            s("250 ok\r\n250 ok\r\n550 5.1.1 no\r\n"),
            c("DATA\r\n"),
            s("451 4.3.0 not now\r\n"),
            c("QUIT\r\n"),
            s("221 bye\r\n"),
        ],
    ]);
    let run = check(cfg(), vec![job(&["a@b.test", "c@b.test"])], &dialog);
    let all = recipients(&run.outcomes[0]);
    let RecipientOutcome::Temporary(f) = &all[0] else { panic!("{:?}", all[0]) };
    assert_eq!(f.phase, Phase::DataInit);
    assert_eq!(all[1].failure().unwrap().phase, Phase::Rcpt);
}

#[test]
fn final_reply_failures() {
    for (reply, permanent) in [("552 5.3.4 too big\r\n", true), ("451 4.3.0 disk full\r\n", false)] {
        let dialog = script(&[
            hello(&[]),
            vec![c("MAIL FROM:<from@a.test>\r\n"), s("250 ok\r\n"), c("RCPT TO:<a@b.test>\r\n"), s("250 ok\r\n")],
            vec![c("DATA\r\n"), s("354 go\r\n"), c(BODY_WIRE), s(reply), c("QUIT\r\n"), s("221 bye\r\n")],
        ]);
        let run = check(cfg(), vec![job(&["a@b.test"])], &dialog);
        let (f, perm) = whole(&run.outcomes[0]);
        assert_eq!((perm, f.phase), (permanent, Phase::DataTermination));
    }
}

#[test]
fn a_421_mid_pipeline_keeps_earlier_refusals_and_defers_the_rest() {
    let dialog = script(&[
        hello(&["PIPELINING"]),
        vec![
            c("MAIL FROM:<from@a.test>\r\nRCPT TO:<a@b.test>\r\nRCPT TO:<c@b.test>\r\nRCPT TO:<d@b.test>\r\n"),
            s("250 ok\r\n550 5.1.1 no\r\n421 4.3.0 shutting down\r\n"),
        ],
    ]);
    let run = check(cfg(), vec![job(&["a@b.test", "c@b.test", "d@b.test"]), job(&["x@b.test"])], &dialog);
    let all = recipients(&run.outcomes[0]);
    assert!(all[0].is_permanent());
    for r in &all[1..] {
        let RecipientOutcome::Temporary(f) = r else { panic!("{r:?}") };
        assert_eq!(f.reply.as_ref().unwrap().code, 421);
    }
    assert_eq!(run.refused_jobs, 1);
}

#[test]
fn two_jobs_on_one_connection() {
    let dialog = script(&[
        hello(&[]),
        simple_transaction()[..6].to_vec(),
        vec![c(BODY_WIRE), s("250 ok\r\n")],
        vec![c("MAIL FROM:<from@a.test>\r\n"), s("250 ok\r\n"), c("RCPT TO:<b@b.test>\r\n"), s("250 ok\r\n")],
        data_and_quit(),
    ]);
    let run = check(cfg(), vec![job(&["a@b.test"]), job(&["b@b.test"])], &dialog);
    assert_eq!(run.outcomes.len(), 2);
    assert!(run.outcomes.iter().all(|o| recipients(o)[0].is_delivered()));
}

#[test]
fn connection_lost_while_waiting_for_the_final_reply() {
    let dialog = script(&[
        hello(&[]),
        vec![c("MAIL FROM:<from@a.test>\r\n"), s("250 ok\r\n"), c("RCPT TO:<a@b.test>\r\n"), s("250 ok\r\n")],
        vec![c("DATA\r\n"), s("354 go\r\n"), c(BODY_WIRE), T::Lost],
    ]);
    let run = check(cfg(), vec![job(&["a@b.test"]), job(&["b@b.test"])], &dialog);
    let (f, permanent) = whole(&run.outcomes[0]);
    assert_eq!(
        (permanent, f.kind, f.phase, f.status),
        (false, FailureKind::Connection, Phase::DataTermination, Enhanced(4, 4, 2))
    );
    assert_eq!(f.reason, "connection reset");
    assert_eq!(run.refused_jobs, 1);
}

#[test]
fn lone_lf_and_multi_line_replies_are_read() {
    let dialog = script(&[
        vec![s("220-mx.test\n220 ESMTP\n"), c("EHLO client.test\r\n"), s("250-mx.test\n250 PIPELINING\n")],
        vec![
            c("MAIL FROM:<from@a.test>\r\nRCPT TO:<a@b.test>\r\nRCPT TO:<c@b.test>\r\n"),
            s("250 ok\n250 ok\n550-5.1.1 first\n550 5.1.1 second\n"),
        ],
        vec![c("DATA\r\n"), s("354 go\n"), c(BODY_WIRE), s("250 ok\n"), c("QUIT\r\n"), s("221 bye\n")],
    ]);
    let run = check(cfg(), vec![job(&["a@b.test", "c@b.test"])], &dialog);
    let all = recipients(&run.outcomes[0]);
    assert_eq!(all[1].failure().unwrap().diagnostic_code().as_deref(), Some("smtp; 550 5.1.1 first second"));
}

#[test]
fn out_of_step_replies_give_up_the_connection() {
    for (reply, kind) in [("354 go ahead\r\n", FailureKind::Protocol), ("25O ok\r\n", FailureKind::Protocol)] {
        let dialog = script(&[hello(&[]), vec![c("MAIL FROM:<from@a.test>\r\n"), s(reply)]]);
        let run = check(cfg(), vec![job(&["a@b.test"]), job(&["b@b.test"])], &dialog);
        let (f, permanent) = whole(&run.outcomes[0]);
        assert_eq!((permanent, f.kind, f.phase), (false, kind, Phase::Mail), "{reply:?}");
        assert_eq!(run.refused_jobs, 1, "no reuse and no QUIT after {reply:?}");
    }
}

#[test]
fn an_extra_reply_makes_the_connection_unusable() {
    // The surplus reply is still in the buffer and answers the QUIT.
    let dialog = script(&[
        hello(&[]),
        vec![c("MAIL FROM:<from@a.test>\r\n"), s("250 ok\r\n"), c("RCPT TO:<a@b.test>\r\n"), s("250 ok\r\n")],
        vec![c("DATA\r\n"), s("354 go\r\n"), c(BODY_WIRE), s("250 ok\r\n250 surplus\r\n"), c("QUIT\r\n")],
    ]);
    let run = run(cfg(), vec![job(&["a@b.test"]), job(&["b@b.test"])], &dialog, usize::MAX);
    assert_eq!(run.refused_jobs, 1);
}

#[test]
fn empty_and_unwritable_recipients() {
    let dialog = script(&[hello(&[]), vec![c("QUIT\r\n"), s("221 bye\r\n")]]);
    let run = check(cfg(), vec![job(&[])], &dialog);
    assert_eq!(run.outcomes, [Outcome::Recipients(vec![])]);

    let mut j = job(&["a@b.test"]);
    let evil = Mailbox { local: "x\r\nRSET".into(), domain: "b.test".into() };
    j.recipients.insert(0, JobRecipient::new(evil));
    let dialog = script(&[hello(&[]), simple_transaction()]);
    let run = check(cfg(), vec![j], &dialog);
    let all = recipients(&run.outcomes[0]);
    assert_eq!(all[0].failure().unwrap().status, Enhanced(5, 1, 3));
    delivered(&all[1]);
}

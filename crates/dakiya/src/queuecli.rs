//! `dakiya queue list|show|stats|retry|hold|release|delete`: look at and manage the queue of
//! a running server through its control socket (the wire format, the views and the stats are
//! `dakiya_control`'s; see docs/queue-cli.md). With `--json`, every command prints the
//! server's response line as is: one JSON object.
//!
//! Exit status: 0 done; 1 the server refused (its error is printed) or talking to it failed;
//! 2 a usage error (such as a malformed queue id); 3 the server is not running.

use crate::queuestats::format_stats;
use crate::termtext::{clean, clean_keep_tabs, plural};
use dakiya_control::{ControlOp, MAX_HEADERS, MessageView, RcptView, Request, Response, SOCKET_NAME, StateName};
use dakiya_spool::QueueId;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// How long to wait for the server's answer (a large queue takes a while to list).
const TIMEOUT: Duration = Duration::from_secs(90);

/// What to do with the queue.
#[derive(clap::Subcommand, Debug)]
pub enum QueueCmd {
    /// List the queued messages with each recipient's state, next attempt and last error.
    List {
        /// Print the server's JSON response instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one message: envelope, DSN parameters, recipients and header section.
    Show {
        /// The queue id (16 hex digits).
        id: String,
        /// Print the server's JSON response instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The queue's shape: waiting messages and recipients by destination domain, message age
    /// and state (like Postfix's qshape).
    Stats {
        /// List at most N domains, those with the most messages (0: all of them).
        #[arg(long, value_name = "N", default_value_t = 20)]
        top: u32,
        /// Print the server's JSON response instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Try to deliver a message (or every message) now instead of at its next scheduled time.
    Retry {
        /// The queue id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Retry every queued message (held messages stay held).
        #[arg(long)]
        all: bool,
        /// Print the server's JSON response instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stop delivering a message until it is released (survives restarts).
    Hold {
        /// The queue id.
        id: String,
        /// Print the server's JSON response instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Release a held message and deliver it now.
    Release {
        /// The queue id.
        id: String,
        /// Print the server's JSON response instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove a message from the queue without delivering it and without telling the sender.
    Delete {
        /// The queue id.
        id: String,
        /// Print the server's JSON response instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Why a command did not succeed; each maps to an exit status.
#[derive(Debug)]
pub enum Failure {
    /// The server answered `ok: false`, or the exchange failed.
    Failed(String),
    /// The command line was wrong.
    Usage(String),
    /// No server is listening.
    NotRunning(String),
}

/// Runs a `dakiya queue` command against the server whose data directory is `data_dir`.
pub fn run(cmd: QueueCmd, data_dir: &Path) -> ExitCode {
    let socket = data_dir.join(SOCKET_NAME);
    finish(execute(cmd, &socket))
}

/// Prints what a command returned, or its failure, and gives the exit status.
pub fn finish(result: Result<String, Failure>) -> ExitCode {
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(f) => report(f),
    }
}

/// Prints why a command failed and returns its exit status.
pub(crate) fn report(failure: Failure) -> ExitCode {
    match failure {
        Failure::Failed(e) => {
            eprintln!("dakiya: {e}");
            ExitCode::FAILURE
        }
        Failure::Usage(e) => {
            eprintln!("dakiya: {e}");
            ExitCode::from(2)
        }
        Failure::NotRunning(e) => {
            eprintln!("dakiya: {e}");
            ExitCode::from(3)
        }
    }
}

/// Carries out `cmd` and returns what to print.
fn execute(cmd: QueueCmd, socket: &Path) -> Result<String, Failure> {
    let (request, json) = request_for(cmd)?;
    let (line, response) = exchange(socket, &request)?;
    if !response.ok {
        return Err(Failure::Failed(response.error.unwrap_or_else(|| "the server refused the request".into())));
    }
    if json {
        return Ok(format!("{line}\n"));
    }
    let now = response.now.unwrap_or_else(crate::envelope::now);
    Ok(match (&request, response.messages, response.message, response.stats) {
        (Request::List, Some(messages), ..) => format_list(&messages, now),
        (Request::Show(_), _, Some(message), _) => format_show(&message, now),
        (Request::Stats(_), .., Some(stats)) => format_stats(&stats),
        (Request::Control(op), ..) => format_done(op, response.affected.unwrap_or(0)),
        _ => return Err(Failure::Failed("unexpected response from the server".into())),
    })
}

/// The request for `cmd`, and whether to print the raw JSON response.
fn request_for(cmd: QueueCmd) -> Result<(Request, bool), Failure> {
    Ok(match cmd {
        QueueCmd::List { json } => (Request::List, json),
        QueueCmd::Show { id, json } => (Request::Show(queue_id(&id)?), json),
        // 0 is "no limit" on the command line; the request says so by leaving `top` out.
        QueueCmd::Stats { top, json } => (Request::Stats(Some(top).filter(|&n| n > 0)), json),
        QueueCmd::Retry { id: None, json, .. } => (Request::Control(ControlOp::Retry(None)), json),
        QueueCmd::Retry { id: Some(id), json, .. } => (Request::Control(ControlOp::Retry(Some(queue_id(&id)?))), json),
        QueueCmd::Hold { id, json } => (Request::Control(ControlOp::Hold(queue_id(&id)?)), json),
        QueueCmd::Release { id, json } => (Request::Control(ControlOp::Release(queue_id(&id)?)), json),
        QueueCmd::Delete { id, json } => (Request::Control(ControlOp::Delete(queue_id(&id)?)), json),
    })
}

/// A queue id from the command line; lowercase is accepted for convenience.
fn queue_id(text: &str) -> Result<QueueId, Failure> {
    text.to_ascii_uppercase()
        .parse()
        .map_err(|_| Failure::Usage(format!("{:?} is not a queue id (16 hex digits)", clean(text))))
}

/// Sends `request` and reads the response: the raw line and its parsed form.
pub fn exchange(socket: &Path, request: &Request) -> Result<(String, Response), Failure> {
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Failure::NotRunning(format!("dakiya is not running (no control socket at {})", socket.display()))
        }
        std::io::ErrorKind::ConnectionRefused => Failure::NotRunning(format!(
            "dakiya is not running (nothing is listening on the control socket at {})",
            socket.display()
        )),
        std::io::ErrorKind::PermissionDenied => Failure::Failed(format!(
            "cannot connect to {}: permission denied (run this as the user dakiya runs as)",
            socket.display()
        )),
        _ => Failure::Failed(format!("cannot connect to {}: {e}", socket.display())),
    })?;
    let failed = |e: std::io::Error| Failure::Failed(format!("talking to the server at {}: {e}", socket.display()));
    stream.set_read_timeout(Some(TIMEOUT)).map_err(failed)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(failed)?;
    stream.write_all(format!("{}\n", request.encode()).as_bytes()).map_err(failed)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(failed)?;
    let line = line.trim_end().to_string();
    if line.is_empty() {
        // The server closes without answering a user other than its own.
        return Err(Failure::Failed(format!(
            "the server at {} closed the connection without answering (run this as the user dakiya runs as)",
            socket.display()
        )));
    }
    let response = Response::parse(line.as_bytes())
        .map_err(|e| Failure::Failed(format!("unreadable response from the server: {e}")))?;
    Ok((line, response))
}

/// The confirmation printed after a queue operation.
fn format_done(op: &ControlOp, affected: usize) -> String {
    match op {
        ControlOp::Retry(None) => format!("{affected} {} scheduled for delivery now\n", plural(affected, "message")),
        ControlOp::Retry(Some(id)) => format!("{id}: scheduled for delivery now\n"),
        ControlOp::Hold(id) => format!("{id}: held\n"),
        ControlOp::Release(id) => format!("{id}: released\n"),
        ControlOp::Delete(id) => format!("{id}: deleted\n"),
    }
}

/// The queue as a table: one line per message, then one per recipient with its state and
/// next attempt, and the last error under it.
pub fn format_list(messages: &[MessageView], now: u64) -> String {
    if messages.is_empty() {
        return "The queue is empty.\n".into();
    }
    let mut out = format!("{:<16} {:>5} {:>6}  {}\n", "QUEUE ID", "AGE", "SIZE", "SENDER");
    let (mut total, mut waiting, mut held) = (0, 0, 0);
    for m in messages {
        total += m.size;
        held += usize::from(m.held);
        let mark = if m.held { "  (held)" } else { "" };
        let _ = writeln!(out, "{:<16} {:>5} {:>6}  {}{mark}", m.id, span(m.age), size(m.size), sender(&m.sender));
        for r in &m.recipients {
            waiting += usize::from(matches!(r.state, StateName::Pending | StateName::Deferred));
            let _ = writeln!(out, "    {:<10} {:<8} {}", state_name(r.state), next(r, m.held, now), clean(&r.address));
            if let Some(error) = &r.error {
                let _ = writeln!(out, "    {:<10} {:<8} {}", "", "", clean(&last_error(r, error)));
            }
        }
    }
    let _ = write!(out, "-- {} {}, {}", messages.len(), plural(messages.len(), "message"), size(total));
    let _ = write!(out, ", {waiting} {} waiting", plural(waiting, "recipient"));
    if held > 0 {
        let _ = write!(out, ", {held} held");
    }
    out.push('\n');
    out
}

/// One message in detail.
pub fn format_show(m: &MessageView, now: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Queue ID:    {}", m.id);
    let _ = writeln!(out, "Received:    {} ({} ago)", time(m.received_at), span(m.age));
    let _ = writeln!(out, "Sender:      {}", sender(&m.sender));
    if let Some(d) = &m.detail {
        let _ = writeln!(out, "Client:      {} (HELO {})", clean(&d.client_ip), clean(&d.helo));
        let body = d.body.keyword();
        let utf8 = if d.smtputf8 { ", SMTPUTF8" } else { "" };
        let _ = writeln!(out, "Size:        {} bytes (BODY={body}{utf8})", m.size);
        let ret = d.dsn_ret.map(|r| format!("RET={}", r.keyword()));
        let envid = d.dsn_envid.as_ref().map(|e| format!("ENVID={}", clean(e)));
        let dsn: Vec<String> = ret.into_iter().chain(envid).collect();
        let _ = writeln!(out, "DSN:         {}", if dsn.is_empty() { "-".into() } else { dsn.join(" ") });
    } else {
        let _ = writeln!(out, "Size:        {} bytes", m.size);
    }
    let held = if m.held { format!("yes (`dakiya queue release {}` to deliver it)", m.id) } else { "no".into() };
    let _ = writeln!(out, "Held:        {held}");
    out.push_str("\nRecipients:\n");
    for r in &m.recipients {
        format_rcpt(&mut out, r, m.held, now);
    }
    if let Some(d) = &m.detail {
        out.push_str("\nHeaders:\n");
        for line in d.headers.lines() {
            let _ = writeln!(out, "{}", clean_keep_tabs(line));
        }
        if d.headers_truncated {
            let _ = writeln!(out, "[header section longer than {} KiB; cut]", MAX_HEADERS / 1024);
        }
    }
    out
}

fn format_rcpt(out: &mut String, r: &RcptView, held: bool, now: u64) {
    let _ = writeln!(out, "  {:<10} {}", state_name(r.state), clean(&r.address));
    let indent = " ".repeat(13);
    if let Some(d) = &r.detail {
        let route = d.mailbox.as_ref().map_or("remote".to_string(), |mb| format!("local mailbox {}", clean(mb)));
        let _ = writeln!(out, "{indent}RCPT TO:<{}>, {route}", clean(&d.original));
        let mut dsn = Vec::new();
        if let Some(notify) = d.notify {
            dsn.push(format!("NOTIFY={notify}"));
        }
        if let Some(orcpt) = &d.orcpt {
            dsn.push(format!("ORCPT={}", clean(orcpt)));
        }
        if !dsn.is_empty() {
            let _ = writeln!(out, "{indent}{}", dsn.join(" "));
        }
    }
    match r.state {
        StateName::Pending | StateName::Deferred => {
            let _ = writeln!(out, "{indent}next attempt: {}", next(r, held, now));
        }
        StateName::Delivered | StateName::Failed => {
            if let Some(at) = r.at {
                let _ = writeln!(out, "{indent}at {}", time(at));
            }
        }
    }
    if let Some(error) = &r.error {
        let _ = writeln!(out, "{indent}{}", clean(&last_error(r, error)));
    }
    if let Some(f) = r.detail.as_ref().and_then(|d| d.failure.as_ref()) {
        let mut parts = vec![format!("status {}", f.status)];
        if let Some(mta) = &f.remote_mta {
            parts.push(format!("remote MTA {}", clean(mta)));
        }
        if let Some(diag) = &f.diagnostic {
            parts.push(format!("diagnostic \"{}\"", clean(diag)));
        }
        let _ = writeln!(out, "{indent}{}", parts.join(", "));
    }
}

fn state_name(s: StateName) -> &'static str {
    match s {
        StateName::Pending => "pending",
        StateName::Deferred => "deferred",
        StateName::Delivered => "delivered",
        StateName::Failed => "failed",
    }
}

/// When a recipient is tried next: `now`, `in 5m`, `held`, or `-` when it is done.
fn next(r: &RcptView, held: bool, now: u64) -> String {
    match r.state {
        StateName::Delivered | StateName::Failed => "-".into(),
        _ if held => "held".into(),
        StateName::Pending => "now".into(),
        StateName::Deferred => match r.next_attempt {
            Some(t) if t > now => format!("in {}", span(t - now)),
            _ => "now".into(),
        },
    }
}

fn last_error(r: &RcptView, error: &str) -> String {
    match (r.state, r.attempts) {
        (StateName::Deferred, Some(n)) => format!("last error ({n} {}): {error}", plural(n as usize, "attempt")),
        _ => format!("error: {error}"),
    }
}

/// A duration in its largest whole unit: `42s`, `3m`, `2h`, `5d`.
pub fn span(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// A size in bytes, or in K/M/G with one decimal.
fn size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")];
    match UNITS.iter().find(|(n, _)| bytes >= *n) {
        Some((n, unit)) => format!("{:.1}{unit}", bytes as f64 / *n as f64),
        None => bytes.to_string(),
    }
}

fn time(secs: u64) -> String {
    let t = i64::try_from(secs).ok().and_then(|s| chrono::DateTime::from_timestamp(s, 0));
    t.map_or_else(|| secs.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

fn sender(s: &str) -> String {
    format!("<{}>", clean(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dakiya_control::message_view;
    use dakiya_control::testdata::sample;
    use dakiya_spool::RcptState;

    #[test]
    fn list_is_a_table_with_states_next_attempts_and_errors() {
        let mut held = sample();
        held.envelope.id = "0655E5A000000002".parse().unwrap();
        held.envelope.sender = String::new();
        held.envelope.received_at = 0;
        held.held = true;
        let messages = [message_view(&sample(), 1_200, None), message_view(&held, 1_200, None)];
        let want = "\
QUEUE ID           AGE   SIZE  SENDER
0655E5A000000001    3m   2.0K  <a@remote.test>
    delivered  -        alice@example.test
    deferred   in 11m   bob@elsewhere.test
                        last error (2 attempts): 451 4.4.1 connection refused
    pending    now      carol@elsewhere.test
0655E5A000000002   20m   2.0K  <>  (held)
    delivered  -        alice@example.test
    deferred   held     bob@elsewhere.test
                        last error (2 attempts): 451 4.4.1 connection refused
    pending    held     carol@elsewhere.test
-- 2 messages, 4.0K, 4 recipients waiting, 1 held
";
        assert_eq!(format_list(&messages, 1_200), want);
        assert_eq!(format_list(&[], 1_200), "The queue is empty.\n");
    }

    #[test]
    fn overdue_and_failed_recipients() {
        let mut m = sample();
        m.states[0] =
            RcptState::Failed { at: 1_100, error: "550 5.1.1 no such user".into(), detail: None, notified: true };
        m.states.truncate(2);
        m.envelope.recipients.truncate(2);
        let out = format_list(&[message_view(&m, 5_000, None)], 5_000);
        assert!(out.contains("    failed     -        alice@example.test\n"), "{out}");
        assert!(out.contains("\n                        error: 550 5.1.1 no such user\n"), "{out}");
        // Past its next attempt: due now (the scheduler is about to try).
        assert!(out.contains("    deferred   now      bob@elsewhere.test\n"), "{out}");
        assert!(out.ends_with("-- 1 message, 2.0K, 1 recipient waiting\n"), "{out}");
    }

    #[test]
    fn show_prints_envelope_recipients_and_headers() {
        let headers = "Received: from client.test\n\tby mx.example.test\nSubject: hi \u{1b}[31mred\n".to_string();
        let out = format_show(&message_view(&sample(), 1_200, Some((headers, false))), 1_200);
        for want in [
            "Queue ID:    0655E5A000000001\n",
            "Received:    1970-01-01 00:16:40 UTC (3m ago)\n",
            "Sender:      <a@remote.test>\n",
            "Client:      192.0.2.1 (HELO client.test)\n",
            "Size:        2048 bytes (BODY=8BITMIME)\n",
            "DSN:         RET=HDRS ENVID=env-1\n",
            "Held:        no\n",
            "  delivered  alice@example.test\n",
            "             RCPT TO:<ALICE@EXAMPLE.TEST>, local mailbox example.test/alice\n",
            "             NOTIFY=FAILURE\n             at 1970-01-01 00:16:41 UTC\n",
            "  deferred   bob@elsewhere.test\n             RCPT TO:<BOB@ELSEWHERE.TEST>, remote\n",
            "             next attempt: in 11m\n             last error (2 attempts): 451 4.4.1 connection refused\n",
            "             status 4.4.1\n",
            "Headers:\nReceived: from client.test\n\tby mx.example.test\nSubject: hi \\u{1b}[31mred\n",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }

    #[test]
    fn spans_and_sizes() {
        let spans: Vec<String> = [0, 59, 60, 3599, 3600, 86_399, 86_400, 10 * 86_400].into_iter().map(span).collect();
        assert_eq!(spans, ["0s", "59s", "1m", "59m", "1h", "23h", "1d", "10d"]);
        let sizes: Vec<String> = [0, 1023, 1024, 1536, 5 << 20, 3 << 30].into_iter().map(size).collect();
        assert_eq!(sizes, ["0", "1023", "1.0K", "1.5K", "5.0M", "3.0G"]);
    }

    #[test]
    fn every_command_takes_json_and_stats_takes_top() {
        #[derive(clap::Parser)]
        struct Args {
            #[command(subcommand)]
            cmd: QueueCmd,
        }
        let request = |args: &[&str]| {
            let args = <Args as clap::Parser>::try_parse_from(["queue"].iter().chain(args)).unwrap();
            request_for(args.cmd).unwrap()
        };
        const ID: &str = "0655E5A000000001";
        let id = || ID.parse::<QueueId>().unwrap();
        assert_eq!(request(&["stats"]), (Request::Stats(Some(20)), false));
        assert_eq!(request(&["stats", "--top", "3", "--json"]), (Request::Stats(Some(3)), true));
        assert_eq!(request(&["stats", "--top", "0"]), (Request::Stats(None), false));
        assert_eq!(request(&["list", "--json"]), (Request::List, true));
        assert_eq!(request(&["show", ID, "--json"]), (Request::Show(id()), true));
        assert_eq!(request(&["retry", "--all", "--json"]), (Request::Control(ControlOp::Retry(None)), true));
        assert_eq!(request(&["retry", ID, "--json"]), (Request::Control(ControlOp::Retry(Some(id()))), true));
        assert_eq!(request(&["hold", ID, "--json"]), (Request::Control(ControlOp::Hold(id())), true));
        assert_eq!(request(&["release", ID, "--json"]), (Request::Control(ControlOp::Release(id())), true));
        assert_eq!(request(&["delete", ID, "--json"]), (Request::Control(ControlOp::Delete(id())), true));
        assert_eq!(request(&["delete", ID]), (Request::Control(ControlOp::Delete(id())), false));
    }

    #[test]
    fn ids_from_the_command_line() {
        assert_eq!(queue_id("0655e5a000000001").unwrap().as_str(), "0655E5A000000001");
        assert!(matches!(queue_id("../../etc"), Err(Failure::Usage(_))));
        let done = format_done(&ControlOp::Retry(None), 1);
        assert_eq!(done, "1 message scheduled for delivery now\n");
    }
}

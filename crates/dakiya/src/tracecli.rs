//! `dakiya trace`: the whole history of a message (or of every message to or from an
//! address) in one view, read from the history files in the data directory, so it works
//! with the server stopped and for messages long gone from the queue (docs/history.md).

use crate::termtext::clean;
use dakiya_history::query::{Query, Trace};
use dakiya_history::{AttemptState, Event, Record};
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

/// `dakiya trace`'s arguments.
#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    /// A queue ID (16 hex digits), a Message-ID (with or without <>) or an address (the
    /// sender or a recipient).
    pub query: String,
    /// Only events this recent, e.g. 2h or 3d (default: all the history kept).
    #[arg(long)]
    pub since: Option<String>,
    /// Print JSON for scripts: {"messages": [...], "skipped_lines": N}.
    #[arg(long)]
    pub json: bool,
}

/// Runs `dakiya trace` on the history in `data_dir`: 0 when something matched, 1 when
/// nothing did, 2 for a bad argument.
pub fn run(args: &TraceArgs, data_dir: &Path) -> ExitCode {
    let since = match args.since.as_deref().map(dakiya_config::parse_duration) {
        None => 0,
        Some(Some(d)) => now().saturating_sub(d.as_secs()),
        Some(None) => {
            eprintln!("dakiya: --since {:?} is not a duration (e.g. 30m, 2h, 7d)", args.since.as_deref().unwrap_or(""));
            return ExitCode::from(2);
        }
    };
    let dir = data_dir.join("history");
    let read = match dakiya_history::read::read_dir(&dir, since) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("dakiya: cannot read the message history in {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    let traces = dakiya_history::find(&read.records, &Query::parse(&args.query));
    if traces.is_empty() {
        eprintln!("dakiya: no message in the history matches {}", clean(&args.query));
        return ExitCode::FAILURE;
    }
    if args.json {
        let out = serde_json::json!({ "messages": traces, "skipped_lines": read.skipped });
        println!("{out}");
    } else {
        print!("{}", format_traces(&traces));
        if read.skipped > 0 {
            eprintln!("dakiya: skipped {} damaged line(s) in {}", read.skipped, dir.display());
        }
    }
    ExitCode::SUCCESS
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The traces as text for the terminal; every outside string goes through [`clean`].
pub fn format_traces(traces: &[Trace]) -> String {
    let mut out = String::new();
    for (n, t) in traces.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        format_trace(&mut out, t, "message", "");
    }
    out
}

fn format_trace(out: &mut String, t: &Trace, what: &str, indent: &str) {
    let _ = writeln!(out, "{indent}{what} {}: {}", clean(&t.id), final_state(t));
    for r in &t.events {
        let _ = writeln!(out, "{indent}  {}  {}", time(r.t), describe(r));
    }
    for n in &t.notices {
        format_trace(out, n, "notice", &format!("{indent}    "));
    }
}

/// How the message stands: its final state, or still queued.
fn final_state(t: &Trace) -> String {
    t.events
        .iter()
        .rev()
        .find_map(|r| match &r.event {
            Event::Done { state } => Some(format!("{state:?}").to_lowercase()),
            _ => None,
        })
        .unwrap_or_else(|| "still queued (or its end is not in the history)".into())
}

/// One event on one line.
fn describe(r: &Record) -> String {
    let opt =
        |label: &str, v: &Option<String>| v.as_ref().map(|v| format!(" {label} {}", clean(v))).unwrap_or_default();
    match &r.event {
        Event::Received(rx) => {
            let from = if rx.client.is_empty() { String::new() } else { format!(" from {}", clean(&rx.client)) };
            let rcpts: Vec<String> = rx.rcpts.iter().map(|a| clean(a)).collect();
            let more = if rx.nrcpt > rx.rcpts.len() {
                format!(" (+{} more)", rx.nrcpt - rx.rcpts.len())
            } else {
                String::new()
            };
            format!(
                "received{from}{} helo {} via {}{}{}: <{}> -> {}{more}, {} bytes{}",
                opt("name", &rx.client_name),
                clean(&rx.helo),
                clean(&rx.listener),
                opt("tls", &rx.tls),
                opt("user", &rx.user),
                clean(&rx.sender),
                rcpts.join(", "),
                rx.size,
                opt("message-id", &rx.message_id),
            )
        }
        Event::Checks { results } => {
            let r: Vec<String> = results.iter().map(|v| format!("{}={}", clean(&v.method), clean(&v.result))).collect();
            format!("checks {}", r.join(" "))
        }
        Event::Attempt(a) => {
            let how = if a.local { "local".to_string() } else { "remote".to_string() };
            let state = match (a.state, a.until) {
                (AttemptState::Delivered, _) => "delivered".to_string(),
                (AttemptState::Deferred, Some(t)) => format!("deferred until {}", time(t)),
                (AttemptState::Deferred, None) => "deferred".to_string(),
                (AttemptState::Failed, _) => "failed".to_string(),
            };
            let reply = a.reply.as_ref().map(|r| format!(": {}", clean(r))).unwrap_or_default();
            format!("attempt {} {how}{}{}: {state}{reply}", clean(&a.rcpt), opt("via", &a.hop), opt("tls", &a.tls))
        }
        Event::Notice { notice, kind } => {
            format!("notice {} sent: {}", format!("{kind:?}").to_lowercase(), clean(notice))
        }
        Event::Operator { action } => format!("operator {}", clean(action)),
        Event::Done { state } => format!("left the queue: {}", format!("{state:?}").to_lowercase()),
    }
}

fn time(secs: u64) -> String {
    let t = i64::try_from(secs).ok().and_then(|s| chrono::DateTime::from_timestamp(s, 0));
    t.map_or_else(|| secs.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dakiya_history::{Attempt, Final, NoticeKind, Received};

    fn rec(t: u64, id: &str, event: Event) -> Record {
        Record { t, id: id.into(), event }
    }

    #[test]
    fn a_trace_as_text_with_its_notice_and_escaped_outside_text() {
        let rx = Received {
            client: "127.0.0.1".into(),
            helo: "evil\u{1b}[2J".into(),
            sender: "a@b.example".into(),
            rcpts: vec!["c@d.example".into()],
            nrcpt: 3,
            size: 10,
            listener: "mx 127.0.0.1:25".into(),
            message_id: Some("<m@b.example>".into()),
            ..Received::default()
        };
        let attempt = Attempt {
            rcpt: "c@d.example".into(),
            local: false,
            hop: Some("mx.d.example [192.0.2.1]".into()),
            tls: None,
            reply: Some("smtp; 550 5.1.1 no".into()),
            state: AttemptState::Failed,
            until: None,
        };
        let notice = Trace {
            id: "00000000000000BB".into(),
            events: vec![rec(3, "00000000000000BB", Event::Done { state: Final::Delivered })],
            notices: vec![],
        };
        let t = Trace {
            id: "00000000000000AA".into(),
            events: vec![
                rec(0, "00000000000000AA", Event::Received(rx)),
                rec(1, "00000000000000AA", Event::Attempt(attempt)),
                rec(
                    2,
                    "00000000000000AA",
                    Event::Notice { notice: "00000000000000BB".into(), kind: NoticeKind::Failure },
                ),
                rec(3, "00000000000000AA", Event::Done { state: Final::Bounced }),
            ],
            notices: vec![notice],
        };
        let text = format_traces(&[t]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "message 00000000000000AA: bounced");
        assert!(
            lines[1].contains("helo evil\\u{1b}[2J via mx 127.0.0.1:25") && lines[1].contains("(+2 more)"),
            "{text}"
        );
        assert!(lines[1].ends_with("10 bytes message-id <m@b.example>"), "{text}");
        assert_eq!(
            lines[2],
            "  1970-01-01 00:00:01  attempt c@d.example remote via mx.d.example [192.0.2.1]: failed: smtp; 550 5.1.1 no"
        );
        assert!(lines[3].ends_with("notice failure sent: 00000000000000BB"));
        assert!(lines[4].ends_with("left the queue: bounced"));
        assert_eq!(lines[5], "    notice 00000000000000BB: delivered");
        assert!(!text.contains('\u{1b}'));
    }
}

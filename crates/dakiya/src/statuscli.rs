//! `dakiya status [--json]`: the running server at a glance, asked over its control socket
//! (version, uptime, health, listeners, queue, recent warnings and errors). Exit status as
//! `dakiya queue`: 0 answered, 1 failed, 3 not running. See docs/operations.md.

use crate::queuecli::{Failure, exchange, finish, span};
use crate::termtext::clean;
use dakiya_control::{Request, SOCKET_NAME, ServerStatus};
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

/// Asks the server whose data directory is `data_dir`; `json` prints its response line.
pub fn run(json: bool, data_dir: &Path) -> ExitCode {
    finish(execute(json, &data_dir.join(SOCKET_NAME)))
}

fn execute(json: bool, socket: &Path) -> Result<String, Failure> {
    let (line, response) = exchange(socket, &Request::Status)?;
    if !response.ok {
        return Err(Failure::Failed(response.error.unwrap_or_else(|| "the server refused the request".into())));
    }
    if json {
        return Ok(format!("{line}\n"));
    }
    let now = response.now.unwrap_or_else(crate::envelope::now);
    match response.status {
        Some(status) => Ok(format_status(&status, now)),
        None => Err(Failure::Failed("unexpected response from the server".into())),
    }
}

/// The status as text.
pub fn format_status(s: &ServerStatus, now: u64) -> String {
    let mut out = format!("dakiya {}, up {}\n", clean(&s.version), span(s.uptime));
    let health = match (&s.unhealthy, s.draining) {
        (Some(why), _) => format!("UNHEALTHY: {}", clean(why)),
        (None, true) => "healthy, draining for shutdown".into(),
        (None, false) => "healthy".into(),
    };
    let _ = writeln!(out, "Health: {health}");
    out.push_str("Listeners:\n");
    for l in &s.listeners {
        let _ = writeln!(out, "  {:<24} {}", clean(&l.address), clean(&l.role));
    }
    match &s.queue {
        Some(q) => {
            let total = q.ready + q.scheduled + q.held + q.running;
            let _ = write!(
                out,
                "Queue: {total} messages ({} ready, {} scheduled, {} running, {} held)",
                q.ready, q.scheduled, q.running, q.held
            );
            if total > 0 {
                let _ = write!(out, ", oldest {}", span(q.oldest_age));
            }
            out.push('\n');
        }
        None => out.push_str("Queue: the queue manager did not answer\n"),
    }
    if s.recent_errors.is_empty() {
        out.push_str("Recent warnings and errors: none\n");
    } else {
        out.push_str("Recent warnings and errors (oldest first):\n");
        for e in &s.recent_errors {
            let ago = span(now.saturating_sub(e.at));
            let _ = writeln!(out, "  {ago:>4} ago  {:<5} {}", clean(&e.level), clean(&e.message));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dakiya_control::{ListenerStatus, LogEvent, QueueSummary};

    #[test]
    fn status_text_names_everything_and_escapes_remote_text() {
        let s = ServerStatus {
            version: "0.1.0".into(),
            started_at: 1000,
            uptime: 7200,
            unhealthy: None,
            draining: false,
            listeners: vec![ListenerStatus { address: "127.0.0.1:25".into(), role: "mx".into() }],
            queue: Some(QueueSummary { ready: 1, scheduled: 2, held: 0, running: 0, oldest_age: 90 }),
            recent_errors: vec![LogEvent { at: 9_940, level: "WARN".into(), message: "bad\u{1b}[31m".into() }],
        };
        let text = format_status(&s, 10_000);
        assert_eq!(
            text,
            "dakiya 0.1.0, up 2h\nHealth: healthy\nListeners:\n  127.0.0.1:25             mx\n\
             Queue: 3 messages (1 ready, 2 scheduled, 0 running, 0 held), oldest 1m\n\
             Recent warnings and errors (oldest first):\n    1m ago  WARN  bad\\u{1b}[31m\n"
        );
        let sick = ServerStatus { unhealthy: Some("spool not writable".into()), queue: None, ..s };
        let text = format_status(&sick, 10_000);
        assert!(text.contains("Health: UNHEALTHY: spool not writable\n"), "{text}");
        assert!(text.contains("Queue: the queue manager did not answer\n"), "{text}");
    }
}

//! `dakiya reload`: asks the running server (through its control socket in the data
//! directory) to re-read its configuration file, as SIGHUP does, and waits for the outcome
//! (docs/reload.md).
//!
//! Exit status: 0 reloaded (a summary is printed); 1 refused (each problem printed as
//! `dakiya: FILE: [line L: ]key `K`: message`, the running configuration stays) or talking to
//! the server failed; 3 the server is not running.

use crate::queuecli::{Failure, exchange, report};
use crate::termtext::{clean, plural};
use dakiya_config::Config;
use dakiya_control::{ReloadSummary, Request, SOCKET_NAME};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where the server of configuration `file` keeps its control socket: its data directory.
/// A file with errors still names it when it is TOML with a readable `data_dir` (or none: the
/// default), so that the server, asked to reload, reports and logs the errors itself; a file
/// that is not even TOML is reported here (exit status 1: the server was not asked, its
/// configuration stays in force).
pub fn data_dir_of(file: &Path) -> Result<PathBuf, ExitCode> {
    let error = match Config::from_file(file) {
        Ok(cfg) => return Ok(cfg.data_dir),
        Err(e) => e,
    };
    let lenient = std::fs::read_to_string(file).ok().and_then(|text| text.parse::<toml::Table>().ok());
    match lenient.map(|t| t.get("data_dir").cloned()) {
        Some(None) => Ok(Config::embedded_default().data_dir),
        Some(Some(toml::Value::String(dir))) => Ok(PathBuf::from(dir)),
        _ => {
            eprintln!("dakiya: {error}");
            eprintln!("dakiya: not reloaded: the running configuration stays in force");
            Err(ExitCode::FAILURE)
        }
    }
}

/// Reloads the server whose data directory is `data_dir`; with `json`, prints the server's
/// response line as is.
pub fn run(data_dir: &Path, json: bool) -> ExitCode {
    let socket = data_dir.join(SOCKET_NAME);
    let (line, response) = match exchange(&socket, &Request::Reload) {
        Ok(answer) => answer,
        Err(f) => return report(f),
    };
    if json {
        println!("{line}");
    }
    match (response.ok, response.reload) {
        (true, Some(summary)) => {
            if !json {
                print!("{}", format_summary(&summary));
            }
            ExitCode::SUCCESS
        }
        (true, None) => report(Failure::Failed("unexpected response from the server".into())),
        (false, _) => {
            let error = response.error.unwrap_or_else(|| "the server refused the reload".into());
            // One problem per line, each a `dakiya: ` line as check-config prints them.
            for problem in error.lines() {
                eprintln!("dakiya: {}", clean(problem));
            }
            ExitCode::FAILURE
        }
    }
}

/// What `dakiya reload` prints after a reload: the file, listeners started and stopped, and
/// the size of the configuration now in force.
pub fn format_summary(s: &ReloadSummary) -> String {
    let mut out = format!("reloaded {}\n", clean(&s.file));
    for l in &s.listeners_added {
        let _ = writeln!(out, "listening on {}", clean(l));
    }
    for l in &s.listeners_removed {
        let _ = writeln!(out, "stopped listening on {} (open sessions finish)", clean(l));
    }
    let _ = writeln!(
        out,
        "{} {}, {} {}, {} {}",
        s.domains,
        plural(s.domains, "domain"),
        s.mailboxes,
        if s.mailboxes == 1 { "mailbox" } else { "mailboxes" },
        s.aliases,
        if s.aliases == 1 { "alias" } else { "aliases" }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_listeners_and_counts() {
        let s = ReloadSummary {
            file: "/etc/dakiya.toml".into(),
            listeners_added: vec!["127.0.0.1:587 submission".into()],
            listeners_removed: vec!["127.0.0.1:25 mx".into()],
            domains: 2,
            mailboxes: 1,
            aliases: 0,
        };
        assert_eq!(
            format_summary(&s),
            "reloaded /etc/dakiya.toml\nlistening on 127.0.0.1:587 submission\nstopped listening on 127.0.0.1:25 mx (open sessions finish)\n2 domains, 1 mailbox, 0 aliases\n"
        );
    }
}

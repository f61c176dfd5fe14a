//! Requests: what `dakiya queue` asks, as one JSON line (docs/queue-cli.md).

use crate::MAX_REQUEST;
use dakiya_spool::QueueId;
use serde::{Deserialize, Serialize};

/// An operator's request from `dakiya queue` that changes the queue; the server's scheduler
/// carries it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlOp {
    /// Deliver now: one message, or every queued message when `None`. Held messages stay held.
    Retry(Option<QueueId>),
    /// Stop delivering this message until released (survives restarts).
    Hold(QueueId),
    /// Undo [`ControlOp::Hold`] and deliver now.
    Release(QueueId),
    /// Remove the message from the queue without delivering it or notifying anyone.
    Delete(QueueId),
}

/// A request, as parsed from its JSON line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Every queued message with its recipients' states.
    List,
    /// One message in detail, with its header section.
    Show(QueueId),
    /// A change carried out by the scheduler.
    Control(ControlOp),
    /// The queue by destination domain, age and state, with at most this many domains
    /// (never 0), or all of them when `None`.
    Stats(Option<u32>),
    /// Re-read the server's configuration file and apply it (`dakiya reload`,
    /// docs/reload.md); answered once the reload is done or refused.
    Reload,
    /// The server at a glance: version, uptime, listeners, queue, recent errors.
    Status,
}

/// Why a request line was refused; the text goes back to the client as `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Longer than [`MAX_REQUEST`].
    #[error("request line longer than {MAX_REQUEST} bytes")]
    TooLong,
    /// Nothing but white space.
    #[error("empty request")]
    Empty,
    /// Not a JSON object of the expected shape (serde's explanation).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A `cmd` this server does not know (its first 32 characters).
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// The command needs `id`.
    #[error("{0} needs an id")]
    MissingId(&'static str),
    /// A field the command does not take.
    #[error("{0}")]
    Unexpected(&'static str),
    /// `id` is not a queue id.
    #[error("invalid queue id: expected 16 uppercase hex digits")]
    InvalidId,
}

/// The request line's JSON object, before its fields are checked against the command.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    cmd: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    all: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    top: Option<u32>,
}

/// Parses one request line (without its line feed). Never does I/O.
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    if line.len() > MAX_REQUEST {
        return Err(RequestError::TooLong);
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(RequestError::Empty);
    }
    let malformed = |e: serde_json::Error| RequestError::Malformed(e.to_string());
    // Through a map first: a derived struct would also accept a JSON array.
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line).map_err(malformed)?;
    let raw: RawRequest = serde_json::from_value(object.into()).map_err(malformed)?;
    let id = |cmd: &'static str| -> Result<QueueId, RequestError> {
        let id = raw.id.as_deref().ok_or(RequestError::MissingId(cmd))?;
        id.parse().map_err(|_| RequestError::InvalidId)
    };
    if raw.all && raw.cmd != "retry" {
        return Err(RequestError::Unexpected("\"all\" is only for retry"));
    }
    if raw.top.is_some() && raw.cmd != "stats" {
        return Err(RequestError::Unexpected("\"top\" is only for stats"));
    }
    match raw.cmd.as_str() {
        "list" if raw.id.is_some() => Err(RequestError::Unexpected("list takes no id")),
        "list" => Ok(Request::List),
        "stats" if raw.id.is_some() => Err(RequestError::Unexpected("stats takes no id")),
        "stats" if raw.top == Some(0) => Err(RequestError::Unexpected("\"top\" must be at least 1")),
        "stats" => Ok(Request::Stats(raw.top)),
        "reload" if raw.id.is_some() => Err(RequestError::Unexpected("reload takes no id")),
        "reload" => Ok(Request::Reload),
        "status" if raw.id.is_some() => Err(RequestError::Unexpected("status takes no id")),
        "status" => Ok(Request::Status),
        "show" => Ok(Request::Show(id("show")?)),
        "retry" if raw.all && raw.id.is_some() => Err(RequestError::Unexpected("retry takes an id or all, not both")),
        "retry" if raw.all => Ok(Request::Control(ControlOp::Retry(None))),
        "retry" => Ok(Request::Control(ControlOp::Retry(Some(id("retry")?)))),
        "hold" => Ok(Request::Control(ControlOp::Hold(id("hold")?))),
        "release" => Ok(Request::Control(ControlOp::Release(id("release")?))),
        "delete" => Ok(Request::Control(ControlOp::Delete(id("delete")?))),
        _ => Err(RequestError::UnknownCommand(raw.cmd.chars().take(32).collect())),
    }
}

impl Request {
    /// The request as a JSON line, without the line feed (what the client sends).
    pub fn encode(&self) -> String {
        let (cmd, id, all, top) = match self {
            Request::List => ("list", None, false, None),
            Request::Stats(top) => ("stats", None, false, *top),
            Request::Reload => ("reload", None, false, None),
            Request::Status => ("status", None, false, None),
            Request::Show(id) => ("show", Some(id), false, None),
            Request::Control(ControlOp::Retry(None)) => ("retry", None, true, None),
            Request::Control(ControlOp::Retry(Some(id))) => ("retry", Some(id), false, None),
            Request::Control(ControlOp::Hold(id)) => ("hold", Some(id), false, None),
            Request::Control(ControlOp::Release(id)) => ("release", Some(id), false, None),
            Request::Control(ControlOp::Delete(id)) => ("delete", Some(id), false, None),
        };
        let raw = RawRequest { cmd: cmd.into(), id: id.map(|id| id.to_string()), all, top };
        serde_json::to_string(&raw).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0655E5A000000001";

    fn id() -> QueueId {
        ID.parse().unwrap()
    }

    #[test]
    fn parses_every_command() {
        let cases = [
            (r#"{"cmd":"list"}"#, Request::List),
            (r#"{"cmd":"show","id":"0655E5A000000001"}"#, Request::Show(id())),
            (r#"{"cmd":"retry","id":"0655E5A000000001"}"#, Request::Control(ControlOp::Retry(Some(id())))),
            (r#"{"cmd":"retry","all":true}"#, Request::Control(ControlOp::Retry(None))),
            (r#" {"cmd":"hold","id":"0655E5A000000001"} "#, Request::Control(ControlOp::Hold(id()))),
            (r#"{"id":"0655E5A000000001","cmd":"release"}"#, Request::Control(ControlOp::Release(id()))),
            (r#"{"cmd":"delete","id":"0655E5A000000001"}"#, Request::Control(ControlOp::Delete(id()))),
            (r#"{"cmd":"stats"}"#, Request::Stats(None)),
            (r#"{"cmd":"stats","top":20}"#, Request::Stats(Some(20))),
            (r#"{"top":1,"cmd":"stats"}"#, Request::Stats(Some(1))),
            (r#"{"cmd":"reload"}"#, Request::Reload),
            (r#"{"cmd":"status"}"#, Request::Status),
        ];
        for (line, want) in cases {
            assert_eq!(parse_request(line.as_bytes()), Ok(want.clone()), "{line}");
            // What the client sends parses back to the same request.
            assert_eq!(parse_request(want.encode().as_bytes()), Ok(want), "{line}");
        }
    }

    #[test]
    fn refuses_bad_requests() {
        use RequestError::*;
        let cases: [(&[u8], RequestError); 20] = [
            (br#"{"cmd":"reload","id":"0655E5A000000001"}"#, Unexpected("reload takes no id")),
            (b"", Empty),
            (b"  \r", Empty),
            (br#"{"cmd":"list","id":"0655E5A000000001"}"#, Unexpected("list takes no id")),
            (br#"{"cmd":"show"}"#, MissingId("show")),
            (br#"{"cmd":"delete","all":true}"#, Unexpected("\"all\" is only for retry")),
            (br#"{"cmd":"retry"}"#, MissingId("retry")),
            (br#"{"cmd":"retry","all":false}"#, MissingId("retry")),
            (
                br#"{"cmd":"retry","all":true,"id":"0655E5A000000001"}"#,
                Unexpected("retry takes an id or all, not both"),
            ),
            (br#"{"cmd":"hold","id":"../../etc/passwd"}"#, InvalidId),
            (br#"{"cmd":"hold","id":"0655e5a000000001"}"#, InvalidId),
            (br#"{"cmd":"flush"}"#, UnknownCommand("flush".into())),
            (br#"{"cmd":"list"} trailing"#, Malformed(String::new())),
            (br#"{"cmd":"list","force":true}"#, Malformed(String::new())),
            (b"\xff\xfe", Malformed(String::new())),
            (br#"{"cmd":"stats","id":"0655E5A000000001"}"#, Unexpected("stats takes no id")),
            (br#"{"cmd":"stats","top":0}"#, Unexpected("\"top\" must be at least 1")),
            (br#"{"cmd":"list","top":5}"#, Unexpected("\"top\" is only for stats")),
            (br#"{"cmd":"stats","top":-1}"#, Malformed(String::new())),
            (br#"{"cmd":"status","id":"0655E5A000000001"}"#, Unexpected("status takes no id")),
        ];
        for (line, want) in cases {
            let got = parse_request(line).unwrap_err();
            match want {
                Malformed(_) => assert!(matches!(got, Malformed(_)), "{line:?}: {got:?}"),
                want => assert_eq!(got, want, "{line:?}"),
            }
        }
        for line in [
            r#"["list"]"#,
            r#"{"cmd":1}"#,
            r#"{"cmd":"show","id":7}"#,
            "list",
            "{",
            r#"{"cmd":"stats","top":4294967296}"#,
            r#"{"cmd":"stats","top":"5"}"#,
            r#"{"cmd":"stats","top":1.5}"#,
        ] {
            assert!(matches!(parse_request(line.as_bytes()), Err(Malformed(_))), "{line}");
        }
    }

    #[test]
    fn long_requests_and_unknown_commands_are_bounded() {
        let pad = " ".repeat(MAX_REQUEST - r#"{"cmd":"list"}"#.len());
        let exact = format!("{pad}{}", r#"{"cmd":"list"}"#);
        assert_eq!(exact.len(), MAX_REQUEST);
        assert_eq!(parse_request(exact.as_bytes()), Ok(Request::List));
        let over = format!(" {exact}");
        assert_eq!(parse_request(over.as_bytes()), Err(RequestError::TooLong));
        // The error text echoes at most 32 characters of what the client sent.
        let long = format!(r#"{{"cmd":"{}"}}"#, "x".repeat(1000));
        let err = parse_request(long.as_bytes()).unwrap_err().to_string();
        assert!(err.len() < 60, "{err}");
    }
}

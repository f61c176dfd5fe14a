//! The most recent warnings and errors, kept in memory for `dakiya status`: a layer of the
//! server's log that copies each WARN and ERROR event into a small ring. Only the message and
//! an `error` field are kept, each cut short — never other fields, which may name users or
//! carry client text (and AUTH data is never logged at all).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

/// Events kept.
pub const CAPACITY: usize = 16;
/// The longest text kept of an event, in characters.
const MAX_TEXT: usize = 300;

/// One kept event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// When, in unix seconds.
    pub at: u64,
    /// `WARN` or `ERROR`.
    pub level: &'static str,
    /// The message, then `error=...` when the event has one.
    pub text: String,
}

/// The ring of recent warnings and errors; clones share it.
#[derive(Clone, Default)]
pub struct Recent(Arc<Mutex<VecDeque<Recorded>>>);

impl Recent {
    /// The kept events, oldest first.
    pub fn events(&self) -> Vec<Recorded> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    fn push(&self, event: Recorded) {
        let mut ring = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == CAPACITY {
            ring.pop_front();
        }
        ring.push_back(event);
    }
}

/// Collects the message and the `error` field.
#[derive(Default)]
struct Text {
    message: String,
    error: Option<String>,
}

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "error" => self.error = Some(format!("{value:?}")),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "error" => self.error = Some(value.to_string()),
            _ => {}
        }
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for Recent {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARN",
            _ => return,
        };
        let mut text = Text::default();
        event.record(&mut text);
        let mut line = text.message;
        if let Some(e) = text.error {
            let _ = write!(line, " error={e}");
        }
        let text: String = line.chars().take(MAX_TEXT).collect();
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.push(Recorded { at, level, text });
    }
}

/// The ring of the server whose log is the current dispatcher, if it keeps one.
pub fn current() -> Option<Recent> {
    tracing::dispatcher::get_default(|d| d.downcast_ref::<Recent>().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn keeps_the_last_warnings_and_errors_without_other_fields() {
        let recent = Recent::default();
        let subscriber = tracing_subscriber::registry().with(recent.clone());
        tracing::subscriber::with_default(subscriber, || {
            assert!(current().is_some());
            tracing::info!("not kept");
            tracing::warn!(user = "alice", error = "boom", "auth failed");
            for i in 0..CAPACITY {
                tracing::error!(n = i, "error {i}");
            }
        });
        let events = recent.events();
        assert_eq!(events.len(), CAPACITY);
        assert_eq!(events[0].text, "error 0");
        assert_eq!(events[CAPACITY - 1].level, "ERROR");
        let recent = Recent::default();
        let subscriber = tracing_subscriber::registry().with(recent.clone());
        tracing::subscriber::with_default(subscriber, || tracing::warn!(user = "alice", error = "boom", "auth failed"));
        assert_eq!(recent.events()[0].text, "auth failed error=boom");
        assert_eq!(recent.events()[0].level, "WARN");
    }
}

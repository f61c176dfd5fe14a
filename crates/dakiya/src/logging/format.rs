//! The form of a log line: text or JSON (`[log] format`), with or without the time
//! (`[log] timestamps`, and whether stderr is systemd's journal).

use super::escape::Escaping;
use dakiya_config::{Log, LogFormat, Timestamps};
use dakiya_proto::logtext;
use std::io::{self, Write};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::registry::LookupSpan;

/// How the lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Style {
    json: bool,
    time: bool,
}

impl Style {
    /// The style `log` asks for, when the lines go to the journal (`journal`) or not. The
    /// journal stamps every line itself (systemd.exec(5), `JOURNAL_STREAM`), so text lines
    /// written there leave the time out under `timestamps = "auto"`; JSON lines keep their
    /// `timestamp` field, which programs reading them expect.
    pub(crate) fn new(log: &Log, journal: bool) -> Style {
        let json = log.format == LogFormat::Json;
        let time = match log.timestamps {
            Timestamps::Always => true,
            Timestamps::Never => false,
            Timestamps::Auto => json || !journal,
        };
        Style { json, time }
    }
}

/// The formatting layer for `style`, writing each line through the escaping writer that
/// fits it into a writer `make` returns. No ANSI colours, no target.
pub(crate) fn layer<S, F, W>(style: Style, make: F) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    F: Fn() -> W + Send + Sync + 'static,
    W: Write + 'static,
{
    let base = tracing_subscriber::fmt::layer().with_ansi(false).with_target(false);
    match (style.json, style.time) {
        (false, true) => base.with_writer(Escaping(make)).boxed(),
        (false, false) => base.without_time().with_writer(Escaping(make)).boxed(),
        (true, true) => base.json().flatten_event(true).with_writer(JsonEscaping(make)).boxed(),
        (true, false) => base.json().flatten_event(true).without_time().with_writer(JsonEscaping(make)).boxed(),
    }
}

/// Whether stderr is the journal stream systemd connected: `JOURNAL_STREAM` holds its
/// `DEVICE:INODE` (systemd.exec(5)); a variable inherited by a process whose stderr was
/// redirected elsewhere names another file, and does not count.
pub(crate) fn stderr_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else { return false };
    stderr_id().is_some_and(|id| names_stream(&value, id))
}

/// The device and inode of stderr.
fn stderr_id() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Whether a `JOURNAL_STREAM` value (`DEVICE:INODE`, decimal) names the file `(dev, ino)`.
fn names_stream(value: &str, (dev, ino): (u64, u64)) -> bool {
    let Some((d, i)) = value.trim().split_once(':') else { return false };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// Makes [`JsonEscapingWriter`]s around the writers `F` makes.
pub(crate) struct JsonEscaping<F>(pub(crate) F);

impl<'a, F, W> MakeWriter<'a> for JsonEscaping<F>
where
    F: Fn() -> W,
    W: Write,
{
    type Writer = JsonEscapingWriter<W>;

    fn make_writer(&'a self) -> Self::Writer {
        JsonEscapingWriter(self.0())
    }
}

/// The JSON counterpart of [`super::escape::EscapingWriter`]: the JSON formatter already writes
/// C0 controls inside strings as escapes, so a line is one line; this writes every other
/// character [`logtext::escape_char`] names (DEL, C1 controls, U+2028/U+2029, bidi
/// formatting) as a JSON `\uXXXX` escape too, which a JSON reader turns back into the
/// character. They can only occur inside strings (the JSON syntax around them is ASCII), so
/// the line stays valid JSON. One call per line, as for text.
pub(crate) struct JsonEscapingWriter<W>(W);

impl<W: Write> Write for JsonEscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Printable ASCII has nothing to escape: written as it is, without a copy.
        if logtext::is_plain_line(buf) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = Vec::with_capacity(buf.len() + 16);
        escape_json_line(buf, &mut line);
        self.0.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Appends `line` to `out` with every character [`logtext::escape_char`] names, but the
/// final line feed, as a JSON `\uXXXX` escape (all of them are in the Basic Multilingual
/// Plane). Bytes that are not UTF-8 (never written by the JSON formatter) become U+FFFD.
fn escape_json_line(line: &[u8], out: &mut Vec<u8>) {
    let (body, end) = match line.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (line, &b""[..]),
    };
    for c in String::from_utf8_lossy(body).chars() {
        if logtext::escape_char(c).is_some() {
            out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
        } else {
            let mut utf8 = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        }
    }
    out.extend_from_slice(end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_round_trip_and_stay_on_one_line() {
        let value = "a\u{202e}b\u{7f}c\u{9b}d\u{2028}e\u{2066}f";
        let json = format!("{}\n", serde_json::json!({ "helo": value }));
        let mut out = Vec::new();
        escape_json_line(json.as_bytes(), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.chars().all(|c| c == '\n' || logtext::escape_char(c).is_none()), "{text:?}");
        assert!(text.contains("\\u202e"), "{text:?}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["helo"], value);
    }

    #[test]
    fn the_journal_is_named_by_device_and_inode() {
        assert!(names_stream("8:12345", (8, 12345)));
        assert!(names_stream("8:12345\n", (8, 12345)));
        assert!(!names_stream("8:12346", (8, 12345)));
        assert!(!names_stream("9:12345", (8, 12345)));
        assert!(!names_stream("", (8, 12345)));
        assert!(!names_stream("8", (8, 12345)));
    }

    #[test]
    fn auto_leaves_the_time_out_of_text_in_the_journal_only() {
        let log = |format, timestamps| Log { format, timestamps };
        let style = |json, time| Style { json, time };
        assert_eq!(Style::new(&log(LogFormat::Text, Timestamps::Auto), true), style(false, false));
        assert_eq!(Style::new(&log(LogFormat::Text, Timestamps::Auto), false), style(false, true));
        assert_eq!(Style::new(&log(LogFormat::Json, Timestamps::Auto), true), style(true, true));
        assert_eq!(Style::new(&log(LogFormat::Text, Timestamps::Always), true), style(false, true));
        assert_eq!(Style::new(&log(LogFormat::Json, Timestamps::Never), false), style(true, false));
    }
}

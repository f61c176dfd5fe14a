//! The writer under every log line of the text format: each line escaped whole, so no
//! client-controlled byte reaches the log raw.

use dakiya_proto::logtext;
use std::io::{self, Write};
use tracing_subscriber::fmt::MakeWriter;

/// Makes [`EscapingWriter`]s around the writers `F` makes.
pub struct Escaping<F>(pub F);

impl<'a, F, W> MakeWriter<'a> for Escaping<F>
where
    F: Fn() -> W,
    W: Write,
{
    type Writer = EscapingWriter<W>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter(self.0())
    }
}

/// Writes each buffer it is given with every control character escaped but a final line
/// feed ([`logtext::escape_line`]), in one `write_all` to the inner writer. The fmt layer of
/// tracing-subscriber formats a whole event into one buffer and hands it over in one
/// `write_all` (tracing-subscriber 0.3, `fmt_layer.rs`, `on_event`), and [`write`] takes all
/// of a buffer, so each call here sees exactly one whole line: whatever field a line gets,
/// no raw CR, LF or ESC reaches the log.
///
/// [`write`]: Write::write
pub struct EscapingWriter<W>(pub(crate) W);

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The usual line needs no escape: written as it is, without a copy.
        if logtext::is_plain_line(buf) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = Vec::with_capacity(buf.len() + 16);
        logtext::escape_line(buf, &mut line);
        self.0.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

//! The message content as it goes on the wire after DATA: dot-stuffed, ending with the final
//! dot (RFC 5321 §4.5.2), a chunk at a time so a large message is never encoded whole. SMTP
//! and LMTP sessions both write it.

use dakiya_proto::client::DataEncoder;

/// The most message octets encoded per chunk.
const BODY_CHUNK: usize = 64 * 1024;

/// `message`, encoded a chunk at a time; the last chunk carries the final dot.
pub(crate) struct Stuffed<'m> {
    encoder: Option<DataEncoder>,
    chunks: std::slice::Chunks<'m, u8>,
    out: Vec<u8>,
}

impl<'m> Stuffed<'m> {
    pub(crate) fn new(message: &'m [u8]) -> Stuffed<'m> {
        Stuffed {
            encoder: Some(DataEncoder::new()),
            chunks: message.chunks(BODY_CHUNK),
            out: Vec::with_capacity(BODY_CHUNK + BODY_CHUNK / 16),
        }
    }

    /// The next chunk to write; `None` once the final dot has been handed out.
    pub(crate) fn next_chunk(&mut self) -> Option<&[u8]> {
        self.out.clear();
        match self.chunks.next() {
            Some(chunk) => self.encoder.as_mut()?.encode(chunk, &mut self.out),
            None => self.encoder.take()?.finish(&mut self.out),
        }
        Some(&self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_join_to_the_stuffed_message_and_end_once() {
        let message = [b"a\r\n.b\r\n".repeat(20_000), b"last".to_vec()].concat();
        let mut body = Stuffed::new(&message);
        let mut wire = Vec::new();
        let mut n = 0;
        while let Some(chunk) = body.next_chunk() {
            wire.extend_from_slice(chunk);
            n += 1;
        }
        assert!(n > 2, "{n} chunks");
        assert!(body.next_chunk().is_none());
        let expected = [b"a\r\n..b\r\n".repeat(20_000), b"last\r\n.\r\n".to_vec()].concat();
        assert_eq!(wire, expected);
    }
}

//! The fuzz target's body (fuzz/fuzz_targets/milter_replies.rs), also run over the committed
//! corpus by tests/corpus.rs: arbitrary bytes from a milter, read as packets at arbitrary
//! boundaries, fed to a conversation awaiting the end of message, and its edits applied to a
//! message. Nothing may panic, and no buffer may outgrow its cap.

use crate::negotiate::{Negotiated, Stage, actions};
use crate::packet::{Command, decode};
use crate::{Conversation, MAX_PACKET, Next};

const MESSAGE: &[u8] = b"Received: from x\r\n\tby y\r\nSubject: s\r\nTo: a@b\r\n\r\nbody\r\n";
const BODY_CAP: usize = 4096;

/// The first byte picks the read size; the rest is what the milter sent.
pub fn replies(data: &[u8]) {
    let Some((&step, data)) = data.split_first() else { return };
    let step = usize::from(step % 64) + 1;
    let all = Negotiated { version: 6, actions: actions::OFFERED, protocol: 0 };
    let mut conv: Option<Conversation> = None;
    let mut buf = Vec::new();
    for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match decode(&mut buf, BODY_CAP) {
                Ok(Some(p)) => {
                    let c = conv.get_or_insert_with(|| {
                        let mut c = Conversation::new(Negotiated::from_reply(&p).unwrap_or(all), BODY_CAP);
                        c.send(Stage::EndOfMessage, &[], &Command::EndOfMessage);
                        c
                    });
                    match c.receive(p) {
                        Ok(Next::Wait { .. }) => {}
                        // A final action or a bad packet: the next message starts over.
                        Ok(Next::Done(_)) | Err(_) => {
                            let edits = c.take_edits();
                            assert!(edits.body.as_ref().is_none_or(|b| b.len() <= BODY_CAP));
                            let _ = edits.apply(MESSAGE);
                            c.send(Stage::EndOfMessage, &[], &Command::EndOfMessage);
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buf.len() <= MAX_PACKET + 5 + step);
    }
}

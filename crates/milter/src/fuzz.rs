//! The fuzz target's body (fuzz/fuzz_targets/milter_replies.rs), also run over the committed
//! corpus by tests/corpus.rs: arbitrary bytes from a milter, read as packets at arbitrary
//! boundaries, interpreted and applied as edits to a message. Nothing may panic, and no
//! buffer may outgrow its cap.

use crate::negotiate::{Negotiated, actions};
use crate::packet::decode;
use crate::reply::{Response, interpret};
use crate::{Edits, MAX_PACKET};

const MESSAGE: &[u8] = b"Received: from x\r\n\tby y\r\nSubject: s\r\nTo: a@b\r\n\r\nbody\r\n";

/// The first byte picks the read size; the rest is what the milter sent.
pub fn replies(data: &[u8]) {
    let Some((&step, data)) = data.split_first() else { return };
    let step = usize::from(step % 64) + 1;
    let all = Negotiated { version: 6, actions: actions::OFFERED, protocol: 0 };
    let mut negotiated = None;
    let mut buf = Vec::new();
    let mut edits = Edits::default();
    for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match decode(&mut buf, 4096) {
                Ok(Some(p)) => {
                    if negotiated.is_none() {
                        negotiated = Some(Negotiated::from_reply(&p).unwrap_or(all));
                    }
                    if let Ok(Response::Modify(m)) = interpret(p, negotiated.as_ref().unwrap_or(&all)) {
                        let _ = edits.push(m, 4096);
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buf.len() <= MAX_PACKET + 5 + step);
    }
    assert!(edits.body.as_ref().is_none_or(|b| b.len() <= 4096));
    let _ = edits.apply(MESSAGE);
}

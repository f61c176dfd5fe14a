//! Message content: DATA and BDAT bodies, size limits, and the end of a message.

use super::{Awaiting, Phase, Queued, Server, Step, replies};
use crate::reply::{Enhanced, Reply};

impl<T> Server<T> {
    /// Accounts decoded DATA content in `scratch`; at the end, finishes the message.
    pub(super) fn content(&mut self, end: bool, nul: bool) -> Step {
        let max = self.cfg.max_message_size;
        let Some(tx) = self.tx.as_mut() else {
            return Step::NeedInput;
        };
        tx.size += self.scratch.len() as u64;
        tx.oversize |= tx.size > max;
        if tx.oversize {
            // Keep reading to the end of the data but store nothing more (RFC 1870 §6).
            self.scratch.clear();
        }
        if end {
            let q = self.finish_message(nul);
            if self.scratch.is_empty() {
                return Step::Event(q);
            }
            self.queued = Some(q);
            return Step::Body;
        }
        if self.scratch.is_empty() { Step::NeedInput } else { Step::Body }
    }

    /// Handles `data` of a BDAT chunk with `remaining` octets still to come.
    pub(super) fn bdat_chunk(&mut self, data: &[u8], remaining: u64, last: bool, refuse: Option<Reply>) -> Step {
        self.scratch.clear();
        let max = self.cfg.max_message_size;
        let mut framing_broken = false;
        if refuse.is_none()
            && let Some(tx) = self.tx.as_mut()
        {
            framing_broken = tx.checker.check(data).is_err();
            tx.size += data.len() as u64;
            tx.oversize |= tx.size > max;
            if !tx.oversize && !framing_broken {
                self.scratch.extend_from_slice(data);
            }
        }
        if framing_broken {
            return self.framing_error();
        }
        if remaining > 0 {
            self.phase = Phase::Bdat { remaining, last, refuse };
            return if self.scratch.is_empty() { Step::NeedInput } else { Step::Body };
        }
        self.phase = Phase::Command;
        let end = match refuse {
            Some(reply) => {
                self.error(reply);
                None
            }
            None if last => {
                let tx = self.tx.as_ref();
                let broken = tx.is_some_and(|t| t.checker.finish().is_err());
                if broken {
                    return self.framing_error();
                }
                let nul = tx.is_some_and(|t| t.checker.saw_nul());
                Some(self.finish_message(nul))
            }
            None => {
                let size = self.tx.as_ref().map_or(0, |t| t.size);
                if self.tx.as_ref().is_some_and(|t| t.oversize) {
                    // RFC 3030 §2: an error reply to a chunk ends the transaction.
                    self.tx = None;
                    self.reply(replies::size_exceeded());
                    Some(Queued::MessageAbort)
                } else {
                    self.reply(replies::r(250, Enhanced(2, 0, 0), &format!("{size} octets received")));
                    None
                }
            }
        };
        match (end, self.scratch.is_empty()) {
            (Some(q), true) => Step::Event(q),
            (Some(q), false) => {
                self.queued = Some(q);
                Step::Body
            }
            (None, true) => Step::NeedInput,
            (None, false) => Step::Body,
        }
    }

    /// The message content is complete: refuse it or ask the driver to commit it.
    pub(super) fn finish_message(&mut self, nul: bool) -> Queued {
        let oversize = self.tx.as_ref().is_some_and(|t| t.oversize);
        let refusal = if oversize {
            Some(replies::size_exceeded())
        } else if nul {
            Some(replies::nul_in_message())
        } else {
            None
        };
        match refusal {
            Some(reply) => {
                self.tx = None;
                self.reply(reply);
                Queued::MessageAbort
            }
            None => {
                self.awaiting = Some(Awaiting::Commit);
                Queued::MessageEnd
            }
        }
    }

    /// Lone CR/LF: the stream can no longer be framed safely. Refuse and close.
    pub(super) fn framing_error(&mut self) -> Step {
        let had_message = self.shutdown(replies::bare_newline());
        if had_message {
            self.queued = Some(Queued::Close);
            Step::Event(Queued::MessageAbort)
        } else {
            Step::Event(Queued::Close)
        }
    }
}

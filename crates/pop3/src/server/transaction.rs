//! The TRANSACTION state (RFC 1939 §5, §7): STAT, LIST, UIDL, RETR, TOP, DELE, NOOP, RSET,
//! CAPA, and QUIT, which enters UPDATE.

use super::{Awaiting, Event, Server};
use crate::command::Command;
use crate::reply;

impl Server {
    /// Handles a command in the TRANSACTION state.
    pub(super) fn transaction(&mut self, cmd: Command) -> Option<Event> {
        match cmd {
            Command::Capa => self.capabilities(),
            Command::Noop => reply::ok(&mut self.out, ""),
            Command::Stat => {
                let (n, size) = self.live().fold((0, 0u64), |(n, s), (_, e)| (n + 1, s + e.size));
                reply::ok(&mut self.out, &format!("{n} {size}"));
            }
            Command::List(None) => {
                let (n, size) = self.live().fold((0, 0u64), |(n, s), (_, e)| (n + 1, s + e.size));
                let lines: Vec<String> = self.live().map(|(i, e)| format!("{} {}", i + 1, e.size)).collect();
                reply::ok(&mut self.out, &format!("{n} messages ({size} octets)"));
                reply::lines(&mut self.out, lines);
            }
            Command::List(Some(m)) => {
                if let Some(i) = self.message(m) {
                    let size = self.entries[i].size;
                    reply::ok(&mut self.out, &format!("{m} {size}"));
                }
            }
            Command::Uidl(None) => {
                let lines: Vec<String> = self.live().map(|(i, e)| format!("{} {}", i + 1, e.uid)).collect();
                reply::ok(&mut self.out, "Unique-ID listing follows");
                reply::lines(&mut self.out, lines);
            }
            Command::Uidl(Some(m)) => {
                if let Some(i) = self.message(m) {
                    let text = format!("{m} {}", self.entries[i].uid);
                    reply::ok(&mut self.out, &text);
                }
            }
            Command::Retr(m) => return self.retrieve(m, None),
            Command::Top(m, n) => return self.retrieve(m, Some(n)),
            Command::Dele(m) => {
                if let Some(i) = self.message(m) {
                    self.deleted[i] = true;
                    reply::ok(&mut self.out, &format!("Message {m} deleted"));
                }
            }
            Command::Rset => {
                // RFC 1939 §5: unmark every message marked as deleted.
                self.deleted.iter_mut().for_each(|d| *d = false);
                let n = self.entries.len();
                reply::ok(&mut self.out, &format!("{n} messages"));
            }
            Command::Quit => {
                // RFC 1939 §6: the UPDATE state; the driver removes the deleted messages.
                self.awaiting = Some(Awaiting::Commit);
                return Some(Event::Commit);
            }
            _ => self.error(None, "Already logged in"),
        }
        None
    }

    /// The messages not marked deleted, with their indices.
    fn live(&self) -> impl Iterator<Item = (usize, &super::Entry)> {
        self.entries.iter().enumerate().filter(|(i, _)| !self.deleted[*i])
    }

    /// The index of message number `m`, or `-ERR` if there is none or it is deleted
    /// (RFC 1939 §5: a deleted message may not be named).
    fn message(&mut self, m: usize) -> Option<usize> {
        let i = m.checked_sub(1).filter(|&i| i < self.entries.len());
        match i {
            // Well-formed requests: not counted as errors.
            None => {
                reply::err(&mut self.out, None, "No such message");
                None
            }
            Some(i) if self.deleted[i] => {
                reply::err(&mut self.out, None, "Message already deleted");
                None
            }
            Some(i) => Some(i),
        }
    }

    fn retrieve(&mut self, m: usize, body_lines: Option<u64>) -> Option<Event> {
        let msg = self.message(m)?;
        self.awaiting = Some(Awaiting::Retrieve { msg, body_lines });
        Some(Event::Retrieve { msg, body_lines })
    }
}

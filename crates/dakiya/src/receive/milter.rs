//! The end of message with milters: the message so far is read back and shown to them;
//! their edits are applied before the one commit (docs/milter.md, "Where edits land").
//! A rewritten message goes into a new spool writer with the same queue id, the first
//! writer dropped (its temporary file removed): nothing is committed twice or lost, and
//! "250 only after fsync" holds since the commit is still the only way to 250.

use super::Message;
use crate::milter::Filters;
use crate::shared::Shared;
use crate::storage::Failure;
use dakiya_config::{RcptError, Target};
use dakiya_history::{Event, Final};
use dakiya_metrics::Rejection;
use dakiya_milter::Edits;
use dakiya_proto::Reply;
use dakiya_proto::logtext::Esc;
use dakiya_spool::{Envelope, MessageWriter, Recipient, SpoolError};

impl Message {
    /// Shows the message to the session's milters and applies what they decide: `Ok(None)`
    /// to commit it (edited or not), `Ok(Some(id))` when it was discarded on a milter's word
    /// (answer 250 with the id, commit nothing), `Err` to refuse it.
    pub(super) async fn run_milters(
        &mut self,
        shared: &Shared,
        filters: &mut Filters,
    ) -> Result<Option<String>, Reply> {
        let temp = |why: SpoolError| {
            shared.metrics.rejected(Rejection::LocalError);
            Failure::from(why).refuse(&crate::logging::READ_BACK_FAILED, "Temporary local problem, try again later")
        };
        let Some(writer) = self.writer.as_mut() else { return Ok(None) };
        let content = read_back(writer).map_err(temp)?;
        let id = writer.id().to_string();
        let outcome = filters.end_of_message(&content, &id).await;
        let outcome = outcome.inspect_err(|_| shared.metrics.rejected(Rejection::MilterData))?;
        if let Some(milter) = outcome.discard {
            return Ok(self.discard(shared, &id, &milter, content.len() as u64));
        }
        if let (Some(reason), Some(milter)) = (&outcome.edits.quarantine, &outcome.quarantined_by) {
            self.quarantine = Some(format!("milter {milter}: {reason}"));
        }
        let edits = outcome.edits;
        if !edits.touches_content() && !edits.touches_envelope() {
            return Ok(None);
        }
        let Some(mut env) = self.envelope.clone() else { return Ok(None) };
        edit_envelope(shared, &mut env, &edits);
        if env.recipients.is_empty() {
            tracing::info!(queue_id = %id, "milters removed every recipient");
            return Ok(self.discard(shared, &id, "(no recipients left)", content.len() as u64));
        }
        let content = if edits.touches_content() { edits.apply(&content) } else { content };
        tracing::info!(queue_id = %id, headers = edits.headers.len(), body = edits.body.is_some(), envelope = edits.touches_envelope(), "milter edits applied");
        // The old writer goes first: its temporary file has the same name.
        self.writer = None;
        let mut w = shared.spool.writer(env.clone()).map_err(temp)?;
        tokio::task::block_in_place(|| w.write(&content)).map_err(temp)?;
        self.sender = env.sender.clone();
        self.rcpts = env.recipients.len();
        if let Some(h) = self.history.as_mut() {
            h.sender = env.sender.clone();
            h.rcpts = env.recipients.iter().map(|r| r.address.clone()).collect();
            h.nrcpt = env.recipients.len();
        }
        self.envelope = Some(env);
        self.writer = Some(w);
        Ok(None)
    }

    /// Drops the message: logged and in the history as discarded; the client gets 250.
    fn discard(&mut self, shared: &Shared, id: &str, milter: &str, size: u64) -> Option<String> {
        tracing::info!(queue_id = %id, milter = %Esc(milter), from = %Esc(&format!("<{}>", self.sender)), rcpts = self.rcpts, size, "discarded by milter");
        if let Some(mut rx) = self.history.take() {
            rx.size = size;
            rx.message_id = std::mem::take(&mut self.message_id).finish();
            shared.history.record(id, Event::Received(rx.clipped()));
            shared.history.record(id, Event::Done { state: Final::Discarded });
        }
        self.abort();
        Some(id.to_string())
    }
}

fn read_back(writer: &mut MessageWriter) -> Result<Vec<u8>, SpoolError> {
    if writer.is_spilled() { tokio::task::block_in_place(|| writer.content()) } else { writer.content() }
}

/// CHGFROM, DELRCPT and ADDRCPT applied to the envelope. An added recipient is resolved as
/// RCPT would (aliases, mailboxes), and relayed when not local: the milter is trusted.
fn edit_envelope(shared: &Shared, env: &mut Envelope, edits: &Edits) {
    if let Some(sender) = &edits.sender {
        env.sender = sender.clone();
    }
    for gone in &edits.del_rcpts {
        env.recipients.retain(|r| !r.original.eq_ignore_ascii_case(gone) && !r.address.eq_ignore_ascii_case(gone));
    }
    let live = shared.live.get();
    for added in &edits.add_rcpts {
        let Some((local, domain)) = added.rsplit_once('@') else {
            tracing::warn!(address = %Esc(added), "milter added a recipient without a domain: ignored");
            continue;
        };
        let targets = match live.config.resolve_with(local, &domain.to_ascii_lowercase(), &|a| shared.users.exists(a)) {
            Ok(t) => t,
            Err(RcptError::NotLocal) => vec![Target::Remote { address: added.clone() }],
            Err(e) => {
                tracing::warn!(address = %Esc(added), error = ?e, "milter added a recipient that does not resolve: ignored");
                continue;
            }
        };
        for t in targets {
            let (address, mailbox) = match t {
                Target::Mailbox { domain, mailbox } => (format!("{mailbox}@{domain}"), Some((domain, mailbox))),
                Target::Remote { address } => (address, None),
            };
            if env.recipients.iter().any(|r| r.address == address) {
                continue;
            }
            env.recipients.push(Recipient { address, original: added.clone(), orcpt: None, notify: None, mailbox });
        }
    }
}

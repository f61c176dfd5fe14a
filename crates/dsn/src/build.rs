//! Assembling the notice: header fields and the multipart/report (RFC 6522).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;

use dakiya_proto::Enhanced;

use crate::clean::{check_address, check_hostname, id_chars};
use crate::original::{self, Returned};
use crate::{DsnError, DsnInput, Kind, Ret, status, text};

/// Builds the delivery status notification for one message: a complete RFC
/// 5322 message with CRLF line ends, to be sent from the null reverse-path
/// `MAIL FROM:<>` (RFC 5321 §4.5.5) to `input.original_sender`.
///
/// The result is a `multipart/report; report-type=delivery-status` with
/// three parts: a text/plain explanation; the message/delivery-status report
/// with one group per recipient; and the original message (`RET=FULL`, failure
/// notices only) or its header section. Which recipients to include is the
/// caller's choice (see [`crate::should_notify`]); all the recipients of one
/// message reported at the same time belong in one notice.
///
/// If any address (the sender, a recipient, an ORCPT) is not ASCII, the report
/// is `message/global-delivery-status` (`report-type=global-delivery-status`)
/// with `utf-8` address types (RFC 6533), and the notice needs `SMTPUTF8` (or
/// at least `8BITMIME`) to travel. Likewise a returned original with 8-bit
/// content is sent as `8bit`. Everything else is 7-bit.
///
/// Pure apart from reading `input.original`: the `Date`, the `Message-ID` and
/// the MIME boundary derive from the input, so the same input gives the same
/// bytes.
pub fn build_dsn(input: DsnInput<'_>) -> Result<Vec<u8>, DsnError> {
    validate(&input)?;
    let global = status::needs_global(&input);
    // RFC 3461 §4.3: RET chooses what a *failed* DSN returns; without it the
    // choice is ours. We return headers: the sender has the message, bounces
    // to forged senders should not carry someone else's spam or attachments,
    // and a large message should not travel twice. Delay and success notices
    // do not return the message at all, so they carry headers too.
    let full = input.kind == Kind::Failure && input.ret == Some(Ret::Full);
    let original = original::load(&mut *input.original, full, input.return_limit)?;
    let report = status::render(&input, global);
    let text = text::render(&input, &original, global);

    let seed = seed(&input, &report);
    let boundary = boundary(seed, &[text.as_bytes(), report.as_bytes(), &original.content]);
    let message_id = match id_chars(input.queue_id) {
        id if id.is_empty() => format!("{}.{seed:016x}@{}", input.now.timestamp(), input.reporting_mta),
        id => format!("{}.{seed:016x}.{id}@{}", input.now.timestamp(), input.reporting_mta),
    };

    let (report_type, report_ct, report_cte) = match global {
        false => ("delivery-status", "message/delivery-status", "7bit"),
        true => ("global-delivery-status", "message/global-delivery-status", "8bit"),
    };
    let text_cte = if text.is_ascii() { "7bit" } else { "8bit" };
    let mut parts = vec![
        // Identity encodings: the text is wrapped, and when it is not ASCII the
        // report beside it needs an 8-bit path anyway (it names the same addresses).
        MimePart::new(ContentType::new("text/plain").attribute("charset", "utf-8"), text).transfer_encoding(text_cte),
        MimePart::new(ContentType::new(report_ct), report.into_bytes()).transfer_encoding(report_cte),
    ];
    if original.returned != Returned::Nothing {
        let (ct, cte) = (original.content_type(), original.transfer_encoding());
        parts.push(MimePart::new(ContentType::new(ct), original.content).transfer_encoding(cte));
    }
    let body = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", report_type).attribute("boundary", boundary),
        parts,
    );
    let message = MessageBuilder::new()
        .from(Address::new_address(Some("Mail Delivery System"), input.from))
        .to(Address::new_address(None::<&str>, input.original_sender))
        .subject(text::subject(input.kind))
        .header("Date", Raw::new(input.now.to_rfc2822()))
        .message_id(message_id)
        // RFC 3834 §5: machines should not answer this one.
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .header("MIME-Version", Raw::new("1.0"))
        .body(body)
        .write_to_vec()?;
    Ok(message)
}

/// Refuses input that would make a wrong or unsafe notice.
fn validate(input: &DsnInput<'_>) -> Result<(), DsnError> {
    if input.original_sender.is_empty() {
        return Err(DsnError::NullSender);
    }
    if input.recipients.is_empty() {
        return Err(DsnError::NoRecipients);
    }
    check_hostname(input.reporting_mta)?;
    check_address("from", input.from)?;
    check_address("original sender", input.original_sender)?;
    for rcpt in input.recipients {
        check_address("final recipient", &rcpt.final_recipient)?;
        let Enhanced(class, subject, detail) = rcpt.status;
        // RFC 3463 §2: class 2, 4 or 5; subject and detail 0-999.
        if !matches!(class, 2 | 4 | 5) || subject > 999 || detail > 999 {
            return Err(DsnError::BadStatus(rcpt.status));
        }
    }
    Ok(())
}

/// A number that identifies this notice: it names the `Message-ID` and the
/// boundary. Two notices that differ in anything reported differ here.
fn seed(input: &DsnInput<'_>, report: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (input.kind, input.original_sender, input.queue_id, input.now.timestamp_nanos_opt(), report).hash(&mut h);
    h.finish()
}

/// A MIME boundary that occurs in none of the parts (RFC 2046 §5.1.1).
fn boundary(seed: u64, parts: &[&[u8]]) -> String {
    (0u32..)
        .map(|n| format!("dakiya-dsn-{seed:016x}-{n}"))
        .find(|b| parts.iter().all(|p| !contains(p, b.as_bytes())))
        .expect("some boundary is unused: the parts are finite")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

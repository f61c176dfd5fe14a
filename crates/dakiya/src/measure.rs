//! Refusals the protocol state machine decides by itself (the driver is not asked), counted
//! from the replies it wrote: AUTH or TLS required before MAIL (530 5.7.0, RFC 6409 §4.3,
//! RFC 3207 §4), a message over the size limit (552 5.3.4, RFC 1870 §6.1/§6.3), too many
//! recipients (452 4.5.3, RFC 5321 §4.5.3.1.8). The refusals the driver decides (relay,
//! unknown user, sender, SPF, DMARC, storage) are counted where they are decided.

use dakiya_metrics::{Metrics, Rejection};

/// The replies counted here, by the start of their final line.
const SESSION_REFUSALS: [(&[u8], Rejection); 3] = [
    (b"530 5.7.0 ", Rejection::AuthRequired),
    (b"552 5.3.4 ", Rejection::Size),
    (b"452 4.5.3 ", Rejection::TooManyRecipients),
];

/// The refusals among the replies in `output` (whole reply lines, as the session wrote them).
pub fn session_refusals(output: &[u8]) -> impl Iterator<Item = Rejection> + '_ {
    output
        .split(|&b| b == b'\n')
        .filter_map(|line| SESSION_REFUSALS.iter().find(|(start, _)| line.starts_with(start)).map(|(_, r)| *r))
}

/// Counts the refusals among the replies in `output`.
pub fn count_session_refusals(metrics: &Metrics, output: &[u8]) {
    for r in session_refusals(output) {
        metrics.rejected(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_final_lines_of_the_listed_replies_count() {
        let out = b"250 2.1.0 Sender OK\r\n530 5.7.0 Authentication required\r\n452 4.5.3 Too many recipients\r\n\
                    552-5.3.4 continued\r\n552 5.3.4 Message size exceeds fixed maximum message size\r\n\
                    550 5.7.1 Relaying denied\r\n";
        let found: Vec<Rejection> = session_refusals(out).collect();
        assert_eq!(found, [Rejection::AuthRequired, Rejection::TooManyRecipients, Rejection::Size]);
    }
}

//! Whether a recipient asked for a notice of a given kind (RFC 3461 §4.1).

use crate::{Kind, Notify};

/// Whether a recipient whose `NOTIFY=` parameter was `notify` gets a notice of
/// kind `kind`.
///
/// - `None` (no `NOTIFY=` given): failures, and delays too. RFC 3461 §4.1
///   leaves delay notices to the MTA's discretion; we send them, because a
///   sender who hears nothing for days assumes the mail arrived.
/// - `Some(Notify::NEVER)`: nothing, not even a bounce.
/// - otherwise: exactly the kinds listed. Success is only ever sent on request.
pub fn should_notify(notify: Option<Notify>, kind: Kind) -> bool {
    match notify {
        None => kind != Kind::Success,
        Some(n) => match kind {
            Kind::Failure => n.failure,
            Kind::Delay => n.delay,
            Kind::Success => n.success,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `NOTIFY=` with the given keywords.
    fn given(success: bool, failure: bool, delay: bool) -> Option<Notify> {
        Some(Notify { success, failure, delay })
    }

    #[test]
    fn table() {
        let kinds = [Kind::Failure, Kind::Delay, Kind::Success];
        // (NOTIFY=, expected for Failure, Delay, Success)
        let table: &[(Option<Notify>, [bool; 3])] = &[
            (None, [true, true, false]),
            (Some(Notify::NEVER), [false, false, false]),
            (given(false, true, false), [true, false, false]),
            (given(false, false, true), [false, true, false]),
            (given(true, false, false), [false, false, true]),
            (given(true, true, false), [true, false, true]),
            (given(false, true, true), [true, true, false]),
            (given(true, true, true), [true, true, true]),
        ];
        for (notify, expected) in table {
            for (kind, want) in kinds.iter().zip(expected) {
                assert_eq!(should_notify(*notify, *kind), *want, "NOTIFY={notify:?} kind={kind:?}");
            }
        }
    }
}

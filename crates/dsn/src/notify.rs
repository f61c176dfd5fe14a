//! Whether a recipient asked for a notice of a given kind (RFC 3461 §4.1).

use crate::{Kind, Notify};

/// Whether a recipient whose `NOTIFY=` parameter was `notify` gets a notice of
/// kind `kind`.
///
/// - `None` (no `NOTIFY=` given): failures, and delays too. RFC 3461 §4.1
///   leaves delay notices to the MTA's discretion; we send them, because a
///   sender who hears nothing for days assumes the mail arrived.
/// - `Some(&[])` (`NOTIFY=NEVER`): nothing, not even a bounce.
/// - otherwise: exactly the kinds listed. Success is only ever sent on request.
pub fn should_notify(notify: Option<&[Notify]>, kind: Kind) -> bool {
    let wanted = match kind {
        Kind::Failure => Notify::Failure,
        Kind::Delay => Notify::Delay,
        Kind::Success => Notify::Success,
    };
    match notify {
        None => kind != Kind::Success,
        Some(list) => list.contains(&wanted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Notify::{Delay, Failure, Success};

    #[test]
    fn table() {
        let kinds = [Kind::Failure, Kind::Delay, Kind::Success];
        // (NOTIFY=, expected for Failure, Delay, Success)
        let table: &[(Option<&[Notify]>, [bool; 3])] = &[
            (None, [true, true, false]),
            (Some(&[]), [false, false, false]),
            (Some(&[Failure]), [true, false, false]),
            (Some(&[Delay]), [false, true, false]),
            (Some(&[Success]), [false, false, true]),
            (Some(&[Success, Failure]), [true, false, true]),
            (Some(&[Failure, Delay]), [true, true, false]),
            (Some(&[Success, Failure, Delay]), [true, true, true]),
        ];
        for (notify, expected) in table {
            for (kind, want) in kinds.iter().zip(expected) {
                assert_eq!(should_notify(*notify, *kind), *want, "NOTIFY={notify:?} kind={kind:?}");
            }
        }
    }
}

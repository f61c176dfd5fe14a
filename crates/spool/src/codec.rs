//! How the spool spells the shared vocabulary of `dakiya_proto` on disk, as serde `with`
//! modules: the types are defined once (in `dakiya_proto`, which has no serde), their JSON
//! spelling once, here. The spelling is the one the spool has always written (see
//! docs/spool-format.md), so old files read the same and new files are byte for byte what
//! the code before this module wrote. `dakiya-control` uses the same modules, so the control
//! socket's JSON spells them the same way too.
//!
//! | type | JSON |
//! |---|---|
//! | `Option<Notify>` | `null` (not given), `[]` (NEVER) or a list of `"success"`, `"failure"`, `"delay"` in that order |
//! | `BodyType` | `"seven_bit"` or `"eight_bit_mime"` |
//! | `Option<Ret>` | `null`, `"full"` or `"hdrs"` |
//! | `Enhanced` | `"5.1.1"` |

use dakiya_proto::Enhanced;
use dakiya_proto::params::{BodyType, Notify, Ret};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::FailureDetail;

/// One `NOTIFY=` keyword as written.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum NotifyWord {
    Success,
    Failure,
    Delay,
}

/// `Option<Notify>` as `null` or a list of keywords (`[]` is NEVER). Reading accepts any
/// order and repeats, as the spool always did; writing lists success, failure, delay in
/// that order (the order the server has always built the list in).
pub mod notify {
    use super::*;

    /// Writes `null` or the list.
    pub fn serialize<S: Serializer>(notify: &Option<Notify>, s: S) -> Result<S::Ok, S::Error> {
        let words = notify.map(|n| {
            let flags =
                [(n.success, NotifyWord::Success), (n.failure, NotifyWord::Failure), (n.delay, NotifyWord::Delay)];
            flags.into_iter().filter_map(|(on, word)| on.then_some(word)).collect::<Vec<_>>()
        });
        words.serialize(s)
    }

    /// Reads `null` or the list; an unknown keyword is an error.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Notify>, D::Error> {
        let words = Option::<Vec<NotifyWord>>::deserialize(d)?;
        Ok(words.map(|words| Notify {
            success: words.contains(&NotifyWord::Success),
            failure: words.contains(&NotifyWord::Failure),
            delay: words.contains(&NotifyWord::Delay),
        }))
    }
}

/// A `BODY=` value as written.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum BodyWord {
    SevenBit,
    EightBitMime,
}

/// `BodyType` as `"seven_bit"` or `"eight_bit_mime"`.
pub mod body_type {
    use super::*;

    /// Writes the name.
    pub fn serialize<S: Serializer>(body: &BodyType, s: S) -> Result<S::Ok, S::Error> {
        match body {
            BodyType::SevenBit => BodyWord::SevenBit,
            BodyType::EightBitMime => BodyWord::EightBitMime,
        }
        .serialize(s)
    }

    /// Reads the name; another is an error.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BodyType, D::Error> {
        Ok(match BodyWord::deserialize(d)? {
            BodyWord::SevenBit => BodyType::SevenBit,
            BodyWord::EightBitMime => BodyType::EightBitMime,
        })
    }
}

/// A `RET=` value as written.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RetWord {
    Full,
    Hdrs,
}

/// `Option<Ret>` as `null`, `"full"` or `"hdrs"`.
pub mod ret {
    use super::*;

    /// Writes `null` or the name.
    pub fn serialize<S: Serializer>(ret: &Option<Ret>, s: S) -> Result<S::Ok, S::Error> {
        ret.map(|r| match r {
            Ret::Full => RetWord::Full,
            Ret::Hdrs => RetWord::Hdrs,
        })
        .serialize(s)
    }

    /// Reads `null` or the name; another is an error.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ret>, D::Error> {
        Ok(Option::<RetWord>::deserialize(d)?.map(|r| match r {
            RetWord::Full => Ret::Full,
            RetWord::Hdrs => Ret::Hdrs,
        }))
    }
}

/// `Enhanced` as the string `"class.subject.detail"`. Reading text that is not such a code
/// is an error here; the status log reads recipient states leniently instead (see
/// [`failed_detail`]).
pub mod enhanced {
    use super::*;

    /// Writes `"5.1.1"`.
    pub fn serialize<S: Serializer>(code: &Enhanced, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(code)
    }

    /// Reads `"5.1.1"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Enhanced, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|_| serde::de::Error::custom(format!("invalid enhanced status code {text:?}")))
    }
}

/// A failure detail as written, its status still text.
#[derive(Deserialize)]
struct RawDetail {
    status: String,
    #[serde(default)]
    remote_mta: Option<String>,
    #[serde(default)]
    diagnostic: Option<String>,
}

impl RawDetail {
    fn into_detail(self, fallback: Enhanced) -> FailureDetail {
        FailureDetail {
            status: self.status.parse().unwrap_or(fallback),
            remote_mta: self.remote_mta,
            diagnostic: self.diagnostic,
        }
    }
}

// Reading a status record whose `status` is not an enhanced status code.
//
// Every status this code (and the code before it) writes is an `Enhanced` printed as
// `class.subject.detail`, so such a record only comes from a file edited by hand or written
// by something else. It must not make the record unreadable: a skipped record would bring
// back the recipient's previous state (a delivered or bounced recipient could be delivered
// again, a sent notice sent again). So the record is read, with the status that the notice
// builder used to fall back to when it could not parse the text: X.0.0 "other or undefined
// status" (RFC 3463 §3.1) of the class the state implies, 5.0.0 for a failed recipient and
// 4.0.0 for a deferred one. The remote MTA and diagnostic are kept. The text itself is not
// kept: `dakiya queue show` prints the fallback code.

/// The `detail` of a failed recipient: an unreadable status reads as 5.0.0.
pub(crate) fn failed_detail<'de, D: Deserializer<'de>>(d: D) -> Result<Option<FailureDetail>, D::Error> {
    Ok(Option::<RawDetail>::deserialize(d)?.map(|raw| raw.into_detail(Enhanced(5, 0, 0))))
}

/// The `detail` of a deferred recipient: an unreadable status reads as 4.0.0.
pub(crate) fn deferred_detail<'de, D: Deserializer<'de>>(d: D) -> Result<Option<FailureDetail>, D::Error> {
    Ok(Option::<RawDetail>::deserialize(d)?.map(|raw| raw.into_detail(Enhanced(4, 0, 0))))
}

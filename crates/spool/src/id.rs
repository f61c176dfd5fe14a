//! Queue identifiers: 16 uppercase hex digits that name files in the spool.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Number of hex digits for the seconds part (36 bits: good until the year 4147).
const SECS_DIGITS: usize = 9;
/// Number of hex digits for the per-process counter part.
const COUNTER_DIGITS: usize = 7;
const COUNTER_MASK: u32 = (1 << (4 * COUNTER_DIGITS)) - 1;
const SECS_MASK: u64 = (1 << (4 * SECS_DIGITS)) - 1;

/// The identifier of a queued message.
///
/// Exactly 16 uppercase hexadecimal digits: 9 for the unix time in seconds at
/// which the id was issued, then 7 for a per-process counter that starts at a
/// random value. Ids name files in the spool, so parsing is strict: anything
/// else (lowercase, `../x`, wrong length) is refused, which keeps queue ids
/// taken from the command line from escaping the spool directory.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct QueueId(String);

/// Why a string is not a [`QueueId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid queue id: expected 16 uppercase hex digits")]
#[non_exhaustive]
pub struct InvalidQueueId;

impl QueueId {
    /// Total length of an id, in characters.
    pub const LEN: usize = SECS_DIGITS + COUNTER_DIGITS;

    /// The id as a string slice (always 16 ASCII characters).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The unix time (seconds) encoded in the first 9 digits.
    pub fn timestamp(&self) -> u64 {
        u64::from_str_radix(&self.0[..SECS_DIGITS], 16).unwrap_or(0)
    }

    /// Issues a fresh id; unique within this process.
    pub(crate) fn generate() -> QueueId {
        static STATE: Mutex<Option<Generator>> = Mutex::new(None);
        let mut guard = STATE.lock().unwrap_or_else(PoisonError::into_inner);
        let generator = guard.get_or_insert_with(Generator::new);
        let (secs, counter) = generator.next(now_secs());
        QueueId(format!("{:0sw$X}{:0cw$X}", secs & SECS_MASK, counter, sw = SECS_DIGITS, cw = COUNTER_DIGITS))
    }
}

/// Per-process id state. The seconds part never goes backwards (a clock
/// stepped back keeps using the last second seen) and advances by itself if
/// the counter wraps within one second, so ids are unique within a process.
struct Generator {
    secs: u64,
    counter: u32,
    /// Counter value at which the current second started; reaching it again
    /// means the 2^28 values of this second are used up.
    start: u32,
}

impl Generator {
    fn new() -> Generator {
        let counter = random_u32() & COUNTER_MASK;
        Generator { secs: 0, counter, start: counter }
    }

    fn next(&mut self, now: u64) -> (u64, u32) {
        if now > self.secs {
            self.secs = now;
            self.start = self.counter;
        }
        let issued = (self.secs, self.counter);
        self.counter = (self.counter + 1) & COUNTER_MASK;
        if self.counter == self.start {
            // Every counter value has been used in this second.
            self.secs += 1;
        }
        issued
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A random value from the OS-seeded hasher keys std already uses for
/// `HashMap`; good enough to make counters of successive processes differ.
fn random_u32() -> u32 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.write_u32(std::process::id());
    (hasher.finish() >> 16) as u32
}

impl FromStr for QueueId {
    type Err = InvalidQueueId;

    fn from_str(s: &str) -> Result<QueueId, InvalidQueueId> {
        let valid = s.len() == QueueId::LEN && s.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
        if valid { Ok(QueueId(s.to_owned())) } else { Err(InvalidQueueId) }
    }
}

impl TryFrom<String> for QueueId {
    type Error = InvalidQueueId;

    fn try_from(s: String) -> Result<QueueId, InvalidQueueId> {
        s.parse()
    }
}

impl From<QueueId> for String {
    fn from(id: QueueId) -> String {
        id.0
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueueId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn parse_accepts_only_16_uppercase_hex() {
        assert!("0123456789ABCDEF".parse::<QueueId>().is_ok());
        for bad in [
            "",
            "../x",
            "../../etc/passwd",
            "0123456789abcdef",
            "0123456789ABCDE",
            "0123456789ABCDEF0",
            "0123456789ABCDEG",
            "0123456789ABC/EF",
            "0123456789ABCDE\n",
            "+123456789ABCDEF",
            "０123456789ABCDE",
        ] {
            assert_eq!(bad.parse::<QueueId>(), Err(InvalidQueueId), "{bad:?}");
        }
    }

    #[test]
    fn generated_ids_parse_and_are_unique() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = QueueId::generate();
            assert_eq!(id.as_str().parse::<QueueId>().unwrap(), id);
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn generator_never_repeats_when_clock_goes_back_or_counter_wraps() {
        let mut g = Generator { secs: 0, counter: COUNTER_MASK - 1, start: COUNTER_MASK - 1 };
        let a = g.next(100);
        let b = g.next(100);
        let c = g.next(50); // clock stepped back
        assert_eq!(a, (100, COUNTER_MASK - 1));
        assert_eq!(b, (100, COUNTER_MASK));
        assert_eq!(c, (100, 0));
        // Exhaust the rest of second 100: wraps to 101 at the start value.
        g.counter = COUNTER_MASK - 2;
        assert_eq!(g.next(100), (100, COUNTER_MASK - 2));
        assert_eq!(g.next(100), (101, COUNTER_MASK - 1));
    }

    #[test]
    fn serde_round_trip_validates() {
        let id: QueueId = "00000000000000AB".parse().unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"00000000000000AB\"");
        assert_eq!(serde_json::from_str::<QueueId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<QueueId>("\"../x\"").is_err());
    }

    #[test]
    fn timestamp_is_leading_digits() {
        let id: QueueId = "0655E5A000000001".parse().unwrap();
        assert_eq!(id.timestamp(), 0x0655E5A00);
    }
}

//! The queue manager of dakiya: the scheduler, delivery runs (local Maildir and remote
//! SMTP), the state machine of each recipient and the notices sent back to the sender
//! (DSN: failure, delay, success).
//!
//! A pure core decides, with time passed in and no I/O, and is unit-tested at its edges:
//! - [`Outcome`]: what one attempt to one recipient came to, local or remote alike;
//! - [`Transition::after`]: a recipient's next state (the retry schedule, the maximum age,
//!   4.4.7 expiry);
//! - [`Plan`]: which notices a finished run calls for, what to write to the spool, whether
//!   the message leaves it and when it is next due;
//! - [`Book`]: the scheduler's bookkeeping (ready, due, running, held, forced) and the
//!   operator's controls.
//!
//! The shell around it is thin: [`start`] spawns the scheduler task, [`run()`] carries out
//! one delivery run on the blocking pool and the outbound service. See `docs/queue.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod book;
mod ctx;
mod history;
mod lmtp;
mod local;
mod loops;
mod measure;
mod notice;
mod outcome;
mod plan;
mod queue;
mod remote;
mod round;
mod run;
mod state;
#[cfg(test)]
mod testlog;

pub use book::{Book, Counts, Start};
pub use ctx::{Clock, Ctx};
pub use local::{Mailboxes, mailbox_full};
pub use loops::{MAX_RECEIVED, ReceivedCounter, count_received, loop_failure};
pub use outcome::{Failure, Outcome};
pub use plan::{Notice, Plan, Settlement};
pub use queue::{QueueHandle, Snapshot, start};
pub use round::Rounds;
pub use run::{RunOutcome, run, run_counted};
pub use state::{RetryPolicy, Transition, next_due};

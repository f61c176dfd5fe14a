//! Starting a copy's writeback as soon as it is written, so that the copies of a round get
//! their blocks in the same journal transaction (docs/maildir.md, "Delivery steps and
//! durability"; docs/performance.md §7).
//!
//! ext4 (and XFS, btrfs) allocate a file's blocks only when its pages are written back
//! (delayed allocation). A copy written and fsynced at once puts its allocation in the
//! transaction its own fsync commits: one journal commit per copy. When every copy of a
//! round is written first and its writeback started at once, all their allocations land in
//! the running transaction; the first fsync commits them all, and the later ones find their
//! transaction committed.
//!
//! `sync_file_range(SYNC_FILE_RANGE_WRITE)` is the call made for this, but neither `nix`
//! nor `rustix` wraps it, and dakiya forbids `unsafe`. `posix_fadvise(POSIX_FADV_DONTNEED)`
//! starts the same asynchronous writeback of its range on Linux (mm/fadvise.c, with
//! `WB_SYNC_NONE`), then drops the range's **whole** pages that are clean by then. The
//! range given here starts at byte 1, so the first page is never whole in it and neither is
//! the last (unless it ends the range exactly): a copy under 8 KiB keeps every page in the
//! page cache; a larger one may lose the clean pages in its middle, which a reader then
//! reads from disk. The advice is only a hint: durability still comes from the fsync.

use std::fs::File;

use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
use nix::libc::off_t;

/// Starts the writeback of the first `size` bytes of `file` without waiting for it. Errors
/// are ignored (a file system without it, or a kernel that ignores the advice: the fsync
/// then does the whole work, as without this call).
pub(crate) fn start(file: &File, size: u64) {
    let Ok(len) = off_t::try_from(size) else { return };
    if len > 0 {
        let _ = posix_fadvise(file, 1, len, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
    }
}

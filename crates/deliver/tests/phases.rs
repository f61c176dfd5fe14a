//! A round's copies in phases (docs/maildir.md, "Delivery steps and durability"): every copy
//! written first ([`Maildir::write_within`]), then each fsynced, then each linked (renamed)
//! into `new/`, then `new/` fsynced once. A copy's file is fsynced before its name appears in
//! `new/`, whatever the caller does; a copy dropped in any phase leaves nothing behind.

use std::fs;

use dakiya_deliver::{CopyBuffers, FailureKind, Maildir, Pending, Staging};

mod common;
use common::{each_staging, names};

const PREFIX: &[u8] = b"Return-Path: <sender@example.org>\r\n";

/// Copy `i`'s body: a few lines, the third copy more than one 64 KiB chunk and past the
/// 8 KiB below which the early writeback keeps every page cached.
fn body(i: usize) -> String {
    format!("Subject: {i}\r\n\r\n{}\r\n", "y".repeat(if i == 2 { 100_000 } else { 10 * i }))
}

fn write(md: &Maildir, i: usize, bufs: &mut CopyBuffers) -> Pending {
    md.write_within(PREFIX, &mut body(i).as_bytes(), "h", None, bufs).unwrap()
}

#[test]
fn a_round_writes_every_copy_then_fsyncs_each_then_names_each() {
    each_staging(|options, staging| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("box");
        let md = Maildir::open_or_create_with(&root, options).unwrap();
        let mut bufs = CopyBuffers::default();
        let in_tmp = if staging == Staging::Rename { 3 } else { 0 };
        let mut copies: Vec<Pending> = (0..3).map(|i| write(&md, i, &mut bufs)).collect();
        assert_eq!(md.file_sync_count(), 0, "{staging:?}: written, not fsynced");
        assert!(copies.iter().all(|c| !c.is_synced()));
        assert!(names(&root.join("new")).is_empty(), "{staging:?}: no name before the fsync");
        assert_eq!(names(&root.join("tmp")).len(), in_tmp, "{staging:?}");
        for c in &mut copies {
            md.fsync(c).unwrap();
        }
        assert_eq!(md.file_sync_count(), 3, "{staging:?}");
        assert!(names(&root.join("new")).is_empty(), "{staging:?}: fsynced, not yet named");
        let staged: Vec<_> = copies.into_iter().map(|c| md.link(c, "h", &mut bufs).unwrap()).collect();
        assert_eq!(md.file_sync_count(), 3, "{staging:?}: a copy fsynced already is not fsynced again");
        assert!(names(&root.join("tmp")).is_empty(), "{staging:?}");
        assert_eq!(names(&root.join("new")).len(), 3, "{staging:?}");
        md.commit_staged(&staged.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(md.dir_sync_stats(), (1, 1), "{staging:?}: one fsync of new/ for the round");
        assert_eq!(md.staging(), Some(staging));
        for (i, s) in staged.iter().enumerate() {
            let expected = format!("Return-Path: <sender@example.org>\n{}", body(i).replace("\r\n", "\n"));
            assert_eq!(fs::read_to_string(&s.path).unwrap(), expected, "{staging:?} copy {i}");
            let suffix = format!(",S={},W={}", expected.len(), expected.len() + expected.matches('\n').count());
            assert!(s.path.to_str().unwrap().ends_with(&suffix), "{}", s.path.display());
        }
    });
}

/// The rule does not depend on the caller calling `fsync`: `link` fsyncs a copy that is not.
#[test]
fn link_fsyncs_a_copy_before_naming_it() {
    each_staging(|options, staging| {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::open_or_create_with(dir.path(), options).unwrap();
        let mut bufs = CopyBuffers::default();
        let copy = write(&md, 0, &mut bufs);
        assert_eq!(md.file_sync_count(), 0);
        let staged = md.link(copy, "h", &mut bufs).unwrap();
        assert_eq!(md.file_sync_count(), 1, "{staging:?}: fsynced by link");
        assert_eq!(names(&dir.path().join("new")), [staged.path.file_name().unwrap().to_str().unwrap()]);
    });
}

/// A copy dropped after its write or its fsync (another phase failed for it) leaves nothing
/// in `tmp/` or `new/`; a link that fails leaves nothing either.
#[test]
fn a_copy_dropped_or_failing_in_any_phase_leaves_nothing() {
    each_staging(|options, staging| {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::open_or_create_with(dir.path(), options).unwrap();
        let mut bufs = CopyBuffers::default();
        let written = write(&md, 0, &mut bufs);
        let mut fsynced = write(&md, 1, &mut bufs);
        md.fsync(&mut fsynced).unwrap();
        drop((written, fsynced));
        assert!(names(&dir.path().join("tmp")).is_empty(), "{staging:?}");
        assert!(names(&dir.path().join("new")).is_empty(), "{staging:?}");
        // `new/` replaced by a file: the link (rename) into it fails.
        let mut copy = write(&md, 0, &mut bufs);
        md.fsync(&mut copy).unwrap();
        fs::remove_dir(dir.path().join("new")).unwrap();
        fs::write(dir.path().join("new"), b"not a directory").unwrap();
        let err = md.link(copy, "h", &mut bufs).unwrap_err();
        assert_eq!(err.kind, FailureKind::Temporary, "{err}");
        assert!(names(&dir.path().join("tmp")).is_empty(), "{staging:?}");
    });
}

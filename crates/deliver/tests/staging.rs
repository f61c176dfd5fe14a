//! How copies reach `new/`: anonymous files (O_TMPFILE) linked into `new/`, and the
//! fallback through `tmp/` + rename (docs/maildir.md, "Delivery steps and durability").
//! The temporary directories are on the root file system (ext4 here), which has O_TMPFILE.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use dakiya_deliver::{FailureKind, Maildir, QuotaLimit, Staging, StagingOptions};

mod common;
use common::names;

const PREFIX: &[u8] = b"Return-Path: <sender@example.org>\r\n";

fn renaming() -> StagingOptions {
    StagingOptions { anonymous: false, ..StagingOptions::default() }
}

/// As in a sandbox without `/proc`: linking an anonymous file through it fails.
fn without_proc() -> StagingOptions {
    StagingOptions { fd_dir: PathBuf::from("/nonexistent/proc/self/fd"), ..StagingOptions::default() }
}

/// A body whose reads look into the Maildir half-way through: what a reader (Dovecot, our
/// POP3) could see while the copy is being written.
struct Peeking {
    root: PathBuf,
    parts: Vec<&'static [u8]>,
    seen: Option<(Vec<String>, Vec<String>)>,
}

impl Peeking {
    fn new(root: &Path) -> Peeking {
        Peeking { root: root.to_owned(), parts: vec![b"Subject: a\r\n", b"\r\nbody\r\n"], seen: None }
    }
}

impl Read for Peeking {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.parts.len() == 1 {
            self.seen = Some((names(&self.root.join("tmp")), names(&self.root.join("new"))));
        }
        let Some(part) = self.parts.first().copied() else { return Ok(0) };
        self.parts.remove(0);
        buf[..part.len()].copy_from_slice(part);
        Ok(part.len())
    }
}

/// Delivers two messages with `options`, checking each copy (content, name, sizes, mode,
/// nothing left in `tmp/`), and returns what the second copy's reader saw in `tmp/` and
/// `new/` half-way through.
fn deliver_two(options: StagingOptions, expected: Staging) -> (Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("box");
    let md = Maildir::open_or_create_with(&root, options).unwrap();
    let mut seen = None;
    for i in 0..2 {
        let mut body = Peeking::new(&root);
        let path = md.deliver(PREFIX, &mut body, "mx.example.com").unwrap();
        assert_eq!(md.staging(), Some(expected), "copy {i}");
        assert_eq!(path.parent().unwrap(), root.join("new"));
        let content = fs::read(&path).unwrap();
        assert_eq!(content, b"Return-Path: <sender@example.org>\nSubject: a\n\nbody\n");
        let name = path.file_name().unwrap().to_str().unwrap();
        let suffix = format!(".mx.example.com,S={},W={}", content.len(), content.len() + 4);
        assert!(name.ends_with(&suffix), "{name}");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "{name}");
        assert!(names(&root.join("tmp")).is_empty(), "copy {i}");
        assert_eq!(names(&root.join("new")).len(), i + 1);
        seen = body.seen;
    }
    seen.unwrap()
}

/// The default: the copy has no name until complete, in neither `tmp/` nor `new/`.
#[test]
fn anonymous_copies_are_invisible_until_linked_complete() {
    let (tmp, new) = deliver_two(StagingOptions::default(), Staging::Anonymous);
    assert!(tmp.is_empty(), "{tmp:?}");
    assert_eq!(new.len(), 1, "only the first message: {new:?}");
}

/// The fallback (no O_TMPFILE on the file system): the copy is written in `tmp/`.
#[test]
fn without_anonymous_files_copies_go_through_tmp() {
    let (tmp, new) = deliver_two(renaming(), Staging::Rename);
    assert_eq!(tmp.len(), 1, "{tmp:?}");
    assert_eq!(new.len(), 1, "{new:?}");
}

/// Linking through `/proc` fails: the first copy is rescued through `tmp/` (delivered, not
/// deferred), and the Maildir decides once: the second copy goes straight to `tmp/`.
#[test]
fn link_failure_falls_back_to_rename_once() {
    let (tmp, new) = deliver_two(without_proc(), Staging::Rename);
    assert_eq!(tmp.len(), 1, "the second copy was written in tmp/: {tmp:?}");
    assert_eq!(new.len(), 1, "{new:?}");
}

/// Anonymous copies do not use `tmp/` at all.
#[test]
fn anonymous_copies_need_no_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::open_or_create(dir.path()).unwrap();
    fs::remove_dir(dir.path().join("tmp")).unwrap();
    let path = md.deliver(PREFIX, &mut &b"body\r\n"[..], "h").unwrap();
    assert_eq!(fs::read(path).unwrap(), b"Return-Path: <sender@example.org>\nbody\n");
}

/// Failures after the write, before the link: nothing in `new/` or `tmp/`, a temporary
/// failure, and the Maildir keeps using anonymous files.
#[test]
fn failure_between_write_and_link_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::open_or_create(dir.path()).unwrap();
    // The link fails: a name longer than a file system allows (NAME_MAX, 255).
    let long_host = "h".repeat(300);
    let err = md.deliver(PREFIX, &mut &b"body\r\n"[..], &long_host).unwrap_err();
    assert_eq!(err.kind, FailureKind::Temporary, "{err}");
    assert!(err.to_string().starts_with("link into "), "{err}");
    // The quota check, made once the size is known, refuses it.
    let limit = Some(QuotaLimit { bytes: 10, messages: 0 });
    let err = md.deliver_within(PREFIX, &mut &b"body\r\n"[..], "h", limit).unwrap_err();
    assert!(err.is_mailbox_full(), "{err}");
    assert!(names(&dir.path().join("new")).is_empty());
    assert!(names(&dir.path().join("tmp")).is_empty());
    assert_eq!(md.staging(), None, "not decided by failures");
    md.deliver(PREFIX, &mut &b"body\r\n"[..], "h").unwrap();
    assert_eq!(md.staging(), Some(Staging::Anonymous));
}

/// Under a quota, anonymous copies are counted in `maildirsize` as before.
#[test]
fn quota_counts_anonymous_copies() {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::open_or_create(dir.path()).unwrap();
    let limit = Some(QuotaLimit { bytes: 100, messages: 0 });
    md.deliver_within(b"", &mut &[b'x'; 40][..], "h", limit).unwrap();
    md.deliver_within(b"", &mut &[b'x'; 60][..], "h", limit).unwrap();
    assert_eq!(md.staging(), Some(Staging::Anonymous));
    let size = fs::read_to_string(dir.path().join("maildirsize")).unwrap();
    assert_eq!(size, "100S,0C\n0 0\n40 1\n60 1\n");
    let err = md.deliver_within(b"", &mut &b"x"[..], "h", limit).unwrap_err();
    assert!(err.is_mailbox_full(), "{err}");
    assert_eq!(names(&dir.path().join("new")).len(), 2);
}

/// Linking through `/proc` fails and so does the rescue through `tmp/` (not a directory): a
/// temporary failure that leaves nothing in `new/` and does not decide the staging.
#[test]
fn failed_rescue_does_not_decide() {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::open_or_create_with(dir.path(), without_proc()).unwrap();
    fs::remove_dir(dir.path().join("tmp")).unwrap();
    fs::write(dir.path().join("tmp"), b"not a directory").unwrap();
    let err = md.deliver(PREFIX, &mut &b"body\r\n"[..], "h").unwrap_err();
    assert_eq!(err.kind, FailureKind::Temporary, "{err}");
    assert!(names(&dir.path().join("new")).is_empty());
    assert_eq!(md.staging(), None);
}

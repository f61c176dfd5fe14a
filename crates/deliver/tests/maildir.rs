//! Maildir delivery on a real file system.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use dakiya_deliver::{CopyBuffers, FailureKind, Maildir, Staging, StagingOptions};

mod common;
use common::{each_staging, names};

const PREFIX: &[u8] = b"Return-Path: <sender@example.org>\r\nDelivered-To: user@example.com\r\n";

/// Hands out the data in reads of the given sizes, cycling.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: &'a [usize],
    turn: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = self.sizes[self.turn % self.sizes.len()];
        self.turn += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn delivery_lands_in_new_with_lf_line_ends_and_size() {
    each_staging(delivery_lands_in_new_with);
}

fn delivery_lands_in_new_with(options: StagingOptions, staging: Staging) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mail/example.com/user");
    let maildir = Maildir::open_or_create_with(&root, options).unwrap();
    for sub in ["", "tmp", "new", "cur"] {
        let mode = fs::metadata(root.join(sub)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{sub}");
    }
    let mut body: &[u8] = b"Subject: hello\r\n\r\nfirst line\r\n\r\nlast line\r\n";
    let path = maildir.deliver(PREFIX, &mut body, "mx.example.com").unwrap();

    assert_eq!(path.parent().unwrap(), root.join("new"));
    let content = fs::read(&path).unwrap();
    assert_eq!(
        content,
        b"Return-Path: <sender@example.org>\nDelivered-To: user@example.com\n\
          Subject: hello\n\nfirst line\n\nlast line\n"
    );
    let name = path.file_name().unwrap().to_str().unwrap();
    // W= is the size with CRLF line ends: one more octet per line.
    let lines = content.iter().filter(|&&b| b == b'\n').count();
    assert!(name.ends_with(&format!(".mx.example.com,S={},W={}", content.len(), content.len() + lines)), "{name}");
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(names(&root.join("tmp")).is_empty());
    assert!(names(&root.join("cur")).is_empty());
    assert_eq!(maildir.staging(), Some(staging));
    // Opening again is fine.
    Maildir::open_or_create(&root).unwrap();
}

#[test]
fn crlf_split_across_read_boundaries_becomes_lf() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = Maildir::open_or_create(dir.path()).unwrap();
    // Lines of varying length so CR and LF fall on every side of a boundary,
    // including the 64 KiB internal chunk.
    let mut crlf = Vec::new();
    let mut lf = Vec::new();
    for i in 0..20_000 {
        let line = "x".repeat(i % 97);
        crlf.extend_from_slice(format!("{line}\r\n").as_bytes());
        lf.extend_from_slice(format!("{line}\n").as_bytes());
    }
    for sizes in [&[1usize][..], &[2, 3], &[7, 1, 64 * 1024 - 1], &[65_535, 65_536, 65_537]] {
        let mut reader = Chunked { data: &crlf, sizes, turn: 0 };
        let path = maildir.deliver(b"X-A: 1\r\n", &mut reader, "h").unwrap();
        let content = fs::read(&path).unwrap();
        assert_eq!(&content[..7], b"X-A: 1\n");
        assert!(content[7..] == lf[..], "sizes {sizes:?}");
    }
    // A CR that ends the prefix and an LF that starts the body are separate
    // line ends: the prefix is always complete lines.
    let mut body: &[u8] = b"\r\nbody\r\n";
    let path = maildir.deliver(b"X-B: 2\r\n", &mut body, "h").unwrap();
    assert_eq!(fs::read(path).unwrap(), b"X-B: 2\n\nbody\n");
}

#[test]
fn names_are_unique_across_threads() {
    each_staging(|options, staging| {
        let maildir = names_are_unique_across_threads_with(options);
        assert_eq!(maildir.staging(), Some(staging));
    });
}

fn names_are_unique_across_threads_with(options: StagingOptions) -> Arc<Maildir> {
    const THREADS: usize = 8;
    const EACH: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let maildir = Arc::new(Maildir::open_or_create_with(dir.path(), options).unwrap());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let maildir = Arc::clone(&maildir);
            thread::spawn(move || {
                (0..EACH)
                    .map(|i| {
                        let text = format!("thread {t} message {i}\r\n");
                        let path = maildir.deliver(b"", &mut text.as_bytes(), "host").unwrap();
                        (path, text.replace("\r\n", "\n"))
                    })
                    .collect::<Vec<(PathBuf, String)>>()
            })
        })
        .collect();
    let delivered: Vec<_> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let unique: HashSet<_> = delivered.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(unique.len(), THREADS * EACH);
    assert_eq!(names(&dir.path().join("new")).len(), THREADS * EACH);
    for (path, text) in &delivered {
        assert_eq!(&fs::read_to_string(path).unwrap(), text);
    }
    assert!(names(&dir.path().join("tmp")).is_empty());
    maildir
}

/// Makes directories read-only for the duration of a test: mode 0500, and,
/// when running as root (which ignores mode bits), the immutable attribute,
/// which binds root too. Undone on drop so the temp dir can be removed.
struct ReadOnly {
    dirs: Vec<PathBuf>,
    immutable: bool,
}

impl ReadOnly {
    /// `None` if the directories could not be made read-only here.
    fn apply(dirs: &[PathBuf]) -> Option<ReadOnly> {
        let mut guard = ReadOnly { dirs: dirs.to_vec(), immutable: false };
        for dir in dirs {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o500)).unwrap();
        }
        if !writable(&dirs[0]) {
            return Some(guard);
        }
        guard.immutable = true;
        let ok = std::process::Command::new("chattr").arg("+i").args(dirs).status().is_ok_and(|s| s.success());
        (ok && !writable(&dirs[0])).then_some(guard)
    }
}

fn writable(dir: &Path) -> bool {
    let probe = dir.join("probe");
    let ok = fs::write(&probe, b"").is_ok();
    let _ = fs::remove_file(probe);
    ok
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if self.immutable {
            let _ = std::process::Command::new("chattr").arg("-i").args(&self.dirs).status();
        }
        for dir in &self.dirs {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        }
    }
}

#[test]
fn read_only_maildir_is_a_temporary_failure_and_leaves_nothing() {
    each_staging(|options, _| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ro");
        let maildir = Maildir::open_or_create_with(&root, options).unwrap();
        let Some(_guard) = ReadOnly::apply(&[root.join("tmp"), root.join("new")]) else {
            eprintln!("SKIPPED: cannot make a directory read-only here (root without chattr)");
            return;
        };
        let err = maildir.deliver(PREFIX, &mut &b"body\r\n"[..], "h").unwrap_err();
        assert_eq!(err.kind, FailureKind::Temporary, "{err}");
        assert_eq!(err.io_error().unwrap().kind(), io::ErrorKind::PermissionDenied);
        assert!(names(&root.join("new")).is_empty());
        assert!(names(&root.join("tmp")).is_empty());
    });
}

/// Only `new/` read-only: the anonymous file cannot be created in it; through `tmp/` the
/// file is written, the rename fails, and the temporary file is removed.
#[test]
fn read_only_new_is_a_temporary_failure_and_cleans_tmp() {
    each_staging(|options, _| {
        let dir = tempfile::tempdir().unwrap();
        let maildir = Maildir::open_or_create_with(dir.path(), options).unwrap();
        let Some(guard) = ReadOnly::apply(&[dir.path().join("new")]) else {
            eprintln!("SKIPPED: cannot make a directory read-only here (root without chattr)");
            return;
        };
        let err = maildir.deliver(PREFIX, &mut &b"body\r\n"[..], "h").unwrap_err();
        assert_eq!(err.kind, FailureKind::Temporary, "{err}");
        assert!(names(&dir.path().join("tmp")).is_empty());
        drop(guard);
        assert!(names(&dir.path().join("new")).is_empty());
    });
}

/// Root-proof variant: `tmp/` unusable, so the file cannot be created (copies through
/// `tmp/`; anonymous copies do not use it: tests/staging.rs).
#[test]
fn unwritable_tmp_is_a_temporary_failure() {
    let dir = tempfile::tempdir().unwrap();
    let rename = StagingOptions { anonymous: false, ..StagingOptions::default() };
    let maildir = Maildir::open_or_create_with(dir.path(), rename).unwrap();
    fs::remove_dir(dir.path().join("tmp")).unwrap();
    fs::write(dir.path().join("tmp"), b"not a directory").unwrap();
    let err = maildir.deliver(PREFIX, &mut &b"body\r\n"[..], "h").unwrap_err();
    assert_eq!(err.kind, FailureKind::Temporary, "{err}");
    assert!(names(&dir.path().join("new")).is_empty());
}

/// Root-proof variant: `new/` is not a directory. Through `tmp/` the rename into it fails
/// after the file was written and the temporary file must be cleaned up; an anonymous file
/// cannot be opened in it. Either way a temporary failure, and no staging decided by it.
#[test]
fn failed_rename_into_new_leaves_nothing_behind() {
    each_staging(|options, staging| {
        let dir = tempfile::tempdir().unwrap();
        let maildir = Maildir::open_or_create_with(dir.path(), options).unwrap();
        fs::remove_dir(dir.path().join("new")).unwrap();
        fs::write(dir.path().join("new"), b"not a directory").unwrap();
        let err = maildir.deliver(PREFIX, &mut &b"body\r\n"[..], "h").unwrap_err();
        assert_eq!(err.kind, FailureKind::Temporary, "{err}");
        assert!(names(&dir.path().join("tmp")).is_empty());
        let decided = (staging == Staging::Rename).then_some(Staging::Rename);
        assert_eq!(maildir.staging(), decided, "a failure does not decide");
    });
}

#[test]
fn body_read_error_is_temporary_and_cleans_up() {
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("spool read failed"));
            }
            let n = self.0.min(buf.len());
            buf[..n].fill(b'a');
            self.0 -= n;
            Ok(n)
        }
    }
    each_staging(|options, _| {
        let dir = tempfile::tempdir().unwrap();
        let maildir = Maildir::open_or_create_with(dir.path(), options).unwrap();
        let err = maildir.deliver(PREFIX, &mut Failing(200_000), "h").unwrap_err();
        assert_eq!(err.kind, FailureKind::Temporary);
        assert!(err.to_string().contains("spool read failed"), "{err}");
        assert!(names(&dir.path().join("tmp")).is_empty());
        assert!(names(&dir.path().join("new")).is_empty());
    });
}

#[test]
fn open_or_create_fails_temporarily_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    fs::write(&path, b"x").unwrap();
    let err = Maildir::open_or_create(&path).err().unwrap();
    assert_eq!(err.kind, FailureKind::Temporary);
}

/// Under a quota: messages are delivered and counted in `maildirsize` until the next one
/// would not fit; that one is refused as "mailbox full" (temporary) and leaves nothing behind.
#[test]
fn quota_refuses_the_message_that_does_not_fit() {
    each_staging(|options, _| quota_refuses_with(options));
}

fn quota_refuses_with(options: StagingOptions) {
    use dakiya_deliver::QuotaLimit;
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::open_or_create_with(&dir.path().join("m"), options).unwrap();
    let limit = Some(QuotaLimit { bytes: 100, messages: 0 });
    let body = |n: usize| vec![b'x'; n];
    md.deliver_within(b"", &mut &body(40)[..], "h", limit).unwrap();
    md.deliver_within(b"", &mut &body(60)[..], "h", limit).unwrap();
    let size = fs::read_to_string(md.path().join("maildirsize")).unwrap();
    assert_eq!(size, "100S,0C\n0 0\n40 1\n60 1\n", "recalculated once (empty), then a line per message");
    let err = md.deliver_within(b"", &mut &body(1)[..], "h", limit).unwrap_err();
    assert!(err.is_mailbox_full() && err.kind == FailureKind::Temporary, "{err}");
    assert!(err.to_string().starts_with("mailbox full: 100 bytes in 2 messages"), "{err}");
    assert_eq!(names(&md.path().join("new")).len(), 2);
    assert!(names(&md.path().join("tmp")).is_empty());
    // Without a quota the same Maildir takes it, and maildirsize is left alone.
    md.deliver(b"", &mut &body(1)[..], "h").unwrap();
    assert_eq!(fs::read_to_string(md.path().join("maildirsize")).unwrap(), size);
}

/// Staging writes, fsyncs and links (renames) each copy into `new/`; one commit then fsyncs
/// `new/` once for all of them (group commit of the directory fsync, for a round of deliveries).
#[test]
fn staged_copies_share_one_fsync_of_new() {
    each_staging(|options, _| staged_copies_share_one_fsync_with(options));
}

fn staged_copies_share_one_fsync_with(options: StagingOptions) {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::open_or_create_with(&dir.path().join("box"), options).unwrap();
    let mut bufs = CopyBuffers::default();
    let staged: Vec<_> = (0..3)
        .map(|i| {
            let body = format!("Subject: {i}\r\n\r\n{}\r\n", "x".repeat((2 - i) * 70_000));
            md.stage_within(PREFIX, &mut body.as_bytes(), "h", None, &mut bufs).unwrap()
        })
        .collect();
    assert!(names(&dir.path().join("box/tmp")).is_empty(), "nothing left in tmp/");
    assert_eq!(names(&dir.path().join("box/new")).len(), 3);
    for s in &staged {
        assert!(s.path.to_str().unwrap().contains(&format!(",S={},W=", s.size)), "{}", s.path.display());
        assert_eq!(fs::metadata(&s.path).unwrap().len(), s.size);
    }
    md.commit_staged(&staged.iter().collect::<Vec<_>>()).unwrap();
    assert_eq!(md.dir_sync_stats(), (1, 1), "one fsync of new/ for three copies");
    // The reused buffers leave nothing of one copy in the next (bodies of 140 000, 70 000
    // and 0 bytes: more than one 64 KiB chunk, then fewer).
    for (i, s) in staged.iter().enumerate() {
        let expected = format!(
            "Return-Path: <sender@example.org>\nDelivered-To: user@example.com\nSubject: {i}\n\n{}\n",
            "x".repeat((2 - i) * 70_000)
        );
        assert_eq!(fs::read_to_string(&s.path).unwrap(), expected, "copy {i}");
    }
}

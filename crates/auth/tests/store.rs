//! The user store against real files in a temporary directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use dakiya_auth::{AuthError, UserStore};

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    (dir, path)
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn store_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<UserStore>();
    shareable::<Arc<UserStore>>();
}

#[test]
fn add_verify_list() {
    let (_dir, path) = setup();
    let store = UserStore::open(&path).unwrap();
    assert!(store.users().is_empty());
    assert!(!path.exists(), "opening must not create the file");

    store.add("Bob@Example.org", "bob's pass").unwrap();
    store.add("alice@example.org", "correct horse").unwrap();
    assert_eq!(store.users(), ["alice@example.org", "bob@example.org"]);
    assert!(store.exists("ALICE@example.ORG"));
    assert!(!store.exists("carol@example.org"));
    assert!(!store.exists("not an address"));

    assert!(store.verify("alice@example.org", "correct horse").unwrap());
    assert!(store.verify("Alice@EXAMPLE.org", "correct horse").unwrap());
    assert!(!store.verify("alice@example.org", "Correct horse").unwrap());
    assert!(!store.verify("alice@example.org", "correct horse ").unwrap());
    assert!(!store.verify("bob@example.org", "correct horse").unwrap());
    assert!(!store.verify("carol@example.org", "correct horse").unwrap());

    // A fresh store reads what the first one wrote.
    let again = UserStore::open(&path).unwrap();
    assert_eq!(again.users(), store.users());
    assert!(again.verify("bob@example.org", "bob's pass").unwrap());
}

#[test]
fn refusals() {
    let (_dir, path) = setup();
    let store = UserStore::open(&path).unwrap();
    store.add("alice@example.org", "pw").unwrap();
    assert!(matches!(
        store.add("ALICE@example.org", "other"),
        Err(AuthError::UserExists(u)) if u == "alice@example.org"
    ));
    assert!(matches!(store.add("alice", "pw"), Err(AuthError::InvalidUser(_))));
    for bad in ["", "a\0b", &"x".repeat(1025)] {
        assert!(matches!(store.add("bob@example.org", bad), Err(AuthError::InvalidPassword(_))));
        assert!(matches!(store.set_password("alice@example.org", bad), Err(AuthError::InvalidPassword(_))));
    }
    assert!(matches!(
        store.set_password("bob@example.org", "pw"),
        Err(AuthError::NoSuchUser(u)) if u == "bob@example.org"
    ));
    assert!(matches!(store.remove("bob@example.org"), Err(AuthError::NoSuchUser(_))));
    assert_eq!(store.users(), ["alice@example.org"]);
}

#[test]
fn verify_never_errors_on_garbage_input() {
    let (_dir, path) = setup();
    let store = UserStore::open(&path).unwrap();
    store.add("alice@example.org", "pw").unwrap();
    for (user, pass) in [
        ("", "pw"),
        ("alice", "pw"),
        ("alice@example.org", ""),
        ("alice@example.org", "p\0w"),
        ("alice@example.org:x", "pw"),
    ] {
        assert!(!store.verify(user, pass).unwrap(), "{user:?}");
    }
    assert!(!store.verify("alice@example.org", &"p".repeat(5000)).unwrap());
}

#[test]
fn passwd_and_del() {
    let (_dir, path) = setup();
    let store = UserStore::open(&path).unwrap();
    store.add("alice@example.org", "old").unwrap();
    store.set_password("Alice@example.org", "new").unwrap();
    assert!(!store.verify("alice@example.org", "old").unwrap());
    assert!(store.verify("alice@example.org", "new").unwrap());

    store.remove("ALICE@example.org").unwrap();
    assert!(!store.exists("alice@example.org"));
    assert!(!store.verify("alice@example.org", "new").unwrap());
    assert!(store.users().is_empty());
    assert!(UserStore::open(&path).unwrap().users().is_empty());
}

#[test]
fn file_holds_hashes_only_with_mode_0600_and_no_leftovers() {
    let (dir, path) = setup();
    let store = UserStore::open(&path).unwrap();
    let password = "Tr0ub4dor&3-unique-marker";
    store.add("alice@example.org", password).unwrap();
    store.set_password("alice@example.org", password).unwrap();
    store.add("bob@example.org", "another-marker").unwrap();

    let text = fs::read_to_string(&path).unwrap();
    assert!(!text.contains(password), "plaintext password in the file");
    assert!(!text.contains("Tr0ub4dor"));
    assert!(!text.contains("another-marker"));
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("alice@example.org:$argon2id$v=19$m=19456,t=2,p=1$"));
    assert!(lines[1].starts_with("bob@example.org:$argon2id$"));

    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The atomic replace left no temporary file; only the (kept) lock file is beside it.
    assert_eq!(dir_entries(dir.path()), ["users", "users.lock"]);
}

#[test]
fn concurrent_adds_from_separate_stores_all_land() {
    let (_dir, path) = setup();
    // Separate `UserStore`s stand for separate `dakiya user add` processes: only the file
    // lock keeps them from overwriting each other's additions.
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let store = UserStore::open(&path).unwrap();
                store.add(&format!("user{i}@example.org"), "pw").unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let store = UserStore::open(&path).unwrap();
    let expected: Vec<String> = (0..6).map(|i| format!("user{i}@example.org")).collect();
    assert_eq!(store.users(), expected);
}

#[test]
fn concurrent_adds_through_one_shared_store() {
    let (_dir, path) = setup();
    let store = Arc::new(UserStore::open(&path).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || store.add(&format!("u{i}@example.org"), "pw").unwrap())
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(store.users().len(), 4);
    assert_eq!(UserStore::open(&path).unwrap().users().len(), 4);
}

#[test]
fn reload_picks_up_changes_from_another_process() {
    let (_dir, path) = setup();
    let server = UserStore::open(&path).unwrap();
    let cli = UserStore::open(&path).unwrap();

    cli.add("alice@example.org", "pw1").unwrap();
    assert!(server.exists("alice@example.org"));
    assert!(server.verify("alice@example.org", "pw1").unwrap());

    cli.set_password("alice@example.org", "pw2").unwrap();
    assert!(!server.verify("alice@example.org", "pw1").unwrap());
    assert!(server.verify("alice@example.org", "pw2").unwrap());

    // An edit in place by hand (same inode): the size changes.
    let text = fs::read_to_string(&path).unwrap();
    let line = text.lines().find(|l| l.starts_with("alice@")).unwrap();
    let copy = line.replacen("alice@", "carol@", 1);
    fs::write(&path, format!("{text}{copy}\n")).unwrap();
    assert_eq!(server.users(), ["alice@example.org", "carol@example.org"]);
    assert!(server.verify("carol@example.org", "pw2").unwrap());

    cli.remove("alice@example.org").unwrap();
    assert_eq!(server.users(), ["carol@example.org"]);

    fs::remove_file(&path).unwrap();
    assert!(server.users().is_empty());
}

#[test]
fn failed_reload_keeps_the_previous_users() {
    let (_dir, path) = setup();
    let server = UserStore::open(&path).unwrap();
    server.add("alice@example.org", "pw").unwrap();
    let good = fs::read_to_string(&path).unwrap();

    fs::write(&path, format!("{good}this line is broken\n")).unwrap();
    assert!(server.verify("alice@example.org", "pw").unwrap());
    assert_eq!(server.users(), ["alice@example.org"]);
    // A writer refuses to rewrite a file it cannot read, rather than drop lines.
    assert!(matches!(server.add("bob@example.org", "pw"), Err(AuthError::Malformed { .. })));

    fs::write(&path, "").unwrap();
    assert!(server.users().is_empty());
}

#[test]
fn malformed_file_on_open_names_file_and_line() {
    let (_dir, path) = setup();
    fs::write(
        &path,
        "# users\nalice@example.org:$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
         K3Mbjf0ltHqQy8LhzBfuAeCGYTSdmGP2tDjLT+vcgNQ\nbob@example.org:hunter2\n",
    )
    .unwrap();
    let err = UserStore::open(&path).unwrap_err();
    match &err {
        AuthError::Malformed { path: p, line, .. } => {
            assert_eq!(p, &path);
            assert_eq!(*line, 3);
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("{}: line 3: ", path.display())), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[test]
fn comments_are_kept_across_changes() {
    let (_dir, path) = setup();
    fs::write(&path, "# Our users.\n\n# The boss.\n").unwrap();
    let store = UserStore::open(&path).unwrap();
    store.add("zed@example.org", "pw").unwrap();
    store.add("amy@example.org", "pw").unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("# Our users.\n\n# The boss.\n\namy@example.org:"), "{text}");
    // Hand-written comments above a user travel with it when users are sorted in.
    let commented = text.replace("zed@", "# Zed.\nzed@");
    fs::write(&path, commented).unwrap();
    store.add("bea@example.org", "pw").unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let tail = text.split_once("bea@").unwrap().1;
    assert!(tail.contains("\n# Zed.\nzed@example.org:"), "{text}");
}

#[test]
fn new_file_errors_are_io_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("users");
    let store = UserStore::open(&path).unwrap();
    match store.add("alice@example.org", "pw") {
        Err(e @ AuthError::Io { .. }) => assert!(e.to_string().contains("missing-dir")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_users_cost_as_much_as_known_ones() {
    let (_dir, path) = setup();
    let store = UserStore::open(&path).unwrap();
    store.add("alice@example.org", "pw").unwrap();
    let time = |user: &str| {
        (0..3)
            .map(|_| {
                let start = Instant::now();
                assert!(!store.verify(user, "wrong").unwrap());
                start.elapsed()
            })
            .min()
            .unwrap()
    };
    let known = time("alice@example.org");
    let unknown = time("nobody@example.org");
    let invalid = time("not-an-address");
    // A loose bound, so that a busy machine cannot make it flaky: both run one argon2 with
    // the same parameters, while an early return would be thousands of times faster.
    for (what, t) in [("unknown", unknown), ("invalid", invalid)] {
        assert!(t * 10 > known, "{what} user took {t:?}, known user {known:?}");
    }
}

#[test]
fn errors_never_show_the_password() {
    let (_dir, path) = setup();
    let store = UserStore::open(&path).unwrap();
    let secret = "s3cret\0-marker";
    let errs = [
        store.add("alice@example.org", secret).unwrap_err(),
        store.add(secret, "pw").unwrap_err(),
        store.set_password("alice@example.org", "pw").unwrap_err(),
    ];
    store.add("bob@example.org", "pw").unwrap();
    let debug = format!("{store:?}");
    assert!(debug.contains("users: 1") && !debug.contains("argon2"), "{debug}");
    for e in errs {
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(!format!("{e:?}").contains("s3cret"), "{e:?}");
    }
}

/// A users file made group-readable (mode 0640, e.g. group `dovecot` for Dovecot's
/// passwd-file passdb, docs/dovecot.md) stays so across rewrites; others never get access.
#[test]
fn group_read_and_group_survive_rewrites() {
    use std::os::unix::fs::MetadataExt;
    let (_dir, path) = setup();
    let store = UserStore::open(&path).unwrap();
    store.add("alice@example.org", "pw-alice").unwrap();
    // A group other than ours (as root any group can be set; else our own, still kept).
    let gid = if fs::metadata(&path).unwrap().gid() == 0 { 8 } else { fs::metadata(&path).unwrap().gid() };
    std::os::unix::fs::chown(&path, None, Some(gid)).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    store.add("bob@example.org", "pw-bob").unwrap();
    let meta = fs::metadata(&path).unwrap();
    assert_eq!((meta.permissions().mode() & 0o777, meta.gid()), (0o640, gid));
    // Without group read, the rewrite goes back to 0600.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    store.remove("bob@example.org").unwrap();
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
}

/// A password change keeps the file's size; Dovecot's passwd-file sees changes by mtime in
/// whole seconds and size, so two rewrites within one second must still differ in mtime.
#[test]
fn rewrites_within_a_second_get_distinct_mtimes() {
    let (_dir, path) = setup();
    let store = UserStore::open(&path).unwrap();
    store.add("alice@example.org", "pw-one").unwrap();
    let secs = |p: &Path| {
        fs::metadata(p).unwrap().modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    };
    let (size, first) = (fs::metadata(&path).unwrap().len(), secs(&path));
    store.set_password("alice@example.org", "pw-two").unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), size);
    assert_ne!(secs(&path), first);
    assert!(store.verify("alice@example.org", "pw-two").unwrap(), "the store itself follows");
}

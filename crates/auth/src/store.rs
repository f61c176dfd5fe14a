//! [`UserStore`]: the users file, kept in memory and re-read when it changes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::AuthError;
use crate::file::{self, Entry, Stamp, UsersFile};
use crate::hash::{hash_password, verify_dummy, verify_phc};
use crate::name::{check_password, normalize_user};

/// The users allowed to submit mail, with their password hashes.
///
/// Backed by a users file (format: docs/auth.md). Readers notice changes made by other
/// processes (`dakiya user add` while the server runs) without a restart: every call that
/// reads the users first compares the file's inode, size and modification time with those
/// of the version in memory, which costs one `stat` — microseconds, against the tens of
/// milliseconds of an argon2 verification. Changes take an exclusive lock on `PATH.lock`,
/// re-read the file, and replace it atomically (temporary file, fsync, rename, directory
/// fsync), so concurrent `dakiya user` runs never lose each other's changes.
///
/// `Send + Sync`: the server shares one `Arc<UserStore>` between its connections.
pub struct UserStore {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    /// Address (lowercase) → argon2id PHC string.
    users: BTreeMap<String, String>,
    /// The version of the file `users` came from; `None`: there was no file.
    stamp: Option<Stamp>,
}

fn hashes(file: UsersFile) -> BTreeMap<String, String> {
    file.users.into_iter().map(|(name, e)| (name, e.hash)).collect()
}

/// Shows the path and the number of users, never the hashes.
impl fmt::Debug for UserStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserStore").field("path", &self.path).field("users", &self.lock().users.len()).finish()
    }
}

impl UserStore {
    /// Opens the users file at `path`. A missing file means no users; it is created by the
    /// first [`add`](Self::add). A malformed file is an error naming the file and line.
    pub fn open(path: &Path) -> Result<UserStore, AuthError> {
        let (file, stamp) = file::read(path)?;
        Ok(UserStore { path: path.to_owned(), state: Mutex::new(State { users: hashes(file), stamp }) })
    }

    /// The users file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks `password` for `user` (any case; compared lowercase).
    ///
    /// Returns `Ok(false)` for a wrong password, an unknown user, or a name or password
    /// that could never be valid — after running argon2 against a fixed dummy hash in the
    /// latter cases, so the time taken does not reveal whether the user exists. `Err` only
    /// if the stored hash cannot be used.
    ///
    /// Blocking (argon2 takes tens of milliseconds): call it from `spawn_blocking`.
    pub fn verify(&self, user: &str, password: &str) -> Result<bool, AuthError> {
        let stored = match (normalize_user(user), check_password(password)) {
            (Ok(name), Ok(())) => self.current().users.get(&name).cloned(),
            _ => None,
        };
        // The state lock is released here: verifications run in parallel.
        match stored {
            Some(phc) => verify_phc(&phc, password),
            None => {
                verify_dummy(password);
                Ok(false)
            }
        }
    }

    /// True if `user` (any case) is in the store.
    pub fn exists(&self, user: &str) -> bool {
        match normalize_user(user) {
            Ok(name) => self.current().users.contains_key(&name),
            Err(_) => false,
        }
    }

    /// All user addresses, sorted.
    pub fn users(&self) -> Vec<String> {
        self.current().users.keys().cloned().collect()
    }

    /// Adds a user. Errors if the name or password is invalid or the user exists.
    pub fn add(&self, user: &str, password: &str) -> Result<(), AuthError> {
        let name = normalize_user(user)?;
        // Cheap early refusal before spending time on the hash; rechecked under the lock.
        if self.current().users.contains_key(&name) {
            return Err(AuthError::UserExists(name));
        }
        let hash = hash_password(password)?;
        self.update(|file| {
            if file.users.contains_key(&name) {
                return Err(AuthError::UserExists(name));
            }
            let comments = Vec::new();
            file.users.insert(name, Entry { comments, hash });
            Ok(())
        })
    }

    /// Replaces a user's password. Errors if the password is invalid or the user missing.
    pub fn set_password(&self, user: &str, password: &str) -> Result<(), AuthError> {
        let name = normalize_user(user)?;
        if !self.current().users.contains_key(&name) {
            return Err(AuthError::NoSuchUser(name));
        }
        let hash = hash_password(password)?;
        self.update(|file| match file.users.get_mut(&name) {
            Some(entry) => {
                entry.hash = hash;
                Ok(())
            }
            None => Err(AuthError::NoSuchUser(name)),
        })
    }

    /// Removes a user (and the comment lines just above its line). Errors if missing.
    pub fn remove(&self, user: &str) -> Result<(), AuthError> {
        let name = normalize_user(user)?;
        self.update(|file| match file.users.remove(&name) {
            Some(_) => Ok(()),
            None => Err(AuthError::NoSuchUser(name)),
        })
    }

    /// Applies `change` to the file and adopts the result in memory.
    fn update(&self, change: impl FnOnce(&mut UsersFile) -> Result<(), AuthError>) -> Result<(), AuthError> {
        let (file, stamp) = file::update(&self.path, change)?;
        let mut state = self.lock();
        state.users = hashes(file);
        state.stamp = Some(stamp);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // State is only ever replaced whole, so a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state, re-read first if the file changed since it was read. If the new version
    /// cannot be read, the previous users stay and a warning is logged (once per version).
    fn current(&self) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        let now = match Stamp::current(&self.path) {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!(error = %e, "cannot stat users file; keeping the previous users");
                return state;
            }
        };
        if now == state.stamp {
            return state;
        }
        match file::read(&self.path) {
            Ok((file, stamp)) => {
                state.users = hashes(file);
                state.stamp = stamp;
                tracing::info!(path = %self.path.display(), users = state.users.len(), "users file reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "users file not reloaded; keeping the previous users");
                state.stamp = now;
            }
        }
        state
    }
}

//! `dakiya user add|passwd|del|list`: manage the users who may submit mail with SMTP AUTH.
//!
//! Passwords never come from the command line (argv is visible to every local user through
//! `ps` and lands in shell history): on a terminal they are asked for twice without echo;
//! otherwise the first line of standard input is the password, so scripts can pipe it in.

use std::fmt;
use std::io::{self, BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use dakiya_auth::{AuthError, MAX_PASSWORD_LEN, UserStore, normalize_user};

/// What to do with the users file.
#[derive(clap::Subcommand, Debug)]
pub enum UserCmd {
    /// Add a user. The password is asked for twice on a terminal, or read from the first
    /// line of standard input when it is not a terminal.
    Add {
        /// The user's address, e.g. alice@example.org (stored lowercase).
        address: String,
    },
    /// Change a user's password (asked for or read like `add`).
    Passwd {
        /// The user's address.
        address: String,
    },
    /// Delete a user.
    Del {
        /// The user's address.
        address: String,
    },
    /// List the users, one address per line.
    List,
}

/// Runs a `dakiya user` command on `users_file`. Reports what happened on stdout; errors go
/// to stderr as `dakiya: ...` with exit status 1, or 2 for a usage error (an invalid address
/// or password).
pub fn run(cmd: UserCmd, users_file: &Path) -> ExitCode {
    match execute(cmd, users_file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dakiya: {e}");
            ExitCode::from(if e.usage { 2 } else { 1 })
        }
    }
}

/// Creates the users file's directory (mode 0700) if it does not exist yet.
fn create_parent(users_file: &Path) -> Result<(), CliError> {
    let Some(dir) = users_file.parent().filter(|d| !d.as_os_str().is_empty()) else { return Ok(()) };
    if dir.exists() {
        return Ok(());
    }
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CliError { message: format!("cannot create {}: {e}", dir.display()), usage: false })
}

/// Run as root (`sudo dakiya user add`), the store writes the users file and its lock file
/// (`users.lock`) as root. A server started as root then refuses to drop to `user` with
/// root-owned files in its data_dir (privdrop.rs), and one started as that user could not
/// write them. So both go to the owner (uid) of their directory (`dakiya setup` gives the data_dir
/// to the service user), as if that user had written them. Without the right to chown (not
/// root) they stay as they are.
fn keep_directory_owner(users_file: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::MetadataExt;
    let Some(dir) = users_file.parent().filter(|d| !d.as_os_str().is_empty()) else { return Ok(()) };
    let Ok(d) = std::fs::metadata(dir) else { return Ok(()) };
    let mut lock = users_file.as_os_str().to_owned();
    lock.push(".lock");
    for file in [users_file, Path::new(&lock)] {
        let Ok(f) = std::fs::metadata(file) else { continue };
        if d.uid() == f.uid() {
            continue;
        }
        // The owner only: the group is the administrator's choice (docs/dovecot.md gives the
        // users file to group dovecot, mode 0640, and a rewrite keeps it).
        match std::os::unix::fs::chown(file, Some(d.uid()), None) {
            Err(e) if e.kind() != io::ErrorKind::PermissionDenied => {
                return Err(CliError { message: format!("cannot chown {}: {e}", file.display()), usage: false });
            }
            _ => {}
        }
    }
    Ok(())
}

/// A failed command: its message and whether it was the caller's mistake.
#[derive(Debug)]
struct CliError {
    message: String,
    usage: bool,
}

impl CliError {
    fn usage(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), usage: true }
    }

    fn failed(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), usage: false }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<AuthError> for CliError {
    fn from(e: AuthError) -> CliError {
        let usage = matches!(e, AuthError::InvalidUser(_) | AuthError::InvalidPassword(_));
        CliError { message: e.to_string(), usage }
    }
}

fn execute(cmd: UserCmd, users_file: &Path) -> Result<(), CliError> {
    let store = UserStore::open(users_file)?;
    match cmd {
        UserCmd::Add { address } => {
            let name = valid_name(&address)?;
            // Users are often added before the server has ever run and made its data directory.
            create_parent(users_file)?;
            // Refuse before asking for a password that would be thrown away.
            if store.exists(&name) {
                return Err(AuthError::UserExists(name).into());
            }
            let password = read_password(&name)?;
            store.add(&name, &password)?;
            keep_directory_owner(users_file)?;
            println!("user {name} added");
        }
        UserCmd::Passwd { address } => {
            let name = valid_name(&address)?;
            if !store.exists(&name) {
                return Err(AuthError::NoSuchUser(name).into());
            }
            let password = read_password(&name)?;
            store.set_password(&name, &password)?;
            keep_directory_owner(users_file)?;
            println!("password of user {name} changed");
        }
        UserCmd::Del { address } => {
            let name = valid_name(&address)?;
            store.remove(&name)?;
            keep_directory_owner(users_file)?;
            println!("user {name} deleted");
        }
        UserCmd::List => {
            for name in store.users() {
                println!("{name}");
            }
        }
    }
    Ok(())
}

/// The stored form of `address`; the error names the address (the operator typed it).
fn valid_name(address: &str) -> Result<String, CliError> {
    normalize_user(address).map_err(|e| CliError::usage(format!("{address:?}: {e}")))
}

/// The new password: from the terminal (twice, no echo) or the first line of stdin.
fn read_password(name: &str) -> Result<String, CliError> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        let first = rpassword::prompt_password(format!("New password for {name}: "))
            .map_err(|e| CliError::failed(format!("reading password: {e}")))?;
        let again = rpassword::prompt_password("Retype new password: ")
            .map_err(|e| CliError::failed(format!("reading password: {e}")))?;
        if first != again {
            return Err(CliError::failed("passwords do not match; nothing changed"));
        }
        check(first)
    } else {
        check(first_line(stdin.lock())?)
    }
}

/// The new password of `name`, asked for or read as `dakiya user add` does (for `dakiya
/// setup`); the error is the message to show.
pub(crate) fn new_password(name: &str) -> Result<String, String> {
    read_password(name).map_err(|e| e.to_string())
}

/// The first line of `input` without its line end. Reads at most a little more than the
/// longest password allowed, so a runaway pipe cannot fill memory.
fn first_line(input: impl BufRead) -> Result<String, CliError> {
    let limit = MAX_PASSWORD_LEN as u64 + 2;
    let mut line = Vec::new();
    input
        .take(limit)
        .read_until(b'\n', &mut line)
        .map_err(|e| CliError::failed(format!("reading password from standard input: {e}")))?;
    if line.is_empty() {
        return Err(CliError::usage("no password on standard input (expected it on the first line)"));
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    String::from_utf8(line).map_err(|_| CliError::usage("invalid password: not valid UTF-8"))
}

/// Applies the store's password rules before anything is hashed.
fn check(password: String) -> Result<String, CliError> {
    dakiya_auth::check_password(&password)?;
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_strips_the_line_end_only() {
        let line = |s: &[u8]| first_line(s).map_err(|e| e.to_string());
        assert_eq!(line(b"secret\n").unwrap(), "secret");
        assert_eq!(line(b"sec ret \r\nsecond line\n").unwrap(), "sec ret ");
        assert_eq!(line(b"no newline").unwrap(), "no newline");
        assert!(line(b"").unwrap_err().contains("no password"));
        assert!(line(b"\xff\n").unwrap_err().contains("UTF-8"));
        // An empty first line is read as an empty password, which `check` refuses.
        assert_eq!(line(b"\n").unwrap(), "");
        assert!(check(String::new()).unwrap_err().usage);
    }

    #[test]
    fn overlong_input_is_cut_and_then_refused() {
        let long = vec![b'x'; 1_000_000];
        let read = first_line(&long[..]).unwrap();
        assert!(read.len() <= MAX_PASSWORD_LEN + 2);
        assert!(check(read).unwrap_err().usage);
    }

    #[test]
    fn invalid_addresses_are_usage_errors() {
        let e = valid_name("alice").unwrap_err();
        assert!(e.usage);
        assert!(e.to_string().starts_with("\"alice\": invalid user name"), "{e}");
        assert_eq!(valid_name("Alice@Example.org").unwrap(), "alice@example.org");
    }
}

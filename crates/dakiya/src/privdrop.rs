//! Running as an unprivileged user (docs/hosting.md, "Ports below 1024"). Started as root,
//! the server binds its listeners, makes sure the data directory belongs to the configured
//! `user`, and then becomes that user — supplementary groups cleared, then the group, then
//! the user, in that order (a process that changed its user first could no longer change its
//! groups) — before any other file is opened and before any accept loop starts. Started as
//! another user (by systemd with `AmbientCapabilities=CAP_NET_BIND_SERVICE`), there is
//! nothing to drop.

use dakiya_config::{AccountName, Config};
use nix::unistd::{Gid, Group, Uid, User, getuid, setgid, setgroups, setuid};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The account named by `user` and `group`, looked up in the system's user database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user name.
    pub name: String,
    /// Its user ID.
    pub uid: Uid,
    /// The group ID to run as: `group`, or the user's primary group.
    pub gid: Gid,
}

/// A problem with `user`/`group`/`allow_root` or the drop itself: the configuration file, the
/// line and key where known, and what is wrong (displayed like a configuration error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PrivilegeError(pub dakiya_config::ConfigError);

impl PrivilegeError {
    fn at(cfg: &Config, key: &str, line: Option<usize>, message: String) -> PrivilegeError {
        PrivilegeError(dakiya_config::ConfigError { file: cfg.source.clone(), line, key: Some(key.into()), message })
    }
}

/// The configured account, or `None` without `user`; errors when a name is unknown.
pub fn account(cfg: &Config) -> Result<Option<Account>, PrivilegeError> {
    let Some(user) = &cfg.privileges.user else { return Ok(None) };
    let lookup_failed = |key: &str, name: &AccountName, e: nix::Error| {
        PrivilegeError::at(cfg, key, Some(name.line), format!("cannot look up {:?}: {e}", name.name))
    };
    let found = User::from_name(&user.name).map_err(|e| lookup_failed("user", user, e))?;
    let Some(found) = found else {
        let message = format!("no such user {:?} (create it, e.g. `useradd --system {}`)", user.name, user.name);
        return Err(PrivilegeError::at(cfg, "user", Some(user.line), message));
    };
    let gid = match &cfg.privileges.group {
        None => found.gid,
        Some(group) => match Group::from_name(&group.name).map_err(|e| lookup_failed("group", group, e))? {
            Some(g) => g.gid,
            None => {
                let message = format!("no such group {:?}", group.name);
                return Err(PrivilegeError::at(cfg, "group", Some(group.line), message));
            }
        },
    };
    Ok(Some(Account { name: found.name, uid: found.uid, gid }))
}

/// Called once the listeners are bound and before anything else: as root, becomes the
/// configured user (or stays root only with `allow_root = true`); as anyone else, does
/// nothing.
pub fn drop_privileges(cfg: &Config) -> Result<(), PrivilegeError> {
    if !getuid().is_root() {
        return Ok(());
    }
    let Some(account) = account(cfg)? else {
        if cfg.privileges.allow_root {
            tracing::warn!("running as root (allow_root = true)");
            return Ok(());
        }
        let message = "refusing to run as root: set `user` (the account to run as once the listeners are bound), \
                       or allow_root = true to run as root anyway"
            .to_string();
        return Err(PrivilegeError::at(cfg, "allow_root", None, message));
    };
    prepare_data_dir(cfg, &cfg.data_dir, &account)?;
    let failed = |step: &str, e: nix::Error| {
        let message = format!("cannot become {} ({step}): {e}", account.name);
        PrivilegeError::at(cfg, "user", cfg.privileges.user.as_ref().map(|u| u.line), message)
    };
    setgroups(&[]).map_err(|e| failed("setgroups", e))?;
    setgid(account.gid).map_err(|e| failed("setgid", e))?;
    setuid(account.uid).map_err(|e| failed("setuid", e))?;
    // With the saved user ID gone too, there is no way back.
    if account.uid.is_root() || setuid(Uid::from_raw(0)).is_err() {
        tracing::info!(user = %account.name, uid = account.uid.as_raw(), gid = account.gid.as_raw(), "dropped root privileges");
        Ok(())
    } else {
        Err(failed("check", nix::Error::EPERM))
    }
}

/// The data directory must belong to the account the server becomes: created for it (mode
/// 0750) when missing; when present, it and what lies directly in it (spool, mail, dkim, tls,
/// users, ...) must be owned by it, or the server would fail later, file by file.
fn prepare_data_dir(cfg: &Config, dir: &Path, account: &Account) -> Result<(), PrivilegeError> {
    let error = |message: String| PrivilegeError::at(cfg, "data_dir", None, message);
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(|e| error(format!("cannot create {}: {e}", dir.display())))?;
        std::os::unix::fs::chown(dir, Some(account.uid.as_raw()), Some(account.gid.as_raw()))
            .map_err(|e| error(format!("cannot give {} to {}: {e}", dir.display(), account.name)))?;
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| error(format!("cannot read {}: {e}", dir.display())))?;
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(entries.filter_map(Result::ok).map(|e| e.path()));
    for path in paths {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| error(format!("{}: {e}", path.display())))?;
        if meta.uid() != account.uid.as_raw() {
            let message = format!(
                "{} is owned by uid {}, not by {} (uid {}), the `user` the server runs as: `chown -R {}: {}`",
                path.display(),
                meta.uid(),
                account.name,
                account.uid,
                account.name,
                dir.display()
            );
            return Err(error(message));
        }
    }
    let mode = std::fs::metadata(dir).map(|m| m.permissions().mode()).unwrap_or(0);
    if mode & 0o700 != 0o700 {
        return Err(error(format!("{} is mode {:o}; its owner needs rwx", dir.display(), mode & 0o7777)));
    }
    Ok(())
}

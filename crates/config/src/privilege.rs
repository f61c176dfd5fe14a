//! `user`, `group` and `allow_root`: the account the server runs as after binding its
//! listeners (docs/hosting.md, "Ports below 1024"). Only the names' syntax is checked here;
//! the server looks them up in the system's user database when it starts, and
//! `dakiya check-config` does the same.

use crate::error::{ConfigError, Ctx};
use crate::raw::SStr;
use crate::value::written;

/// A user or group name and the line it was written on (for errors found at start-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountName {
    /// The name as written.
    pub name: String,
    /// The 1-based line of the value in the configuration file.
    pub line: usize,
}

/// Which account the server drops to when started as root, and whether it may stay root.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Privileges {
    /// `user`: started as root, the server binds its listeners and then runs as this user
    /// (supplementary groups cleared). Default: none.
    pub user: Option<AccountName>,
    /// `group`: the group to run as; default the user's primary group. Needs `user`.
    pub group: Option<AccountName>,
    /// `allow_root`: whether the server may keep running as root (no `user`, started as
    /// root). Default false: such a start is refused.
    pub allow_root: bool,
}

impl Privileges {
    /// The names only (what a reload compares: a moved line changes nothing).
    pub fn names(&self) -> (Option<&str>, Option<&str>) {
        (self.user.as_ref().map(|u| u.name.as_str()), self.group.as_ref().map(|g| g.name.as_str()))
    }
}

/// Whether `name` is a user or group name we accept: 1 to 32 characters, a letter or `_`
/// first, then letters, digits, `_`, `-` and `.` (the portable set of POSIX.1-2017 §3.437,
/// as `useradd` takes it), optionally ending in `$`.
pub fn is_valid_account_name(name: &str) -> bool {
    let body = name.strip_suffix('$').unwrap_or(name);
    let mut chars = body.chars();
    (1..=32).contains(&name.len())
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

pub(crate) fn privileges(
    cx: &Ctx,
    user: Option<SStr>,
    group: Option<SStr>,
    allow_root: Option<bool>,
) -> Result<Privileges, ConfigError> {
    let name = |key: &str, value: Option<SStr>| -> Result<Option<AccountName>, ConfigError> {
        let Some(value) = value else { return Ok(None) };
        if !is_valid_account_name(value.get_ref()) {
            let message = format!("{} is not a valid {key} name", written(cx, value.span()));
            return Err(cx.err(key, Some(value.span()), message));
        }
        let line = crate::error::line_of(cx.text, value.span().start);
        Ok(Some(AccountName { name: value.into_inner(), line }))
    };
    let user = name("user", user)?;
    let group = name("group", group)?;
    if user.is_none()
        && let Some(g) = &group
    {
        return Err(ConfigError {
            file: cx.file.to_owned(),
            line: Some(g.line),
            key: Some("group".into()),
            message: "group needs user: set user (the account to run as) too".into(),
        });
    }
    Ok(Privileges { user, group, allow_root: allow_root.unwrap_or(false) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(top: &str) -> Result<crate::Config, ConfigError> {
        let text = format!("{top}\n[[listen]]\naddress = \"127.0.0.1:25\"\nrole = \"mx\"\n");
        crate::Config::parse(&text, "t.toml")
    }

    #[test]
    fn keys_are_read_and_printed() {
        let c = parse("hostname = \"mx.example\"\nuser = \"dakiya\"\ngroup = \"mail\"\n").unwrap();
        assert_eq!(c.privileges.names(), (Some("dakiya"), Some("mail")));
        assert_eq!(c.privileges.user.as_ref().unwrap().line, 2);
        assert!(!c.privileges.allow_root);
        let again = crate::Config::parse(&c.to_toml(), "t.toml").unwrap();
        assert_eq!(again.privileges.names(), c.privileges.names());
        assert!(parse("allow_root = true").unwrap().privileges.allow_root);
        assert_eq!(parse("").unwrap().privileges, Privileges::default());
    }

    #[test]
    fn bad_names_and_a_group_alone_are_refused() {
        let e = parse("\nuser = \"da kiya\"").unwrap_err();
        assert_eq!(e.to_string(), "t.toml: line 2: key `user`: \"da kiya\" is not a valid user name");
        let e = parse("group = \"mail\"").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("group")), "{e}");
        assert!(e.message.contains("needs user"), "{e}");
        assert!(parse("allow_root = \"yes\"").is_err());
    }

    #[test]
    fn account_names() {
        for ok in ["dakiya", "_dakiya", "mail-1", "a.b", "nobody", "host$"] {
            assert!(is_valid_account_name(ok), "{ok}");
        }
        for bad in ["", "1abc", "-x", "da kiya", "root:0", "x/y", &"a".repeat(33), "$"] {
            assert!(!is_valid_account_name(bad), "{bad}");
        }
    }
}

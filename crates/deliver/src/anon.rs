//! Anonymous files for Maildir copies: `open(2)` with `O_TMPFILE` creates a file with no
//! name in a directory's file system; once written and fsynced it gets its name with
//! `linkat(2)` through `/proc/self/fd/N` (`AT_SYMLINK_FOLLOW`; `AT_EMPTY_PATH` would need
//! `CAP_DAC_READ_SEARCH`, which dakiya does not keep). Until the link nothing names the
//! file: a failure or a crash before it leaves nothing behind (the kernel frees the inode
//! when the descriptor is closed, or when the file system is next mounted).
//! Layout and fallback: docs/maildir.md, "Delivery steps and durability".

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat};
use nix::sys::stat::Mode;
use nix::unistd::linkat;

/// Opens a new anonymous file (mode 0600, less the umask, as for a named file) on the
/// file system of directory `dir`, for reading and writing. `Ok(None)` when the kernel or
/// the file system has no `O_TMPFILE`: `EOPNOTSUPP` (a file system without it), `EISDIR`
/// (a kernel before 3.11 sees `O_DIRECTORY` and a directory), `EINVAL` (open(2), "O_TMPFILE").
pub(crate) fn open_in(dir: &Path) -> io::Result<Option<File>> {
    let flags = OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC;
    match openat(AT_FDCWD, dir, flags, Mode::from_bits_truncate(0o600)) {
        Ok(fd) => Ok(Some(File::from(fd))),
        Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => Ok(None),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Why [`link`] failed.
#[derive(Debug)]
pub(crate) enum LinkError {
    /// `target` exists already: try another name.
    Exists,
    /// Linking through `fd_dir` does not work in this process: no `/proc` mounted (a
    /// sandbox), or `linkat` refused by a seccomp filter or a security module. The
    /// caller falls back to `tmp/` + rename.
    Unsupported(io::Error),
    /// Any other failure (no space, I/O error, name too long, ...): the delivery fails.
    Failed(io::Error),
}

/// Gives the anonymous `file` the name `target` (on the same file system), with `fd_dir`
/// the directory where this process's descriptors appear as symbolic links
/// (`/proc/self/fd`). Never replaces an existing file.
pub(crate) fn link(file: &File, fd_dir: &Path, target: &Path) -> Result<(), LinkError> {
    let source = fd_dir.join(file.as_raw_fd().to_string());
    match linkat(AT_FDCWD, &source, AT_FDCWD, target, AtFlags::AT_SYMLINK_FOLLOW) {
        Ok(()) => Ok(()),
        Err(Errno::EEXIST) => Err(LinkError::Exists),
        Err(e @ (Errno::ENOENT | Errno::ENOTDIR | Errno::EPERM | Errno::EACCES | Errno::EXDEV | Errno::ENOSYS)) => {
            Err(LinkError::Unsupported(io::Error::from(e)))
        }
        Err(e) => Err(LinkError::Failed(io::Error::from(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn written(dir: &Path, text: &[u8]) -> File {
        let mut file = open_in(dir).unwrap().expect("O_TMPFILE on the test's file system");
        file.write_all(text).unwrap();
        file
    }

    #[test]
    fn link_names_the_file_and_never_replaces_one() {
        let dir = tempfile::tempdir().unwrap();
        let proc_fd = Path::new("/proc/self/fd");
        let first = written(dir.path(), b"first");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no name before the link");
        link(&first, proc_fd, &dir.path().join("a")).unwrap();
        let second = written(dir.path(), b"second");
        assert!(matches!(link(&second, proc_fd, &dir.path().join("a")), Err(LinkError::Exists)));
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"first");
        assert!(matches!(
            link(&second, Path::new("/nonexistent"), &dir.path().join("b")),
            Err(LinkError::Unsupported(_))
        ));
        drop(second);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "the unlinked file is gone");
    }

    /// procfs has no `O_TMPFILE` (`EOPNOTSUPP`): "not here", not an error.
    #[test]
    fn open_without_tmpfile_support_is_none() {
        assert!(open_in(Path::new("/proc")).unwrap().is_none());
    }

    #[test]
    fn open_fails_on_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let err = open_in(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}

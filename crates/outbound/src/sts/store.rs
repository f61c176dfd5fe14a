//! Cached policies on disk: one small file per domain, written atomically (a temporary
//! file, fsync, rename, fsync of the directory), so a crash leaves the old or the new one.

use std::io::Write;
use std::path::{Path, PathBuf};

use dakiya_mtasts::Cached;

/// The file of `domain` in `dir`; the domain is a validated A-label name (no `/`).
fn file(dir: &Path, domain: &str) -> Option<PathBuf> {
    let ok = !domain.is_empty() && domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    (ok && !domain.starts_with('.')).then(|| dir.join(domain))
}

/// The cached policy of `domain`, if a readable, valid file holds one.
pub(crate) fn load(dir: &Path, domain: &str) -> Option<Cached> {
    let text = std::fs::read_to_string(file(dir, domain)?).ok()?;
    Cached::decode(&text)
}

/// Writes `cached` for `domain`, replacing any earlier file atomically.
pub(crate) fn save(dir: &Path, domain: &str, cached: &Cached) -> std::io::Result<()> {
    let path = file(dir, domain).ok_or_else(|| std::io::Error::other("not a storable domain"))?;
    write_atomic(dir, &path, cached.encode().as_bytes())
}

/// Writes `data` to `path` (inside `dir`) through a temporary file and a rename.
pub(crate) fn write_atomic(dir: &Path, path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dakiya_mtasts::{Mode, Policy};

    #[test]
    fn round_trip_and_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cached {
            id: "a1".into(),
            fetched: 5,
            policy: Policy { mode: Mode::Testing, mx: vec!["mx.t".into()], max_age: 9 },
        };
        save(dir.path(), "example.test", &c).unwrap();
        assert_eq!(load(dir.path(), "example.test"), Some(c.clone()));
        assert_eq!(load(dir.path(), "other.test"), None);
        assert!(save(dir.path(), "../x", &c).is_err());
        std::fs::write(dir.path().join("bad.test"), "garbage").unwrap();
        assert_eq!(load(dir.path(), "bad.test"), None, "a damaged file is no cache");
    }
}

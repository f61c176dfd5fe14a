//! Greylisting on `mx` listeners (RFC 6647): the shared [`Greylist`] behind a lock, its
//! snapshot on disk, and the reply for a deferred recipient.
//!
//! Durability: the state is a snapshot file, `greylist.state` in the data directory, written
//! atomically (temporary file, fsync, rename, directory fsync) every [`SAVE_INTERVAL`] when
//! something changed, and at shutdown. A crash loses at most the last interval's changes: a
//! few triplets are greylisted once more, nothing else.

use dakiya_config::Config;
use dakiya_limits::{Greylist, GreylistSettings, GreylistVerdict, Triplet};
use dakiya_proto::logtext::Esc;
use dakiya_proto::{Enhanced, Reply};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How often a changed greylist is written to disk.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(60);

/// The snapshot's file name in the data directory.
pub const FILE_NAME: &str = "greylist.state";

/// The server's greylist and where it is saved.
pub struct Greylisting {
    list: Mutex<Greylist>,
    path: PathBuf,
    config: Arc<Config>,
    /// Held while writing, so the periodic save and the one at shutdown never share the
    /// temporary file.
    saving: Mutex<()>,
}

/// Who is asking, beyond the triplet: the exemptions of the session.
pub struct Asker<'a> {
    pub ip: IpAddr,
    /// Authenticated (AUTH) or in `trusted_networks`: never greylisted.
    pub submitted: bool,
    /// On a DNS allow-list (set by the connect-time screening; see conn.rs).
    pub allow_listed: bool,
    pub sender: &'a str,
    pub recipient: &'a str,
}

impl Greylisting {
    /// Loads the snapshot from the data directory if any listener greylists; `None` if none.
    pub fn open(config: &Arc<Config>) -> Option<Arc<Greylisting>> {
        if !config.listeners.iter().any(|l| l.greylist) {
            return None;
        }
        let path = config.data_dir.join(FILE_NAME);
        let g = &config.greylist;
        let settings = GreylistSettings {
            min_delay: g.min_delay.as_secs(),
            window: g.window.as_secs(),
            pass_ttl: u64::from(g.pass_days) * 86_400,
            auto_allow_after: g.auto_allow_after,
            max_entries: g.max_entries,
        };
        let list = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let (list, skipped) = Greylist::decode(&text, settings, unix_now());
                if skipped > 0 {
                    tracing::warn!(path = %path.display(), skipped, "greylist: unreadable lines in the saved state were skipped");
                }
                tracing::info!(path = %path.display(), entries = list.len(), "greylist: state loaded");
                list
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Greylist::new(settings),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "greylist: cannot read the saved state; starting empty");
                Greylist::new(settings)
            }
        };
        Some(Arc::new(Greylisting { list: Mutex::new(list), path, config: config.clone(), saving: Mutex::new(()) }))
    }

    /// RCPT: may this recipient be accepted now, or is it greylisted?
    pub fn check(&self, who: &Asker) -> Result<(), Reply> {
        // TODO(dnsbl): `allow_listed` is false until the connect-time DNS allow-list check
        // sets its flag on the session (conn.rs passes it here).
        if who.submitted || who.allow_listed || self.config.greylist.is_exempt(who.ip, who.sender, who.recipient) {
            return Ok(());
        }
        let triplet = Triplet::new(who.ip.to_canonical(), who.sender, who.recipient);
        let verdict = self.list.lock().unwrap().check(&triplet, unix_now());
        match verdict {
            GreylistVerdict::Deferred { retry_in } => {
                tracing::info!(peer = %who.ip, from = %Esc(who.sender), to = %Esc(who.recipient), retry_in, "greylisted");
                Err(greylisted(retry_in))
            }
            GreylistVerdict::Retried => {
                tracing::info!(peer = %who.ip, from = %Esc(who.sender), to = %Esc(who.recipient), "greylist passed");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Writes the snapshot if anything changed since the last write.
    pub fn save_if_changed(&self) {
        let _saving = self.saving.lock().unwrap();
        let text = {
            let mut list = self.list.lock().unwrap();
            list.prune(unix_now());
            if !list.take_dirty() {
                return;
            }
            list.encode()
        };
        if let Err(e) = write_atomically(&self.path, text.as_bytes()) {
            tracing::warn!(path = %self.path.display(), error = %e, "greylist: cannot save the state");
            // Try again next time.
            self.list.lock().unwrap().mark_dirty();
        }
    }

    /// Saves every [`SAVE_INTERVAL`] until the task is aborted.
    pub fn spawn_saver(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAVE_INTERVAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                let this = this.clone();
                let _ = tokio::task::spawn_blocking(move || this.save_if_changed()).await;
            }
        })
    }
}

/// RFC 6647 §2.1: greylisting answers with a temporary failure; RFC 3463 X.7.1 is "delivery
/// not authorized" (a policy reason), and the text says when to come back.
fn greylisted(retry_in: u64) -> Reply {
    Reply::new(451, Enhanced(4, 7, 1), format!("Greylisted, please try again in {retry_in} seconds"))
}

/// Seconds since the Unix epoch (the snapshot outlives the process, so not `Instant`).
fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Temporary file, fsync, rename over `path`, fsync of the directory.
fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

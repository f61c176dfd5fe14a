//! The control socket: `dakiya queue ...` talks to the running server through it.

use crate::queue::QueueHandle;
use dakiya_spool::Spool;
use std::path::PathBuf;
use std::sync::Arc;

/// The socket's name inside the data directory.
pub const SOCKET_NAME: &str = "control.sock";

/// Listens on `path` until the process ends, answering requests.
pub async fn serve(path: PathBuf, spool: Arc<Spool>, queue: QueueHandle) -> std::io::Result<()> {
    let _ = (path, spool, queue);
    Ok(())
}

//! Idle connections kept for the next message to the same destination, and the way to a
//! connection slot: an idle connection if one is there, else permits for a new one.
//!
//! An idle connection keeps its permits, so it counts against the limits; when a new
//! connection needs a slot that idle ones hold, the oldest of those is closed. A sweeper
//! task (started when the first connection goes idle, ended when none is left) closes the
//! ones idle for longer than `idle_timeout`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::TlsMode;
use crate::connection::Connection;
use crate::limits::{Limits, Permits};

/// What connections are interchangeable: same destination, same TLS mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key {
    /// The destination domain (normalised), or the relay pseudo-destination.
    pub(crate) dest: String,
    pub(crate) mode: TlsMode,
}

/// A connection slot.
pub(crate) enum Slot {
    /// An idle connection for the key.
    Reuse(Box<Connection>),
    /// Permits for a new connection.
    Fresh(Permits),
}

struct Idle {
    key: Key,
    conn: Connection,
    since: Instant,
}

#[derive(Default)]
struct State {
    idle: Vec<Idle>,
    sweeper: bool,
}

/// The idle connections and the limits.
pub(crate) struct Pool {
    idle_timeout: Duration,
    limits: Arc<Limits>,
    state: Mutex<State>,
    /// Woken when a connection goes idle, for deliveries waiting for a slot.
    idle_added: Notify,
}

impl Pool {
    pub(crate) fn new(idle_timeout: Duration, max_connections: usize, max_per_destination: usize) -> Arc<Pool> {
        Arc::new(Pool {
            idle_timeout,
            limits: Limits::new(max_connections, max_per_destination),
            state: Mutex::new(State::default()),
            idle_added: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently idle connection for `key` that has not expired, if any (expired
    /// ones are left to the sweeper).
    pub(crate) fn take(&self, key: &Key) -> Option<Connection> {
        let mut state = self.lock();
        let now = Instant::now();
        let found = state.idle.iter().rposition(|i| i.key == *key && now < i.since + self.idle_timeout)?;
        Some(state.idle.remove(found).conn)
    }

    /// Keeps `conn` for reuse, or closes it when reuse is off.
    pub(crate) fn put(self: &Arc<Self>, key: Key, conn: Connection) {
        if self.idle_timeout.is_zero() {
            tokio::spawn(conn.close());
            return;
        }
        let mut state = self.lock();
        state.idle.push(Idle { key, conn, since: Instant::now() });
        if !state.sweeper {
            state.sweeper = true;
            tokio::spawn(sweep(self.clone()));
        }
        drop(state);
        self.idle_added.notify_waiters();
    }

    /// Closes the oldest idle connection that `pick` selects, to free its permits.
    fn evict(&self, pick: impl Fn(&Key) -> bool) {
        let mut state = self.lock();
        if let Some(i) = state.idle.iter().position(|i| pick(&i.key)) {
            let idle = state.idle.remove(i);
            tokio::spawn(idle.conn.close());
        }
    }

    /// Waits for a slot for `key`: an idle connection, or permits for a new one. Waits for
    /// the destination's permit before the global one, so a delivery held back by its
    /// destination's limit does not hold a global slot meanwhile.
    pub(crate) async fn slot(&self, key: &Key) -> Slot {
        loop {
            // Registered before looking, so a connection going idle after the look wakes us.
            let notified = self.idle_added.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(conn) = self.take(key) {
                return Slot::Reuse(Box::new(conn));
            }
            let dest_sem = self.limits.destination(&key.dest);
            let dest = match dest_sem.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    // An idle connection to the destination under another TLS mode is of no use.
                    self.evict(|k| k.dest == key.dest && k != key);
                    tokio::select! {
                        permit = dest_sem.clone().acquire_owned() => match permit {
                            Ok(permit) => permit,
                            Err(_) => continue,
                        },
                        () = &mut notified => continue,
                    }
                }
            };
            let global = match self.limits.global.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    self.evict(|k| k != key);
                    tokio::select! {
                        permit = self.limits.global.clone().acquire_owned() => match permit {
                            Ok(permit) => permit,
                            Err(_) => continue,
                        },
                        () = &mut notified => continue,
                    }
                }
            };
            return Slot::Fresh(Permits::new(self.limits.clone(), &key.dest, dest_sem, dest, global));
        }
    }

    /// Closes every idle connection and waits until they are closed.
    pub(crate) async fn close_all(&self) {
        let idle = std::mem::take(&mut self.lock().idle);
        let mut closing = JoinSet::new();
        for i in idle {
            closing.spawn(i.conn.close());
        }
        while closing.join_next().await.is_some() {}
    }
}

/// Closes idle connections as they expire; ends when none is left.
async fn sweep(pool: Arc<Pool>) {
    loop {
        let next = {
            let mut state = pool.lock();
            let now = Instant::now();
            let (expired, kept): (Vec<Idle>, Vec<Idle>) =
                std::mem::take(&mut state.idle).into_iter().partition(|i| now >= i.since + pool.idle_timeout);
            state.idle = kept;
            for i in expired {
                tokio::spawn(i.conn.close());
            }
            match state.idle.iter().map(|i| i.since + pool.idle_timeout).min() {
                Some(next) => next,
                None => {
                    state.sweeper = false;
                    return;
                }
            }
        };
        tokio::time::sleep_until(next).await;
    }
}

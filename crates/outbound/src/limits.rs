//! Connection limits: one global semaphore and one per destination. A connection holds a
//! [`Permits`] from before it connects until it is closed, idle time included.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The semaphores. Per-destination ones are made on demand and dropped when unused.
#[derive(Debug)]
pub(crate) struct Limits {
    pub(crate) global: Arc<Semaphore>,
    per_destination: usize,
    destinations: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Limits {
    /// Limits of `global` connections in all and `per_destination` to one destination; each
    /// at least 1 (0 would make every delivery wait forever) and at most what tokio allows.
    pub(crate) fn new(global: usize, per_destination: usize) -> Arc<Limits> {
        let clamp = |n: usize| n.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Limits {
            global: Arc::new(Semaphore::new(clamp(global))),
            per_destination: clamp(per_destination),
            destinations: Mutex::new(HashMap::new()),
        })
    }

    /// The semaphore of one destination.
    pub(crate) fn destination(&self, dest: &str) -> Arc<Semaphore> {
        let mut map = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(dest.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(self.per_destination))).clone()
    }

    /// How many destinations have a semaphore now (for tests).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.destinations.lock().unwrap().len()
    }
}

/// A connection's share of the limits; dropping it frees both.
#[derive(Debug)]
pub(crate) struct Permits {
    dest_permit: Option<OwnedSemaphorePermit>,
    _global: OwnedSemaphorePermit,
    dest_sem: Arc<Semaphore>,
    dest: String,
    limits: Arc<Limits>,
}

impl Permits {
    pub(crate) fn new(
        limits: Arc<Limits>,
        dest: &str,
        dest_sem: Arc<Semaphore>,
        dest_permit: OwnedSemaphorePermit,
        global: OwnedSemaphorePermit,
    ) -> Permits {
        Permits { dest_permit: Some(dest_permit), _global: global, dest_sem, dest: dest.to_owned(), limits }
    }
}

impl Drop for Permits {
    fn drop(&mut self) {
        drop(self.dest_permit.take());
        // Forget the destination's semaphore when nobody holds or waits for it: only the map
        // and this struct still point to it (permits and waiters hold a clone each). New
        // clones are only made under the lock, so the count cannot be too low here.
        let mut map = self.limits.destinations.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&self.dest).is_some_and(|s| Arc::ptr_eq(s, &self.dest_sem)) && Arc::strong_count(&self.dest_sem) == 2
        {
            map.remove(&self.dest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(limits: &Arc<Limits>, dest: &str) -> Option<Permits> {
        let sem = limits.destination(dest);
        let d = sem.clone().try_acquire_owned().ok()?;
        let g = limits.global.clone().try_acquire_owned().ok()?;
        Some(Permits::new(limits.clone(), dest, sem, d, g))
    }

    #[test]
    fn global_and_per_destination_limits() {
        let limits = Limits::new(3, 2);
        let a1 = take(&limits, "a.test").unwrap();
        let _a2 = take(&limits, "a.test").unwrap();
        assert!(take(&limits, "a.test").is_none(), "two per destination");
        let _b1 = take(&limits, "b.test").unwrap();
        assert!(take(&limits, "c.test").is_none(), "three in all");
        drop(a1);
        assert!(take(&limits, "c.test").is_some());
    }

    #[test]
    fn unused_destinations_are_forgotten() {
        let limits = Limits::new(10, 1);
        let a = take(&limits, "a.test").unwrap();
        let b = take(&limits, "b.test").unwrap();
        assert_eq!(limits.tracked(), 2);
        drop(a);
        assert_eq!(limits.tracked(), 1);
        drop(b);
        assert_eq!(limits.tracked(), 0);
    }

    #[test]
    fn zero_limits_mean_one() {
        let limits = Limits::new(0, 0);
        let _a = take(&limits, "a.test").unwrap();
        assert!(take(&limits, "b.test").is_none());
    }
}

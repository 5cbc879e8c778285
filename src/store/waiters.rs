//! Waiters of jobs in one process, woken by a store's listener when a job
//! ends anywhere (Redis pub/sub, PostgreSQL `LISTEN`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::store::JobId;

/// Local waiters by job id, woken by the listener.
#[derive(Default)]
pub(crate) struct Waiters {
    /// One notifier per job that has local waiters.
    map: Mutex<HashMap<JobId, Arc<Notify>>>,
    /// How many times every waiter was woken: a waiter that sees it
    /// unchanged across its wake-up was woken for its own job.
    wake_alls: AtomicU64,
}

/// One waiter's registration; removed from the map with the last waiter.
pub(crate) struct Waiter<'a> {
    /// Where it is registered.
    waiters: &'a Waiters,
    /// The job it waits for.
    id: JobId,
    /// Notified when the job ends (or may have: after a reconnection).
    pub(crate) notify: Arc<Notify>,
}

impl Waiters {
    /// Registers a waiter of `id`, sharing the job's notifier with the
    /// others.
    pub(crate) fn register(&self, id: JobId) -> Waiter<'_> {
        let notify = Arc::clone(lock(&self.map).entry(id).or_default());
        Waiter {
            waiters: self,
            id,
            notify,
        }
    }

    /// Wakes the waiters of `id`.
    pub(crate) fn wake(&self, id: JobId) {
        if let Some(notify) = lock(&self.map).get(&id) {
            notify.notify_waiters();
        }
    }

    /// How many times [`wake_all`](Self::wake_all) ran: read before a
    /// waiter sleeps, it tells after a wake-up whether the wake-up was for
    /// the waiter's job alone (unchanged) or for everyone (changed).
    pub(crate) fn wake_alls(&self) -> u64 {
        self.wake_alls.load(Ordering::Acquire)
    }

    /// Wakes every waiter, to look again.
    pub(crate) fn wake_all(&self) {
        self.wake_alls.fetch_add(1, Ordering::AcqRel);
        for notify in lock(&self.map).values() {
            notify.notify_waiters();
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut map = lock(&self.waiters.map);
        // The map's reference and ours: no other waiter is left.
        if map.get(&self.id).is_some_and(|n| Arc::strong_count(n) <= 2) {
            map.remove(&self.id);
        }
    }
}

/// The map, even if a thread panicked while holding it: it holds only
/// notifiers, which a panic leaves whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

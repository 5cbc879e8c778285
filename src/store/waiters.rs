//! Waiters of jobs in one process, woken by a store's listener when a job
//! ends, or changes, anywhere (Redis pub/sub, PostgreSQL `LISTEN`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::store::{JobId, Lookup, StoreError};

/// Local waiters by job id, woken by the listener.
#[derive(Default)]
pub(crate) struct Waiters {
    /// What the waiters of each job share, for jobs that have local
    /// waiters.
    map: Mutex<HashMap<JobId, Arc<Slot>>>,
}

/// What the waiters of one job share.
#[derive(Default)]
struct Slot {
    /// Notified when the job ends, and when every waiter must look again.
    notify: Notify,
    /// Notified when the job changes in any way (it ends too), and when
    /// every waiter must look again: apart from `notify`, so that a long
    /// poll is not woken by every progress of its job.
    changed: Notify,
    /// How many times the job was announced as ended (raised before the
    /// notification, by [`Waiters::wake`] alone).
    ends: AtomicU64,
}

/// One waiter's registration; removed from the map with the last waiter.
pub(crate) struct Waiter<'a> {
    /// Where it is registered.
    waiters: &'a Waiters,
    /// The job it waits for.
    id: JobId,
    /// Shared with the job's other waiters.
    slot: Arc<Slot>,
}

impl Waiter<'_> {
    /// A future that resolves when the job ends (or may have: after a
    /// reconnection, every waiter is woken to look again).
    pub(crate) fn notified(&self) -> Notified<'_> {
        self.slot.notify.notified()
    }

    /// How many times the job was announced as ended. Read after the
    /// `notified` future is enabled and before the job is read, a change
    /// seen after a wake-up says the job ended since; no change, that the
    /// wake-up was for everyone (a reconnection), and the job must be read
    /// again.
    pub(crate) fn ends(&self) -> u64 {
        self.slot.ends.load(Ordering::Acquire)
    }
}

impl Waiters {
    /// Registers a waiter of `id`, sharing the job's slot with the others.
    pub(crate) fn register(&self, id: JobId) -> Waiter<'_> {
        let slot = Arc::clone(lock(&self.map).entry(id).or_default());
        Waiter {
            waiters: self,
            id,
            slot,
        }
    }

    /// [`wait_terminal`](crate::store::JobStore::wait_terminal) of a
    /// store whose listener feeds these waiters: resolves once `read`
    /// finds job `id` terminal, unknown or expired. It reads the job when
    /// it starts, after a wake of everyone (a reconnection: messages were
    /// missed) and every `every` (a message can be missed without one, a
    /// failover say); the announcement of the job's own end needs no read,
    /// so that a thousand long polls of one job cost no thousand reads at
    /// its end.
    pub(crate) async fn wait_for_end<F, Fut>(&self, id: JobId, every: Duration, read: F) -> Result<(), StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Lookup, StoreError>>,
    {
        let waiter = self.register(id);
        loop {
            let notified = waiter.notified();
            tokio::pin!(notified);
            // Enabled before the job is read: an end announced after the
            // read wakes us.
            notified.as_mut().enable();
            let ends = waiter.ends();
            match read().await? {
                Lookup::Found(record) if !record.status.is_terminal() => {}
                _ => return Ok(()),
            }
            tokio::select! {
                _ = &mut notified => {
                    if waiter.ends() != ends {
                        return Ok(());
                    }
                }
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// [`wait_change`](crate::store::JobStore::wait_change) of a store
    /// whose listener feeds these waiters: resolves once `read` finds job
    /// `id` changed since `seen` (its `updated_at_ms`), ended, unknown or
    /// expired. It reads the job when it starts, at every announced change
    /// and every `every` (a message can be missed).
    pub(crate) async fn wait_for_change<F, Fut>(
        &self,
        id: JobId,
        seen: u64,
        every: Duration,
        read: F,
    ) -> Result<(), StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Lookup, StoreError>>,
    {
        let waiter = self.register(id);
        loop {
            let changed = waiter.slot.changed.notified();
            tokio::pin!(changed);
            // Enabled before the job is read: a change announced after the
            // read wakes us.
            changed.as_mut().enable();
            match read().await? {
                Lookup::Found(record) if record.updated_at_ms == seen && !record.status.is_terminal() => {}
                _ => return Ok(()),
            }
            tokio::select! {
                () = &mut changed => {}
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Wakes the waiters of `id`, which ended (or was deleted).
    pub(crate) fn wake(&self, id: JobId) {
        if let Some(slot) = lock(&self.map).get(&id) {
            slot.ends.fetch_add(1, Ordering::AcqRel);
            slot.notify.notify_waiters();
            slot.changed.notify_waiters();
        }
    }

    /// Wakes the watchers of the changes of `id`, which changed without
    /// ending (it started, or made progress).
    pub(crate) fn changed(&self, id: JobId) {
        if let Some(slot) = lock(&self.map).get(&id) {
            slot.changed.notify_waiters();
        }
    }

    /// Wakes the waiters an announcement names: a job's id when it ended
    /// (or was deleted), `~` and its id when it changed without ending.
    /// Anything else (a message of a later version, say) is let go.
    pub(crate) fn announce(&self, payload: &str) {
        match payload.strip_prefix('~') {
            Some(id) => {
                if let Ok(id) = id.parse::<JobId>() {
                    self.changed(id);
                }
            }
            None => {
                if let Ok(id) = payload.parse::<JobId>() {
                    self.wake(id);
                }
            }
        }
    }

    /// Wakes every waiter, to look again.
    pub(crate) fn wake_all(&self) {
        for slot in lock(&self.map).values() {
            slot.notify.notify_waiters();
            slot.changed.notify_waiters();
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut map = lock(&self.waiters.map);
        // The map's reference and ours: no other waiter is left.
        if map.get(&self.id).is_some_and(|s| Arc::strong_count(s) <= 2) {
            map.remove(&self.id);
        }
    }
}

/// The map, even if a thread panicked while holding it: it holds only
/// notifiers and counters, which a panic leaves whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_of_everyone_is_told_from_the_end_of_the_job() {
        let waiters = Waiters::default();
        let id = JobId::new();
        let waiter = waiters.register(id);
        let notified = waiter.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let ends = waiter.ends();
        waiters.wake_all();
        notified.await;
        assert_eq!(waiter.ends(), ends, "a wake of everyone is no end");
        let notified = waiter.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        waiters.wake(id);
        notified.await;
        assert_ne!(waiter.ends(), ends, "the job's own end is told");
        waiters.wake(JobId::new());
        assert_eq!(waiter.ends(), ends + 1, "another job's end is not");
    }
}

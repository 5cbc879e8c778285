//! Completion-callback deliveries of a [`MemoryStore`](super::MemoryStore):
//! the due queue, its claims and the attempts recorded.
//!
//! The queue holds the jobs that ended with a delivery still pending, by
//! due time (ms of the store's clock, see [`Inner::now_ms`]): bounded by the
//! jobs the store holds. Its lock is taken while a shard's is held (a job
//! ends, an attempt is recorded), never the reverse: a claim takes its
//! deliveries first and reads their jobs after.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use rustc_hash::FxBuildHasher;

use super::{Inner, MemoryStore, lock};
use crate::store::{DeliveryAttempt, DeliveryState, DueDelivery, JobId};

#[derive(Default)]
pub(super) struct Deliveries {
    inner: Mutex<Due>,
}

#[derive(Default)]
struct Due {
    /// `(due ms, id)`, soonest first.
    queue: BTreeSet<(u64, JobId)>,
    /// Each queued job's due time, to find its place in `queue`.
    at: HashMap<JobId, u64, FxBuildHasher>,
}

impl Due {
    fn set(&mut self, id: JobId, due: u64) {
        if let Some(old) = self.at.insert(id, due) {
            self.queue.remove(&(old, id));
        }
        self.queue.insert((due, id));
    }

    fn remove(&mut self, id: JobId) {
        if let Some(old) = self.at.remove(&id) {
            self.queue.remove(&(old, id));
        }
    }
}

impl Deliveries {
    /// Makes the delivery of `id` due at `due` (ms of the store's clock).
    pub(super) fn schedule(&self, id: JobId, due: u64) {
        lock(&self.inner).set(id, due);
    }

    /// Takes the delivery of `id` off the queue.
    pub(super) fn remove(&self, id: JobId) {
        lock(&self.inner).remove(id);
    }

    /// Takes up to `limit` deliveries due at `now`, soonest first, each
    /// held: due again at `held_until`.
    fn take(&self, now: u64, limit: usize, held_until: u64) -> Vec<JobId> {
        let mut due = lock(&self.inner);
        let ids: Vec<JobId> = due
            .queue
            .iter()
            .take_while(|&&(at, _)| at <= now)
            .take(limit)
            .map(|&(_, id)| id)
            .collect();
        for &id in &ids {
            due.set(id, held_until);
        }
        ids
    }

    /// Takes `id` off the queue if it is due at `at` (a claim's hold that
    /// found its job gone or its delivery ended meanwhile).
    fn remove_if_at(&self, id: JobId, at: u64) {
        let mut due = lock(&self.inner);
        if due.at.get(&id) == Some(&at) {
            due.remove(id);
        }
    }
}

impl Inner {
    /// The store's clock in ms since the Unix epoch: the wall clock when
    /// the store was built, moved on by tokio's clock since (so that a
    /// paused clock in tests moves due times and expiry together).
    pub(super) fn now_ms(&self) -> u64 {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.epoch);
        self.epoch_ms
            .saturating_add(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
    }

    /// Keeps the ended job `id` the store's time to live from now: its
    /// place in the expiry queue moves to the back (the entry it had is
    /// passed by when it comes up).
    pub(super) fn keep_ended(&self, entry: &mut super::entry::Entry, id: JobId) {
        if entry.expires_at == 0 {
            return;
        }
        let at = self.now().saturating_add(self.ttl);
        entry.expires_at = at;
        self.finished.requeue(at, id);
    }
}

impl MemoryStore {
    pub(super) fn claim_due_deliveries(&self, limit: usize, hold: Duration) -> Vec<DueDelivery> {
        let now = self.inner.now_ms();
        let held_until = now.saturating_add(u64::try_from(hold.as_millis()).unwrap_or(u64::MAX));
        let ids = self.inner.deliveries.take(now, limit, held_until);
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let mut shard = self.shard(id);
            let pending = shard.jobs.get_mut(&id).and_then(|entry| {
                let token = entry.callback().filter(|c| c.state == DeliveryState::Pending)?.attempts;
                Some((entry, token))
            });
            match pending {
                Some((entry, token)) => {
                    self.inner.keep_ended(entry, id);
                    claimed.push(DueDelivery::new(entry.record(id), token));
                }
                None => {
                    drop(shard);
                    self.inner.deliveries.remove_if_at(id, held_until);
                }
            }
        }
        claimed
    }

    pub(super) fn record_attempt(&self, id: JobId, token: u32, attempt: DeliveryAttempt) -> bool {
        let mut shard = self.shard(id);
        let Some(entry) = shard.jobs.get_mut(&id).filter(|e| e.status.is_terminal()) else {
            return false;
        };
        let Some(callback) = entry.callback_mut() else {
            return false;
        };
        if callback.state != DeliveryState::Pending || callback.attempts != token {
            return false;
        }
        callback.attempts = token.saturating_add(1);
        match attempt {
            DeliveryAttempt::Delivered | DeliveryAttempt::Failed => {
                callback.state = attempt.state().unwrap_or(DeliveryState::Failed);
                self.inner.deliveries.remove(id);
            }
            // Due by the caller's wall clock, kept by the store's: in one
            // process they agree.
            DeliveryAttempt::RetryAt(due) => self.inner.deliveries.schedule(id, due),
        }
        self.inner.keep_ended(entry, id);
        true
    }
}

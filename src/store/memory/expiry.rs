//! Expiry and eviction of finished jobs: a few at a time at each
//! operation, and past the byte budget as soon as a job ends.

use std::sync::atomic::Ordering;

use super::{EVICT_BUDGET, Inner, PURGE_BUDGET, lock};

/// How many jobs kept for their pending delivery one eviction passes by at
/// most before it leaves the rest to later operations.
const KEPT_BUDGET: usize = 64;
use crate::store::JobId;

impl Inner {
    /// Clears a few finished jobs that expired, or the oldest while over
    /// the byte budget. Called with no lock held.
    pub(super) fn maintain(&self) {
        // No clock is read while nothing has finished.
        if self.finished.is_idle() {
            return;
        }
        let now = self.now();
        for _ in 0..PURGE_BUDGET {
            if !self.finished.due(now) {
                return;
            }
            let Some((at, id)) = self.finished.pop_due(now) else {
                return;
            };
            self.remove_finished(at, id, now);
        }
    }

    /// Brings the finished jobs back within the byte budget right after one
    /// ended, rather than at later operations: the oldest are evicted, at
    /// most [`EVICT_BUDGET`] at a time (one large result may need many small
    /// ones to go; any rest goes at the next operations).
    pub(super) fn evict_over_budget(&self) {
        if !self.finished.over_budget() {
            return;
        }
        let now = self.now();
        let mut kept = 0;
        for _ in 0..EVICT_BUDGET {
            let Some((at, id)) = self.finished.pop_due(now) else {
                return;
            };
            // Jobs whose delivery is pending are not evicted; past a few of
            // them, the rest waits for later operations (the budget may be
            // exceeded by them meanwhile).
            if self.remove_finished(at, id, now) {
                kept += 1;
                if kept >= KEPT_BUDGET {
                    return;
                }
            }
            if !self.finished.over_budget() {
                return;
            }
        }
    }

    /// Removes the finished job `id` whose place in the expiry queue was
    /// `at` (nothing if it was deleted or ended again since), and remembers
    /// its id as expired. Answers `true` when the job was kept instead, its
    /// callback yet to be delivered.
    pub(super) fn remove_finished(&self, at: u64, id: JobId, now: u64) -> bool {
        let mut shard = lock(self.shard_of(id));
        // Only the job that queue place belongs to.
        if shard.jobs.get(&id).is_none_or(|e| e.expires_at != at) {
            return false;
        }
        if let Some(entry) = shard.jobs.get_mut(&id).filter(|e| e.delivery_pending()) {
            // Its callback is yet to be delivered: kept, and looked at
            // again a time to live later.
            self.keep_ended(entry, id);
            return true;
        }
        let Some(mut entry) = shard.jobs.remove(&id) else {
            return false;
        };
        if entry.callback().is_some() {
            self.deliveries.remove(id);
        }
        shard.give_back_memory();
        self.finished.give_back(entry.bytes);
        self.len.fetch_sub(1, Ordering::AcqRel);
        self.unindex(id, &entry);
        // An evicted job is remembered from now, an expired one from when
        // it expired.
        let forget_at = at.min(now).saturating_add(self.tombstone_ttl);
        shard
            .tombstones
            .bury(id, forget_at, now, &self.tombstones, self.max_tombstones);
        let wakeups = entry.take_waiters();
        drop(shard);
        wakeups.wake();
        false
    }
}

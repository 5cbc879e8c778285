//! Expired ids, remembered for a bounded time and number so that they answer
//! `410 Gone` rather than `404`. One set per shard of the store, behind the
//! shard's own lock, so that looking up an unknown id takes no global lock.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};

use rustc_hash::FxBuildHasher;

use crate::store::JobId;

/// The expired ids of one shard, each with when it is forgotten (in the
/// store's ticks).
#[derive(Default)]
pub(super) struct Tombstones {
    /// Keyed by ids the store made (random), so a fast unkeyed hash will do.
    map: HashMap<JobId, u64, FxBuildHasher>,
    /// The same, in the order they are forgotten (one time to live for all).
    order: VecDeque<(u64, JobId)>,
}

impl Tombstones {
    /// Remembers `id` until `forget_at`. `total` counts the tombstones of
    /// every shard, at most `max`: past it this shard's oldest is forgotten
    /// for it, or, when this shard has none, `id` is not remembered (so the
    /// bound is exact, and the oldest go first as nearly as one shard can
    /// tell).
    pub(super) fn bury(&mut self, id: JobId, forget_at: u64, now: u64, total: &AtomicUsize, max: usize) {
        self.forget(now, total);
        if max == 0 {
            return;
        }
        if total.load(Ordering::Acquire) >= max {
            let Some((at, oldest)) = self.order.pop_front() else {
                return;
            };
            if self.map.get(&oldest) == Some(&at) {
                self.map.remove(&oldest);
                total.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if self.map.insert(id, forget_at).is_none() {
            total.fetch_add(1, Ordering::AcqRel);
        }
        self.order.push_back((forget_at, id));
    }

    /// Whether `id` is remembered as expired at `now`.
    pub(super) fn contains(&mut self, id: JobId, now: u64, total: &AtomicUsize) -> bool {
        if self.map.is_empty() {
            return false;
        }
        self.forget(now, total);
        self.map.contains_key(&id)
    }

    /// Drops tombstones past their time, and gives memory back once most of
    /// it is unused.
    fn forget(&mut self, now: u64, total: &AtomicUsize) {
        while let Some(&(forget_at, id)) = self.order.front() {
            if forget_at > now {
                break;
            }
            self.order.pop_front();
            if self.map.get(&id) == Some(&forget_at) {
                self.map.remove(&id);
                total.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if self.order.capacity() > 64 && self.order.capacity() > 4 * self.order.len() {
            self.order.shrink_to(2 * self.order.len());
            self.map.shrink_to(2 * self.map.len());
        }
    }
}

//! The side indexes of [`MemoryStore`](super::MemoryStore): jobs by owner
//! (for listing) and idempotency keys. Sharded like the jobs, so that no
//! global lock is taken.
//!
//! Lock order: a job shard may be held while one of these shards is taken,
//! never the reverse, so that no two locks are ever waited for in opposite
//! orders.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, MutexGuard};

use super::{JobId, ListCursor};

const SHARDS: usize = 16;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn shard_of(text: &str) -> usize {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    (hasher.finish() as usize) % SHARDS
}

/// One shard of the owner index: owner → jobs.
type OwnerShard = Mutex<HashMap<String, BTreeSet<ListCursor>>>;
/// One shard of the key index: scope → (holder, fingerprint).
type KeyShard = Mutex<HashMap<String, (JobId, String)>>;

/// Each owner's jobs, ordered by creation time then id.
pub(super) struct OwnerIndex {
    shards: Box<[OwnerShard]>,
}

impl Default for OwnerIndex {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl OwnerIndex {
    pub(super) fn insert(&self, owner: &str, created_at_ms: u64, id: JobId) {
        let mut shard = lock(&self.shards[shard_of(owner)]);
        shard
            .entry(owner.to_owned())
            .or_default()
            .insert(ListCursor::new(created_at_ms, id));
    }

    pub(super) fn remove(&self, owner: &str, created_at_ms: u64, id: JobId) {
        let mut shard = lock(&self.shards[shard_of(owner)]);
        if let Some(jobs) = shard.get_mut(owner) {
            jobs.remove(&ListCursor::new(created_at_ms, id));
            if jobs.is_empty() {
                shard.remove(owner);
            }
        }
    }

    /// Up to `limit` jobs of `owner` older than `after` (all when `None`),
    /// newest first.
    pub(super) fn page(&self, owner: &str, limit: usize, after: Option<ListCursor>) -> Vec<ListCursor> {
        let shard = lock(&self.shards[shard_of(owner)]);
        let Some(jobs) = shard.get(owner) else {
            return Vec::new();
        };
        match after {
            Some(after) => jobs.range(..after).rev().take(limit).copied().collect(),
            None => jobs.iter().rev().take(limit).copied().collect(),
        }
    }
}

/// Idempotency keys (scoped by owner): the job each names, and the
/// fingerprint of the request that first used it.
pub(super) struct KeyIndex {
    shards: Box<[KeyShard]>,
}

impl Default for KeyIndex {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl KeyIndex {
    /// Takes `scope` for `id` unless it is taken; returns the holder then.
    pub(super) fn claim(&self, scope: &str, id: JobId, fingerprint: &str) -> Option<(JobId, String)> {
        let mut shard = lock(&self.shards[shard_of(scope)]);
        if let Some(holder) = shard.get(scope) {
            return Some(holder.clone());
        }
        shard.insert(scope.to_owned(), (id, fingerprint.to_owned()));
        None
    }

    /// The holder of `scope`, if it is taken.
    pub(super) fn holder(&self, scope: &str) -> Option<(JobId, String)> {
        lock(&self.shards[shard_of(scope)]).get(scope).cloned()
    }

    /// Frees `scope` if `id` holds it.
    pub(super) fn release(&self, scope: &str, id: JobId) {
        let mut shard = lock(&self.shards[shard_of(scope)]);
        if shard.get(scope).is_some_and(|(holder, _)| *holder == id) {
            shard.remove(scope);
        }
    }
}

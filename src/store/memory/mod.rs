//! [`MemoryStore`]: jobs in this process's memory.

mod builder;
mod deliveries;
mod entry;
mod expiry;
mod finished;
mod job_store;
mod queues;
mod shard;
mod tombstones;
mod wait;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::index::{KeyIndex, OwnerIndex};
use super::{Claim, JobId, JobRecord, Lookup, StoreError};
pub use builder::MemoryStoreBuilder;
use entry::{Entry, Wakeups};
use finished::Finished;
use shard::Shard;

/// Shards of the map: enough that two cores (or sixty-four) rarely meet on
/// one lock, few enough to cost nothing when idle.
const SHARDS: usize = 1 << SHARD_BITS;
const SHARD_BITS: u32 = 6;
/// How many finished jobs one operation clears at most, so that expiry is
/// spread over the operations and never stops the world.
const PURGE_BUDGET: usize = 32;
/// How many finished jobs one ending job evicts at most to get back within
/// the byte budget.
const EVICT_BUDGET: usize = 4096;

/// Jobs kept in this process's memory: the default store.
///
/// - **Cost.** Every operation is O(1): a map split into shards (chosen by a
///   hash keyed at random per store, so that no client can crowd one), each
///   behind its own short-held lock, never held across an `.await`; waiters
///   are woken after the lock is released.
/// - **Unfinished jobs** (pending and running) are bounded by `capacity`
///   (default 100,000): past it [`create`](crate::store::JobStore::create) fails with
///   [`StoreError::Full`] and the layer answers `503` with `Retry-After`.
///   Finished jobs do not count against it.
/// - **Finished jobs** are kept for the time to live (default one hour)
///   within a byte budget (default 256 MiB): a job weighs its response's
///   body and headers, its texts, and about 320 bytes of bookkeeping. Past
///   the budget the oldest finished jobs are evicted first. Expiry and
///   eviction are amortised over later operations, a few jobs at a time.
/// - **Expired ids** (by time or by the budget) are remembered, for
///   `410 Gone`, for a bounded time and number (default as many as
///   `capacity`, for 24 hours), each in its job's shard.
///
/// With the defaults, a steady 100 jobs a second with results of a few
/// hundred bytes keeps about 360,000 finished jobs (an hour's worth),
/// weighing about 170 MB of the 256 MiB budget, and refuses none; the
/// process holds about 280 bytes per finished job besides its result
/// (`cargo bench --bench memory`).
///
/// Cloning is cheap and every clone shares the same jobs. Jobs do not
/// survive the process, nor are they seen by other processes: for several
/// replicas use a shared store.
///
/// ```
/// use std::time::Duration;
/// use tower_accepted::{AcceptedLayer, store::MemoryStore};
///
/// let store = MemoryStore::builder()
///     .capacity(10_000)
///     .ttl(Duration::from_secs(15 * 60))
///     .max_finished_bytes(64 * 1024 * 1024)
///     .build();
/// let layer = AcceptedLayer::new().store(store);
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("len", &self.len())
            .field("capacity", &self.inner.capacity)
            .field("ttl", &self.inner.ttl)
            .field("finished_bytes", &self.inner.finished.bytes())
            .finish()
    }
}

struct Inner {
    /// Times are kept as ticks: nanoseconds after this instant.
    epoch: Instant,
    /// The wall clock at `epoch`, in ms since the Unix epoch: the origin
    /// of delivery due times ([`Inner::now_ms`]).
    epoch_ms: u64,
    shards: Box<[Mutex<Shard>]>,
    /// Picks a job's shard with its id: random per store, since clients
    /// choose the ids they look up (see [`Inner::shard_of`]).
    shard_key: u64,
    /// Jobs held, of every state.
    len: AtomicUsize,
    /// Jobs held that have not ended: bounded by `capacity`.
    unfinished: AtomicUsize,
    capacity: usize,
    ttl: u64,
    finished: Finished,
    /// Tombstones kept, in every shard together: at most `max_tombstones`.
    tombstones: AtomicUsize,
    max_tombstones: usize,
    tombstone_ttl: u64,
    owners: OwnerIndex,
    keys: KeyIndex,
    /// Durable jobs waiting for a runner.
    queues: queues::Queues,
    /// Callback deliveries of ended jobs, by due time.
    deliveries: deliveries::Deliveries,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store with the default limits: 100,000 unfinished jobs, finished
    /// ones kept one hour within 256 MiB.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to set the capacity, the time to live, the byte budget and
    /// the tombstones.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            capacity: 100_000,
            ttl: Duration::from_secs(3600),
            max_finished_bytes: 256 * 1024 * 1024,
            tombstones: None,
            tombstone_ttl: Duration::from_secs(24 * 3600),
        }
    }

    /// How many jobs the store holds, including ended ones not yet expired.
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Relaxed)
    }

    /// Whether the store holds no job.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the finished jobs held weigh together, in bytes (see
    /// [`MemoryStoreBuilder::max_finished_bytes`]).
    pub fn finished_bytes(&self) -> usize {
        self.inner.finished.bytes()
    }

    /// Clears every expired job now. Operations do this a few jobs at a
    /// time on their own; call it to release memory at once, for example
    /// after a burst.
    pub fn purge_expired(&self) {
        let now = self.inner.now();
        // Jobs kept for their pending delivery go back in the queue, a
        // time to live on: each is passed by once, so that the loop ends.
        let mut passes = self.inner.len.load(Ordering::Acquire);
        while let Some((at, id)) = self.inner.finished.pop_due(now) {
            if self.inner.remove_finished(at, id, now) {
                if passes == 0 {
                    return;
                }
                passes -= 1;
            }
        }
    }

    fn shard_of(&self, id: JobId) -> &Mutex<Shard> {
        self.inner.shard_of(id)
    }

    /// The shard of `id`, locked, after a little of the store's expiry and
    /// eviction work (done before, since it locks other shards).
    fn shard(&self, id: JobId) -> MutexGuard<'_, Shard> {
        self.inner.maintain();
        lock(self.shard_of(id))
    }

    /// Takes a place among the unfinished jobs.
    fn reserve(&self) -> Result<(), StoreError> {
        let capacity = self.inner.capacity;
        self.inner
            .unfinished
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < capacity).then_some(n + 1))
            .map(drop)
            .map_err(|_| StoreError::Full)
    }

    /// Ends a job that has not ended, if `claim` is its current attempt,
    /// and wakes its waiters.
    fn end_job(&self, claim: Claim, end: impl FnOnce(&mut Entry)) -> bool {
        self.end_job_if(claim.id(), |entry| entry.held_by(claim), end)
    }

    /// Ends a job that has not ended, whichever attempt runs it (a
    /// client's cancel), and wakes its waiters.
    fn end_job_of_any_attempt(&self, id: JobId, end: impl FnOnce(&mut Entry)) -> bool {
        self.end_job_if(id, |_| true, end)
    }

    fn end_job_if(&self, id: JobId, current: impl FnOnce(&Entry) -> bool, end: impl FnOnce(&mut Entry)) -> bool {
        let mut shard = self.shard(id);
        let Some(entry) = shard.jobs.get_mut(&id) else {
            return false;
        };
        if entry.status.is_terminal() || !current(entry) {
            return false;
        }
        end(entry);
        let wakeups = self.inner.ended(&mut shard, id);
        drop(shard);
        wakeups.wake();
        self.inner.evict_over_budget();
        true
    }
}

/// A poisoned lock only means another thread panicked while holding it; the
/// maps are still consistent (every update is a single insert or remove),
/// so keep serving.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    fn shard_of(&self, id: JobId) -> &Mutex<Shard> {
        // A keyed multiplicative hash: the id's two halves folded, XORed
        // with the store's random key, multiplied by an odd constant, and
        // the top bits taken. Without the key a client cannot tell which
        // ids share a shard; it costs a nanosecond where SipHash cost about
        // twenty on every operation (`cargo bench --bench overhead`).
        let (high, low) = id.as_uuid().as_u64_pair();
        let mixed = (high ^ low.rotate_left(32) ^ self.shard_key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        &self.shards[(mixed >> (64 - SHARD_BITS)) as usize]
    }

    fn now(&self) -> u64 {
        u64::try_from(Instant::now().saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Removes a job that leaves the store from the side indexes.
    fn unindex(&self, id: JobId, entry: &Entry) {
        self.unqueue(id, entry);
        if let Some(owner) = entry.owner() {
            self.owners.remove(owner, entry.created_at_ms, id);
        }
        if let Some(key) = entry.key() {
            self.keys.release(key, id);
        }
    }

    /// Removes a job from its shard and every account, as `delete` does.
    fn remove(&self, shard: &mut Shard, id: JobId) -> Option<Wakeups> {
        let mut entry = shard.jobs.remove(&id)?;
        shard.give_back_memory();
        self.len.fetch_sub(1, Ordering::AcqRel);
        if entry.expires_at == 0 {
            self.unfinished.fetch_sub(1, Ordering::AcqRel);
        } else {
            self.finished.remove(entry.expires_at, id, entry.bytes);
        }
        self.unindex(id, &entry);
        if entry.callback().is_some() {
            self.deliveries.remove(id);
        }
        Some(entry.take_waiters())
    }

    /// Adds a job to a shard (its place among the unfinished taken, unless
    /// it has ended already) and to the owner index.
    fn insert(&self, shard: &mut Shard, record: JobRecord, key: Option<String>) -> Wakeups {
        let id = record.id;
        let terminal = record.status.is_terminal();
        // Replacing a job with the same id: the old one leaves first.
        let mut wakeups = self.remove(shard, id).unwrap_or_default();
        if let Some(owner) = &record.owner {
            self.owners.insert(owner, record.created_at_ms, id);
        }
        shard.jobs.insert(id, Entry::new(record, key));
        self.len.fetch_add(1, Ordering::AcqRel);
        if terminal {
            // Counted as unfinished for a moment, so that `ended` balances.
            self.unfinished.fetch_add(1, Ordering::AcqRel);
            wakeups.add(self.ended(shard, id));
        }
        wakeups
    }

    /// A job of `shard` just ended: it leaves the unfinished, starts its
    /// time to live and its weight, and its waiters are taken.
    fn ended(&self, shard: &mut Shard, id: JobId) -> Wakeups {
        let Some(entry) = shard.jobs.get_mut(&id) else {
            return Wakeups::default();
        };
        self.unqueue(id, entry);
        let at = self.now().saturating_add(self.ttl);
        entry.expires_at = at;
        entry.bytes = entry.weight();
        self.unfinished.fetch_sub(1, Ordering::AcqRel);
        self.finished.push(at, id, entry.bytes);
        if entry.delivery_pending() {
            // Due at once, in the same step as the end.
            self.deliveries.schedule(id, self.now_ms());
        }
        entry.take_waiters()
    }

    /// Takes a job that waited in its queue out of it.
    fn unqueue(&self, id: JobId, entry: &Entry) {
        if let Some(durable) = entry.durable().filter(|d| d.waiting) {
            self.queues.remove(&durable.queue, entry.created_at_ms, id);
        }
    }

    /// What a missing id is: expired recently, or unknown.
    fn missing(&self, shard: &mut Shard, id: JobId) -> Lookup {
        if shard.tombstones.contains(id, self.now(), &self.tombstones) {
            Lookup::Expired
        } else {
            Lookup::Unknown
        }
    }

    /// The holder of an idempotency key as the key index names it: found,
    /// or, when it expired or left, released so that the key is free.
    fn key_holder(&self, holder: JobId, now: u64) -> Option<JobRecord> {
        let shard = lock(self.shard_of(holder));
        match shard.jobs.get(&holder) {
            Some(entry) if !entry.expired(now) => return Some(entry.record(holder)),
            Some(entry) => {
                let at = entry.expires_at;
                drop(shard);
                // Expired but not yet cleared: cleared now, which frees the key.
                self.remove_finished(at, holder, now);
            }
            None => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn shard_index(store: &MemoryStore, id: JobId) -> usize {
        let shard: *const Mutex<Shard> = store.inner.shard_of(id);
        store
            .inner
            .shards
            .iter()
            .position(|s| std::ptr::eq(s, shard))
            .unwrap_or(usize::MAX)
    }

    /// Ids a client chose to share their first byte (the old shard choice)
    /// spread over the shards, and two stores place them differently.
    #[test]
    fn shards_are_chosen_by_a_keyed_hash() {
        let ids: Vec<JobId> = (0..2_000)
            .map(|_| {
                let mut bytes = *JobId::new().as_bytes();
                bytes[0] = 0x42;
                JobId::from(uuid::Uuid::from_bytes(bytes))
            })
            .collect();
        let (a, b) = (MemoryStore::new(), MemoryStore::new());
        let spread: HashSet<usize> = ids.iter().map(|&id| shard_index(&a, id)).collect();
        assert!(spread.len() > SHARDS / 2, "{} shards used", spread.len());
        assert!(!spread.contains(&usize::MAX));
        let same = ids
            .iter()
            .filter(|&&id| shard_index(&a, id) == shard_index(&b, id))
            .count();
        assert!(
            same < ids.len() / 4,
            "{same} of {} ids in the same shard of both stores",
            ids.len()
        );
    }
}

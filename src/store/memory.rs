//! [`MemoryStore`]: jobs in this process's memory.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::index::{KeyIndex, OwnerIndex};
use super::{
    Cancel, Created, IdempotencyKey, JobId, JobRecord, JobStatus, JobStore, ListCursor, Lookup, Outcome, Page,
    StoreError, StoredResponse,
};

/// Shards of the map: enough that two cores (or sixty-four) rarely meet on
/// one lock, few enough to cost nothing when idle.
const SHARDS: usize = 64;
/// How many expired entries one operation clears at most, so that expiry is
/// spread over the operations and never stops the world.
const PURGE_BUDGET: usize = 32;

/// Jobs kept in this process's memory: the default store.
///
/// - every operation is O(1): a map split into shards, each behind its own
///   short-held lock (never held across an `.await`);
/// - finished and canceled jobs expire after a time to live (default one
///   hour); expiry is amortised over later operations on the same shard, a
///   few entries at a time;
/// - at most `capacity` jobs are kept (default 100,000); past that
///   [`create`](JobStore::create) fails with [`StoreError::Full`] and the
///   layer answers `503` with `Retry-After`; nothing is evicted early;
/// - an expired id is remembered (for `410 Gone`) for a bounded time and
///   number of ids.
///
/// Cloning is cheap and every clone shares the same jobs. Jobs do not
/// survive the process, nor are they seen by other processes: for several
/// replicas use a shared store.
///
/// ```
/// use std::time::Duration;
/// use tower_accepted::{AcceptedLayer, MemoryStore};
///
/// let store = MemoryStore::builder()
///     .capacity(10_000)
///     .ttl(Duration::from_secs(15 * 60))
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
            .finish()
    }
}

/// Configures a [`MemoryStore`]; made by [`MemoryStore::builder`].
///
/// ```
/// use std::time::Duration;
/// use tower_accepted::MemoryStore;
///
/// let store = MemoryStore::builder()
///     .capacity(1_000)
///     .ttl(Duration::from_secs(60))
///     .tombstones(500, Duration::from_secs(3600))
///     .build();
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStoreBuilder {
    capacity: usize,
    ttl: Duration,
    tombstones: Option<usize>,
    tombstone_ttl: Duration,
}

impl MemoryStoreBuilder {
    /// The most jobs kept at once, of every state (default 100,000).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// How long a finished or canceled job is kept (default one hour).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How many expired ids are remembered for `410 Gone`, and for how long
    /// (default: as many as `capacity`, for 24 hours). Past the count the
    /// oldest are forgotten first (and answer `404`).
    pub fn tombstones(mut self, count: usize, ttl: Duration) -> Self {
        self.tombstones = Some(count);
        self.tombstone_ttl = ttl;
        self
    }

    /// The store.
    pub fn build(self) -> MemoryStore {
        MemoryStore {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
                len: AtomicUsize::new(0),
                capacity: self.capacity,
                ttl: self.ttl,
                tombstones: Mutex::new(Tombstones::default()),
                max_tombstones: self.tombstones.unwrap_or(self.capacity),
                tombstone_ttl: self.tombstone_ttl,
                owners: OwnerIndex::default(),
                keys: KeyIndex::default(),
            }),
        }
    }
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    len: AtomicUsize,
    capacity: usize,
    ttl: Duration,
    /// Expired ids of the whole store, kept apart from the shards so that
    /// their bound is exact; touched only when jobs expire and when a
    /// missing id is looked up.
    tombstones: Mutex<Tombstones>,
    max_tombstones: usize,
    tombstone_ttl: Duration,
    owners: OwnerIndex,
    keys: KeyIndex,
}

#[derive(Default)]
struct Tombstones {
    /// Expired ids, with when they are forgotten.
    map: HashMap<JobId, Instant, BuildHasherDefault<IdHasher>>,
    /// The same, in the order they are forgotten (one TTL for all).
    order: VecDeque<(Instant, JobId)>,
}

#[derive(Default)]
struct Shard {
    jobs: HashMap<JobId, Entry, BuildHasherDefault<IdHasher>>,
    /// Finished jobs in the order they expire (one TTL for all, so the order
    /// they finished in). An entry whose job was deleted or re-timed is
    /// skipped when it comes up.
    expiry: VecDeque<(Instant, JobId)>,
}

struct Entry {
    record: JobRecord,
    response: Option<StoredResponse>,
    expires_at: Option<Instant>,
    /// Created when the first waiter comes, dropped when the job ends.
    waiters: Option<Arc<Notify>>,
    /// The idempotency key (scope) this job holds, if any.
    key: Option<String>,
}

impl Entry {
    fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    fn wake(&mut self) {
        if let Some(waiters) = self.waiters.take() {
            waiters.notify_waiters();
        }
    }
}

/// Job ids are random already; hashing only needs to fold their bytes.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store with the default limits: 100,000 jobs, kept one hour after
    /// they end.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to set the capacity, the time to live and the tombstones.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            capacity: 100_000,
            ttl: Duration::from_secs(3600),
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

    /// Clears every expired job now, in every shard. Operations do this a few
    /// jobs at a time on their own; call it to release memory at once, for
    /// example after a burst.
    pub fn purge_expired(&self) {
        let now = Instant::now();
        for shard in self.inner.shards.iter() {
            let mut shard = lock(shard);
            self.inner.purge(&mut shard, now, usize::MAX);
        }
    }

    fn shard(&self, id: JobId) -> MutexGuard<'_, Shard> {
        let bytes = id.as_bytes();
        let index = usize::from(bytes[0]) % SHARDS;
        let mut shard = lock(&self.inner.shards[index]);
        self.inner.purge(&mut shard, Instant::now(), PURGE_BUDGET);
        shard
    }

    /// Takes a slot of the capacity, clearing expired jobs when full.
    fn reserve(&self) -> Result<(), StoreError> {
        if !self.reserve_slot() {
            // Expired jobs may still hold slots in shards nobody touched.
            self.purge_expired();
            if !self.reserve_slot() {
                return Err(StoreError::Full);
            }
        }
        Ok(())
    }

    fn reserve_slot(&self) -> bool {
        let capacity = self.inner.capacity;
        self.inner
            .len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < capacity).then_some(n + 1))
            .is_ok()
    }
}

/// A poisoned lock only means another thread panicked while holding it; the
/// maps are still consistent (every update is a single insert or remove),
/// so keep serving.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    fn purge(&self, shard: &mut Shard, now: Instant, budget: usize) {
        let mut done = 0;
        while done < budget {
            let Some(&(at, id)) = shard.expiry.front() else { break };
            if at > now {
                break;
            }
            shard.expiry.pop_front();
            done += 1;
            let current = shard.jobs.get(&id).is_some_and(|e| e.expires_at == Some(at));
            if current {
                if let Some(mut entry) = shard.jobs.remove(&id) {
                    entry.wake();
                    self.unindex(&entry);
                }
                self.len.fetch_sub(1, Ordering::AcqRel);
                self.bury(id, at);
            }
        }
    }

    /// Removes a job that leaves the store from the side indexes.
    fn unindex(&self, entry: &Entry) {
        let record = &entry.record;
        if let Some(owner) = &record.owner {
            self.owners.remove(owner, record.created_at_ms, record.id);
        }
        if let Some(key) = &entry.key {
            self.keys.release(key, record.id);
        }
    }

    /// Adds a job to a shard (its slot already reserved) and to the owner
    /// index.
    fn insert(&self, shard: &mut Shard, record: JobRecord, key: Option<String>) {
        let id = record.id;
        let terminal = record.status.is_terminal();
        if let Some(owner) = &record.owner {
            self.owners.insert(owner, record.created_at_ms, id);
        }
        let entry = Entry {
            record,
            response: None,
            expires_at: None,
            waiters: None,
            key,
        };
        if let Some(replaced) = shard.jobs.insert(id, entry) {
            // Replacing a job with the same id keeps the count unchanged.
            self.len.fetch_sub(1, Ordering::AcqRel);
            self.unindex(&replaced);
        }
        if terminal {
            self.end(shard, id);
        }
    }

    /// Remembers an expired id, forgetting the oldest past the bound.
    fn bury(&self, id: JobId, expired_at: Instant) {
        if self.max_tombstones == 0 {
            return;
        }
        let mut tombstones = lock(&self.tombstones);
        let forget_at = expired_at + self.tombstone_ttl;
        tombstones.map.insert(id, forget_at);
        tombstones.order.push_back((forget_at, id));
        self.forget(&mut tombstones, Instant::now());
    }

    /// Drops tombstones past their time or past the bound (oldest first).
    fn forget(&self, tombstones: &mut Tombstones, now: Instant) {
        while let Some(&(forget_at, id)) = tombstones.order.front() {
            if forget_at > now && tombstones.map.len() <= self.max_tombstones {
                break;
            }
            tombstones.order.pop_front();
            if tombstones.map.get(&id) == Some(&forget_at) {
                tombstones.map.remove(&id);
            }
        }
    }

    fn is_buried(&self, id: JobId) -> bool {
        let mut tombstones = lock(&self.tombstones);
        self.forget(&mut tombstones, Instant::now());
        tombstones.map.contains_key(&id)
    }

    fn end(&self, shard: &mut Shard, id: JobId) {
        let at = Instant::now() + self.ttl;
        if let Some(entry) = shard.jobs.get_mut(&id) {
            entry.expires_at = Some(at);
            entry.wake();
            shard.expiry.push_back((at, id));
        }
    }
}

fn lookup_missing(inner: &Inner, id: JobId) -> Lookup {
    if inner.is_buried(id) {
        Lookup::Expired
    } else {
        Lookup::Unknown
    }
}

impl JobStore for MemoryStore {
    async fn create(&self, record: JobRecord) -> Result<(), StoreError> {
        self.reserve()?;
        let mut shard = self.shard(record.id);
        self.inner.insert(&mut shard, record, None);
        Ok(())
    }

    async fn create_once(&self, record: JobRecord, key: IdempotencyKey) -> Result<Created, StoreError> {
        // A holder found in the key index but gone from its shard was
        // removed meanwhile: its key is free again, so look once more.
        for _ in 0..8 {
            self.reserve()?;
            let id = record.id;
            let mut shard = self.shard(id);
            let Some((holder, fingerprint)) = self.inner.keys.claim(key.scope(), id, key.fingerprint()) else {
                self.inner.insert(&mut shard, record, Some(key.scope().to_owned()));
                return Ok(Created::New);
            };
            drop(shard);
            self.inner.len.fetch_sub(1, Ordering::AcqRel);
            if fingerprint != key.fingerprint() {
                return Ok(Created::Mismatch);
            }
            if let Lookup::Found(existing) = self.get(holder).await? {
                return Ok(Created::Existing(existing));
            }
        }
        Err(StoreError::Unavailable(
            "the idempotency key kept changing hands".into(),
        ))
    }

    async fn list(&self, owner: &str, limit: usize, after: Option<ListCursor>) -> Result<Page, StoreError> {
        let cursors = self.inner.owners.page(owner, limit.saturating_add(1), after);
        let more = cursors.len() > limit;
        let mut jobs = Vec::with_capacity(limit.min(cursors.len()));
        let now = Instant::now();
        for cursor in cursors.iter().take(limit) {
            let shard = self.shard(cursor.id);
            if let Some(entry) = shard.jobs.get(&cursor.id).filter(|e| !e.expired(now)) {
                jobs.push(entry.record.clone());
            }
        }
        let next = if more {
            cursors.get(limit.saturating_sub(1)).copied()
        } else {
            None
        };
        Ok(Page { jobs, next })
    }

    async fn get(&self, id: JobId) -> Result<Lookup, StoreError> {
        let shard = self.shard(id);
        Ok(match shard.jobs.get(&id) {
            Some(entry) if entry.expired(Instant::now()) => Lookup::Expired,
            Some(entry) => Lookup::Found(entry.record.clone()),
            None => lookup_missing(&self.inner, id),
        })
    }

    async fn start(&self, id: JobId) -> Result<bool, StoreError> {
        let mut shard = self.shard(id);
        Ok(match shard.jobs.get_mut(&id) {
            Some(entry) if entry.record.status == JobStatus::Pending => {
                entry.record.status = JobStatus::Running;
                entry.record.touch();
                true
            }
            _ => false,
        })
    }

    async fn set_progress(&self, id: JobId, progress: Option<f32>, message: Option<String>) -> Result<(), StoreError> {
        let mut shard = self.shard(id);
        if let Some(entry) = shard.jobs.get_mut(&id)
            && !entry.record.status.is_terminal()
        {
            entry.record.progress = progress;
            entry.record.message = message;
            entry.record.touch();
        }
        Ok(())
    }

    async fn finish(&self, id: JobId, outcome: Outcome) -> Result<bool, StoreError> {
        let mut shard = self.shard(id);
        let Some(entry) = shard.jobs.get_mut(&id) else {
            return Ok(false);
        };
        if entry.record.status.is_terminal() {
            return Ok(false);
        }
        entry.record.finish(&outcome);
        if let Outcome::Response(response) = outcome {
            entry.response = Some(response);
        }
        self.inner.end(&mut shard, id);
        Ok(true)
    }

    async fn cancel(&self, id: JobId) -> Result<Cancel, StoreError> {
        let mut shard = self.shard(id);
        let now = Instant::now();
        let Some(entry) = shard.jobs.get_mut(&id) else {
            return Ok(match lookup_missing(&self.inner, id) {
                Lookup::Expired => Cancel::Expired,
                _ => Cancel::Unknown,
            });
        };
        if entry.expired(now) {
            return Ok(Cancel::Expired);
        }
        if entry.record.status.is_terminal() {
            return Ok(Cancel::AlreadyTerminal);
        }
        entry.record.status = JobStatus::Canceled;
        entry.record.touch();
        self.inner.end(&mut shard, id);
        Ok(Cancel::Canceled)
    }

    async fn delete(&self, id: JobId) -> Result<bool, StoreError> {
        let mut shard = self.shard(id);
        match shard.jobs.remove(&id) {
            Some(mut entry) => {
                entry.wake();
                self.inner.unindex(&entry);
                self.inner.len.fetch_sub(1, Ordering::AcqRel);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn response(&self, id: JobId) -> Result<Option<StoredResponse>, StoreError> {
        let shard = self.shard(id);
        Ok(shard
            .jobs
            .get(&id)
            .filter(|entry| !entry.expired(Instant::now()))
            .and_then(|entry| entry.response.clone()))
    }

    async fn wait_terminal(&self, id: JobId) -> Result<(), StoreError> {
        loop {
            let notify = {
                let mut shard = self.shard(id);
                let now = Instant::now();
                match shard.jobs.get_mut(&id) {
                    Some(entry) if !entry.record.status.is_terminal() && !entry.expired(now) => {
                        Arc::clone(entry.waiters.get_or_insert_with(|| Arc::new(Notify::new())))
                    }
                    _ => return Ok(()),
                }
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            // Register before checking again, so that an end between the
            // check above and this point is not missed.
            notified.as_mut().enable();
            {
                let shard = self.shard(id);
                match shard.jobs.get(&id) {
                    Some(entry) if !entry.record.status.is_terminal() => {}
                    _ => return Ok(()),
                }
            }
            notified.await;
        }
    }
}

//! [`MemoryStore`]: jobs in this process's memory.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::time::Instant;

use super::index::{KeyIndex, OwnerIndex};
use super::{
    Cancel, Created, IdempotencyKey, JobError, JobId, JobRecord, JobStatus, JobStore, ListCursor, Lookup, Outcome,
    Page, StoreError, StoredResponse, unix_ms,
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
                epoch: Instant::now(),
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
    /// Expiry times are kept as nanoseconds after this instant.
    epoch: Instant,
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
    /// they finished in), as ticks of [`Inner::ticks`]. An entry whose job
    /// was deleted or re-timed is skipped when it comes up.
    expiry: VecDeque<(u64, JobId)>,
}

/// A job as the store keeps it: a [`JobRecord`] and its stored response,
/// packed (about a hundred bytes, inline in the map), since a store holds
/// many of them. What most jobs lack (message, error, owner, key) is boxed
/// apart, and the stored headers are a slice rather than a `HeaderMap`.
struct Entry {
    created_at_ms: u64,
    updated_at_ms: u64,
    /// When the job expires, in ticks; 0 while it has not ended.
    expires_at: u64,
    progress: Option<f32>,
    result_status: Option<u16>,
    status: JobStatus,
    /// Whether `headers` and `body` hold a stored response (with status
    /// `result_status`).
    has_response: bool,
    /// The first task waiting for the job to end (most often the job's
    /// runner); the others are in `extra`. Woken and cleared when it ends.
    waiter: Option<Waker>,
    extra: Option<Box<Extra>>,
    headers: Box<[(HeaderName, HeaderValue)]>,
    body: Bytes,
}

/// The parts of a job that most jobs do not have.
#[derive(Default)]
struct Extra {
    message: Option<String>,
    error: Option<JobError>,
    owner: Option<String>,
    /// The idempotency key (scope) this job holds, if any.
    key: Option<String>,
    /// Waiters after the first (long polls, as a rule).
    waiters: Vec<Waker>,
}

impl Extra {
    fn is_empty(&self) -> bool {
        self.message.is_none()
            && self.error.is_none()
            && self.owner.is_none()
            && self.key.is_none()
            && self.waiters.is_empty()
    }
}

impl Entry {
    fn new(record: JobRecord, key: Option<String>) -> Self {
        let extra = Extra {
            message: record.message,
            error: record.error,
            owner: record.owner,
            key,
            waiters: Vec::new(),
        };
        Self {
            created_at_ms: record.created_at_ms,
            updated_at_ms: record.updated_at_ms,
            expires_at: 0,
            progress: record.progress,
            result_status: record.result_status,
            status: record.status,
            has_response: false,
            waiter: None,
            extra: (!extra.is_empty()).then(|| Box::new(extra)),
            headers: Box::default(),
            body: Bytes::new(),
        }
    }

    /// The job's record, as the store was given it and changed it since.
    fn record(&self, id: JobId) -> JobRecord {
        let extra = self.extra.as_deref();
        JobRecord {
            id,
            status: self.status,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            progress: self.progress,
            message: extra.and_then(|e| e.message.clone()),
            result_status: self.result_status,
            error: extra.and_then(|e| e.error.clone()),
            owner: extra.and_then(|e| e.owner.clone()),
        }
    }

    fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    fn owner(&self) -> Option<&str> {
        self.extra.as_deref().and_then(|e| e.owner.as_deref())
    }

    fn key(&self) -> Option<&str> {
        self.extra.as_deref().and_then(|e| e.key.as_deref())
    }

    /// Marks the job changed now (as [`JobRecord::touch`]).
    fn touch(&mut self) {
        self.updated_at_ms = unix_ms().max(self.updated_at_ms);
    }

    fn set_message(&mut self, message: Option<String>) {
        match message {
            Some(message) => self.extra_mut().message = Some(message),
            None => {
                if let Some(extra) = &mut self.extra {
                    extra.message = None;
                }
            }
        }
    }

    /// Records a terminal outcome, as [`JobRecord::finish`] does, and keeps
    /// its response.
    fn finish(&mut self, outcome: Outcome) {
        self.status = outcome.status();
        let error = outcome.error();
        match error {
            Some(error) => self.extra_mut().error = Some(error),
            None => {
                if let Some(extra) = &mut self.extra {
                    extra.error = None;
                }
            }
        }
        match outcome {
            Outcome::Response(response) => {
                self.result_status = Some(response.status.as_u16());
                self.has_response = true;
                self.headers = pack_headers(response.headers);
                self.body = response.body;
            }
            Outcome::Failed(_) => self.result_status = None,
        }
        self.touch();
    }

    fn response(&self) -> Option<StoredResponse> {
        if !self.has_response {
            return None;
        }
        let status = StatusCode::from_u16(self.result_status?).ok()?;
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        for (name, value) in self.headers.iter() {
            headers.append(name.clone(), value.clone());
        }
        Some(StoredResponse::new(status, headers, self.body.clone()))
    }

    fn expired(&self, now: u64) -> bool {
        self.expires_at != 0 && self.expires_at <= now
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waiter.take() {
            waker.wake();
        }
        if let Some(extra) = &mut self.extra {
            for waker in extra.waiters.drain(..) {
                waker.wake();
            }
        }
    }

    fn add_waiter(&mut self, waker: Waker) {
        if self.waiter.is_none() {
            self.waiter = Some(waker);
        } else {
            self.extra_mut().waiters.push(waker);
        }
    }

    /// Removes one registration of `waker`.
    fn remove_waiter(&mut self, waker: &Waker) {
        if self.waiter.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.waiter = self.extra.as_mut().and_then(|e| e.waiters.pop());
        } else if let Some(extra) = &mut self.extra
            && let Some(at) = extra.waiters.iter().position(|w| w.will_wake(waker))
        {
            extra.waiters.swap_remove(at);
        }
    }
}

/// A stored response's headers, as a slice (a `HeaderMap` reserves room for
/// several times as many).
fn pack_headers(headers: HeaderMap) -> Box<[(HeaderName, HeaderValue)]> {
    let mut packed = Vec::with_capacity(headers.len());
    let mut last: Option<HeaderName> = None;
    for (name, value) in headers {
        // A name comes once, before all its values.
        if let Some(name) = name {
            last = Some(name);
        }
        if let Some(name) = &last {
            packed.push((name.clone(), value));
        }
    }
    packed.into_boxed_slice()
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
        let now = self.inner.now();
        for shard in self.inner.shards.iter() {
            let mut shard = lock(shard);
            self.inner.purge(&mut shard, now, usize::MAX);
        }
    }

    fn shard_of(&self, id: JobId) -> &Mutex<Shard> {
        &self.inner.shards[usize::from(id.as_bytes()[0]) % SHARDS]
    }

    fn shard(&self, id: JobId) -> MutexGuard<'_, Shard> {
        let mut shard = lock(self.shard_of(id));
        // The clock is read only when something may have expired.
        if !shard.expiry.is_empty() {
            self.inner.purge(&mut shard, self.inner.now(), PURGE_BUDGET);
        }
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
    /// `at` in ticks: nanoseconds after the store's epoch (at least 1, so
    /// that 0 can mean "never").
    fn ticks(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn now(&self) -> u64 {
        self.ticks(Instant::now())
    }

    /// The instant of `ticks`, for the tombstones.
    fn instant(&self, ticks: u64) -> Instant {
        self.epoch + Duration::from_nanos(ticks)
    }

    fn purge(&self, shard: &mut Shard, now: u64, budget: usize) {
        let mut done = 0;
        while done < budget {
            let Some(&(at, id)) = shard.expiry.front() else { break };
            if at > now {
                break;
            }
            shard.expiry.pop_front();
            done += 1;
            let current = shard.jobs.get(&id).is_some_and(|e| e.expires_at == at);
            if current {
                if let Some(mut entry) = shard.jobs.remove(&id) {
                    entry.wake();
                    self.unindex(id, &entry);
                }
                self.len.fetch_sub(1, Ordering::AcqRel);
                self.bury(id, self.instant(at));
            }
        }
    }

    /// Removes a job that leaves the store from the side indexes.
    fn unindex(&self, id: JobId, entry: &Entry) {
        if let Some(owner) = entry.owner() {
            self.owners.remove(owner, entry.created_at_ms, id);
        }
        if let Some(key) = entry.key() {
            self.keys.release(key, id);
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
        if let Some(mut replaced) = shard.jobs.insert(id, Entry::new(record, key)) {
            // Replacing a job with the same id keeps the count unchanged.
            self.len.fetch_sub(1, Ordering::AcqRel);
            replaced.wake();
            self.unindex(id, &replaced);
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
        let ttl = u64::try_from(self.ttl.as_nanos()).unwrap_or(u64::MAX);
        let at = self.now().saturating_add(ttl);
        if let Some(entry) = shard.jobs.get_mut(&id) {
            entry.expires_at = at;
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
        let now = self.inner.now();
        for cursor in cursors.iter().take(limit) {
            let shard = self.shard(cursor.id);
            if let Some(entry) = shard.jobs.get(&cursor.id).filter(|e| !e.expired(now)) {
                jobs.push(entry.record(cursor.id));
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
            Some(entry) if entry.expired(self.inner.now()) => Lookup::Expired,
            Some(entry) => Lookup::Found(entry.record(id)),
            None => lookup_missing(&self.inner, id),
        })
    }

    async fn start(&self, id: JobId) -> Result<bool, StoreError> {
        let mut shard = self.shard(id);
        Ok(match shard.jobs.get_mut(&id) {
            Some(entry) if entry.status == JobStatus::Pending => {
                entry.status = JobStatus::Running;
                entry.touch();
                true
            }
            _ => false,
        })
    }

    async fn set_progress(&self, id: JobId, progress: Option<f32>, message: Option<String>) -> Result<(), StoreError> {
        let mut shard = self.shard(id);
        if let Some(entry) = shard.jobs.get_mut(&id)
            && !entry.status.is_terminal()
        {
            entry.progress = progress;
            entry.set_message(message);
            entry.touch();
        }
        Ok(())
    }

    async fn finish(&self, id: JobId, outcome: Outcome) -> Result<bool, StoreError> {
        let mut shard = self.shard(id);
        let Some(entry) = shard.jobs.get_mut(&id) else {
            return Ok(false);
        };
        if entry.status.is_terminal() {
            return Ok(false);
        }
        entry.finish(outcome);
        self.inner.end(&mut shard, id);
        Ok(true)
    }

    fn finish_can_fail(&self) -> bool {
        false
    }

    async fn cancel(&self, id: JobId) -> Result<Cancel, StoreError> {
        let mut shard = self.shard(id);
        let now = self.inner.now();
        let Some(entry) = shard.jobs.get_mut(&id) else {
            return Ok(match lookup_missing(&self.inner, id) {
                Lookup::Expired => Cancel::Expired,
                _ => Cancel::Unknown,
            });
        };
        if entry.expired(now) {
            return Ok(Cancel::Expired);
        }
        if entry.status.is_terminal() {
            return Ok(Cancel::AlreadyTerminal);
        }
        entry.status = JobStatus::Canceled;
        entry.touch();
        self.inner.end(&mut shard, id);
        Ok(Cancel::Canceled)
    }

    async fn delete(&self, id: JobId) -> Result<bool, StoreError> {
        let mut shard = self.shard(id);
        match shard.jobs.remove(&id) {
            Some(mut entry) => {
                entry.wake();
                self.inner.unindex(id, &entry);
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
            .filter(|entry| !entry.expired(self.inner.now()))
            .and_then(Entry::response))
    }

    fn wait_terminal(&self, id: JobId) -> impl Future<Output = Result<(), StoreError>> + Send {
        WaitTerminal {
            store: self,
            id,
            registered: None,
        }
    }
}

/// The future of [`MemoryStore::wait_terminal`]: it keeps its task's waker
/// in the job's entry (no allocation, no lock but the shard's), and takes it
/// out again if it is dropped first.
struct WaitTerminal<'a> {
    store: &'a MemoryStore,
    id: JobId,
    /// The waker this future left in the entry, if any.
    registered: Option<Waker>,
}

impl Future for WaitTerminal<'_> {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut shard = this.store.shard(this.id);
        // A job that has not ended has no expiry time: no clock is read.
        match shard.jobs.get_mut(&this.id) {
            Some(entry) if !entry.status.is_terminal() => {
                if !this.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    if let Some(old) = this.registered.take() {
                        entry.remove_waiter(&old);
                    }
                    let waker = cx.waker().clone();
                    entry.add_waiter(waker.clone());
                    this.registered = Some(waker);
                }
                Poll::Pending
            }
            // Ended, expired or gone: whoever ended it took the wakers.
            _ => {
                this.registered = None;
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl Drop for WaitTerminal<'_> {
    fn drop(&mut self) {
        if let Some(waker) = self.registered.take() {
            let mut shard = lock(self.store.shard_of(self.id));
            if let Some(entry) = shard.jobs.get_mut(&self.id) {
                entry.remove_waiter(&waker);
            }
        }
    }
}

//! [`MemoryStoreBuilder`]: the limits of a [`MemoryStore`].

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::finished::Finished;
use super::shard::Shard;
use super::{Inner, MemoryStore, SHARDS};
use crate::store::index::{KeyIndex, OwnerIndex};

/// Configures a [`MemoryStore`]; made by [`MemoryStore::builder`].
///
/// ```
/// use std::time::Duration;
/// use tower_accepted::store::MemoryStore;
///
/// let store = MemoryStore::builder()
///     .capacity(1_000)
///     .ttl(Duration::from_secs(60))
///     .max_finished_bytes(16 * 1024 * 1024)
///     .tombstones(500, Duration::from_secs(3600))
///     .build();
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStoreBuilder {
    pub(super) capacity: usize,
    pub(super) ttl: Duration,
    pub(super) max_finished_bytes: usize,
    pub(super) tombstones: Option<usize>,
    pub(super) tombstone_ttl: Duration,
}

impl MemoryStoreBuilder {
    /// The most unfinished jobs (pending or running) kept at once (default
    /// 100,000). Finished jobs are bounded by
    /// [`max_finished_bytes`](Self::max_finished_bytes) instead.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// How long a finished or canceled job is kept (default one hour).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The most bytes finished jobs may weigh together (default 256 MiB):
    /// their stored responses, texts and about 320 bytes each of the store's
    /// own. Past it the oldest finished jobs are evicted before their time
    /// (they answer `410 Gone`), as soon as a job ends. Keep it well above
    /// the layer's `max_result_size` (16 MiB by default): a job that weighs
    /// more than the whole budget is evicted as soon as it ends.
    pub fn max_finished_bytes(mut self, bytes: usize) -> Self {
        self.max_finished_bytes = bytes;
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
                epoch_ms: crate::store::unix_ms(),
                shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
                // A random key from std's random hasher keys (themselves
                // from the operating system), without a dependency for it.
                shard_key: RandomState::new().hash_one(0u8),
                len: AtomicUsize::new(0),
                unfinished: AtomicUsize::new(0),
                capacity: self.capacity,
                ttl: ticks_of(self.ttl),
                finished: Finished::new(self.max_finished_bytes),
                tombstones: AtomicUsize::new(0),
                max_tombstones: self.tombstones.unwrap_or(self.capacity),
                tombstone_ttl: ticks_of(self.tombstone_ttl),
                owners: OwnerIndex::default(),
                keys: KeyIndex::default(),
                queues: super::queues::Queues::default(),
                deliveries: super::deliveries::Deliveries::default(),
            }),
        }
    }
}

/// A duration in ticks (nanoseconds), saturating: `Duration::MAX` is
/// "never".
fn ticks_of(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

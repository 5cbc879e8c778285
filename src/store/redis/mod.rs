//! [`RedisStore`]: jobs shared by several replicas through Redis (feature
//! `redis`).

mod builder;
mod claims;
mod codec;
mod commands;
mod connection;
mod deliveries;
mod listing;
mod scripts;
mod tasks;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use redis::{RedisError, Script};
use tokio::task::JoinHandle;

pub use builder::RedisStoreBuilder;
use codec::parse_record;
use commands::{lock, store_error, unavailable};
use connection::{Connection, Target};

use super::stored_http;
use super::waiters::Waiters;

use super::{
    Cancel, Claim, Claimed, CreatedOnce, DeliveryAttempt, DueDelivery, DurableJob, IdempotencyKey, JobId, JobRecord,
    JobStatus, JobStore, KeyLookup, ListCursor, Lookup, Outcome, Page, StoreError, Swept,
};

/// The longest time, in milliseconds, that the store hands to Redis (a time
/// to live, a lease) or waits for: 100 years (of 365.25 days).
///
/// Every duration setting is clamped to it, so that extreme settings
/// (`Duration::MAX` for "keep forever") work rather than fail. Redis refuses
/// `PX`/`PEXPIRE` values that do not fit a signed 64-bit integer once added
/// to the current time ("invalid expire time"), and `Instant + Duration`
/// panics on overflow; 100 years is forever for a job, yet far from both
/// limits.
const MAX_MS: u64 = 36_525 * 24 * 60 * 60 * 1000;

/// [`MAX_MS`] as a duration: the cap of every duration setting.
const MAX_DURATION: Duration = Duration::from_millis(MAX_MS);

/// Jobs kept in Redis, so that several replicas of an application behind a
/// load balancer share them: a job submitted on one replica can be polled,
/// waited for, fetched, canceled and (a durable job) run on any other.
///
/// - **Keys.** Each job has a hash `{ns}:job:<id>` (state, progress,
///   attempt, stored response) and, once it ends, a tombstone
///   `{ns}:gone:<id>`. The
///   namespace has `{ns}:leases` (every lease), `{ns}:queue:<name>` (the
///   durable jobs waiting in a queue, oldest first), `{ns}:owner:<owner>`
///   (an owner's jobs) and `{ns}:key:<scope>` (idempotency keys). Every key
///   has a time to live: a finished job lives `ttl` (default one hour), its
///   tombstone `ttl + tombstone_ttl` (default 24 h more) so that an expired
///   id answers `410 Gone`; a job that has not ended, and the sets that
///   name it, live `ttl + lease` past their last write (a claim, a
///   renewal): a queued job nobody claims within that time expires as
///   unknown, so size `ttl` for the longest wait a queue may see. Every
///   duration is capped at 100 years, so `Duration::MAX`
///   means "as good as forever", never an error.
/// - **Redis Cluster.** Every key of a namespace carries the hash tag
///   `{ns}`, so every key a script touches sits in the namespace's one
///   slot, and the store runs on a Redis Cluster as on one Redis
///   ([`cluster_builder`](Self::cluster_builder)). The price: a namespace
///   lives on one master; spread the load of several applications (or of
///   one application's independent routes) over masters by giving each
///   its own namespace.
/// - **Claims and leases.** Whoever runs an attempt of a job holds a
///   [`Claim`]: the job's id and the attempt's number. The claim's lease is
///   a member of `{ns}:leases` scored with its expiry by Redis's clock
///   (`TIME`, read inside the scripts), so that replicas whose clocks
///   disagree still agree on when a lease lapsed. Creating a job to run at
///   once takes attempt 1 and its lease;
///   [`claim_next`](JobStore::claim_next) takes the next attempt of the
///   oldest job of a queue and its lease. The layer renews the leases of
///   the claims it holds ([`renew`](JobStore::renew), every third of
///   [`lease`](JobStore::lease), one script for all, on a connection of its
///   own so that a large result on the shared one never holds a renewal
///   back).
/// - **Fenced writes.** Start, progress and finish change a job only while
///   their claim holds it: the job's attempt is the claim's and its lease
///   is in the set. A runner whose lease lapsed (a pause, a partition) gets
///   `false` and never overwrites the attempt that replaced it. Cancel and
///   delete need no claim.
/// - **Sweep.** [`sweep`](JobStore::sweep), which the layer runs every half
///   lease on any replica, takes the leases that lapsed by Redis's clock: a
///   durable job with attempts left goes back to its queue, any other ends
///   `failed` with `error.code = "lost"`. Reads never change anything.
/// - **Durable jobs.** [`create_durable`](JobStore::create_durable) keeps,
///   with the record and in the same script, the queue, the number of
///   attempts and the request to run again: method, URI, headers and body.
///   The headers are kept as they were given, credentials
///   (`Authorization`, cookies) included, since a replica that runs the
///   request again needs them: the Redis holds secrets, and should be
///   guarded as such. The request is removed when the job ends. A queue
///   holds at most [`max_queued`](RedisStoreBuilder::max_queued) jobs
///   (default 100 000); a queued create beyond fails with
///   [`StoreError::Full`].
/// - **Waking.** Ending a job publishes its id on the channel `ns:ended`;
///   each store listens on one connection and wakes its local waiters within
///   milliseconds (long polls, and the runner that must drop a job canceled
///   elsewhere); waiters also read the job again every lease. A start or a
///   progress publishes `~` and the id on the same channel, for event
///   streams (long polls are not woken by it).
/// - **Cost.** One round trip per operation (a pipeline, a transaction or a
///   script); no `KEYS` or `SCAN`. The exception:
///   [`find_key`](JobStore::find_key) reads the key then its holder (two).
/// - **Faults.** Every command has a timeout (at most a third of the lease);
///   a create whose reply was lost is run again under the same id (the
///   script is idempotent), so no job is created that nobody runs; an end
///   Redis could not take is tried again by the layer while its claim is
///   renewed, so a Redis blip never leaves a job `running`; the
///   pub/sub connection is pinged, and replaced when it stops answering.
///   While Redis is unreachable,
///   operations fail with [`StoreError::Unavailable`] (the layer answers
///   `503` + `Retry-After`) and the connection is re-made in the background.
///   A Redis that refuses writes for lack of memory (`maxmemory`) is
///   reported as [`StoreError::Full`]; bound the store with `maxmemory`.
///
/// ```no_run
/// use tower_accepted::{AcceptedLayer, store::RedisStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_accepted::store::StoreError> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379")
///     .namespace("reports")
///     .build()
///     .await?;
/// let layer = AcceptedLayer::new().store(store);
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    /// What every clone shares.
    inner: Arc<Inner>,
}

/// The state of a store, shared by its clones.
struct Inner {
    /// The connection for commands, re-made in the background when lost.
    conn: Connection,
    /// The connection of renewals and sweeps, so that nothing queued on
    /// `conn` (a 16 MiB result) delays a renewal.
    renew_conn: Connection,
    /// The prefix of every key.
    namespace: String,
    /// Where ended (and deleted) jobs are announced: `ns:ended`.
    channel: String,
    /// How long an ended job is kept (at most [`MAX_DURATION`]).
    ttl: Duration,
    /// How long an expired id is remembered past `ttl` (at most
    /// [`MAX_DURATION`]).
    tombstone_ttl: Duration,
    /// How long a claim lasts without renewal (at most [`MAX_DURATION`]).
    lease: Duration,
    /// How many jobs a queue holds at most.
    max_queued: usize,
    /// [`scripts::CREATE`].
    create: Script,
    /// [`scripts::END`].
    end: Script,
    /// [`scripts::DELETE`].
    delete: Script,
    /// [`scripts::START`].
    start: Script,
    /// [`scripts::PROGRESS`].
    progress: Script,
    /// [`scripts::CLAIM`].
    claim: Script,
    /// [`scripts::RENEW`].
    renew: Script,
    /// [`scripts::RELEASE`].
    release: Script,
    /// [`scripts::SWEEP`].
    sweep: Script,
    /// [`scripts::CLAIM_DELIVERIES`].
    claim_deliveries: Script,
    /// [`scripts::RECORD_DELIVERY`].
    record_delivery: Script,
    /// This replica's waiters, woken by the listener.
    waiters: Arc<Waiters>,
    /// The listener, aborted with the last clone.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.inner.namespace)
            .field("ttl", &self.inner.ttl)
            .field("lease", &self.inner.lease)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A builder for a store on the Redis at `url`, such as
    /// `redis://127.0.0.1:6379`.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Target::Single {
            url: url.into(),
            client: None,
            conn: None,
        })
    }

    /// A builder for a store on the Redis Cluster whose nodes (some or all
    /// of them, as `redis://host:port` URLs) are `nodes`. Every key of a
    /// namespace sits in one slot (see [Redis Cluster](Self#redis-cluster)),
    /// so the store works as on one Redis.
    ///
    /// ```no_run
    /// use tower_accepted::store::RedisStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_accepted::store::StoreError> {
    /// let store = RedisStore::cluster_builder(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"])
    ///     .namespace("reports")
    ///     .build()
    ///     .await?;
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    pub fn cluster_builder<I, U>(nodes: I) -> RedisStoreBuilder
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        RedisStoreBuilder::new(Target::Cluster {
            nodes: nodes.into_iter().map(Into::into).collect(),
        })
    }

    /// A store with the default settings on the Redis at `url`.
    pub async fn connect(url: impl Into<String>) -> Result<Self, StoreError> {
        Self::builder(url).build().await
    }

    /// The namespace (key prefix) of this store.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }
}

impl JobStore for RedisStore {
    async fn create(&self, record: JobRecord) -> Result<(), StoreError> {
        self.create_job(&record, None, None).await.map(|_| ())
    }

    async fn create_once(&self, record: JobRecord, key: IdempotencyKey) -> Result<CreatedOnce, StoreError> {
        self.create_keyed(&record, &key, None).await
    }

    /// Reads the key's holder (`"<id> <fingerprint>"`, as the create script
    /// writes it), then the holder with [`get`](JobStore::get), as
    /// [`MemoryStore`](crate::store::MemoryStore) answers: `Free` when no kept job
    /// holds the key (absent, or its holder deleted or expired), `Mismatch`
    /// when a kept job holds it for another fingerprint (or the key's text
    /// names no job, which [`create_once`](JobStore::create_once) refuses
    /// too), `Existing` otherwise. Changes nothing.
    ///
    /// Round trips: one when the key is free (a `GET`); two when it is held
    /// (the `GET`, then `get`'s pipeline). The holder's id is only known once the key is read, and
    /// reading the job in the same script would touch a key of another
    /// Redis Cluster slot.
    async fn find_key(&self, key: &IdempotencyKey) -> Result<KeyLookup, StoreError> {
        let holder: Option<String> = redis::cmd("GET")
            .arg(self.idempotency_key(key))
            .query_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        let Some(holder) = holder else {
            return Ok(KeyLookup::Free);
        };
        let (id, fingerprint) = holder.split_once(' ').unwrap_or((holder.as_str(), ""));
        let Ok(id) = id.parse::<JobId>() else {
            return Ok(KeyLookup::Mismatch);
        };
        Ok(match self.get(id).await? {
            Lookup::Found(_) if fingerprint != key.fingerprint() => KeyLookup::Mismatch,
            Lookup::Found(record) => KeyLookup::Existing(record),
            Lookup::Expired | Lookup::Unknown => KeyLookup::Free,
        })
    }

    async fn list(&self, owner: &str, limit: usize, after: Option<ListCursor>) -> Result<Page, StoreError> {
        self.list_page(owner, limit, after).await
    }

    /// Reads only: a job whose lease lapsed stays as it is until a sweep
    /// deals with it.
    async fn get(&self, id: JobId) -> Result<Lookup, StoreError> {
        let (fields, gone) = self.read(id).await?;
        Ok(match parse_record(id, &fields) {
            Some(record) => Lookup::Found(record),
            None if gone => Lookup::Expired,
            None => Lookup::Unknown,
        })
    }

    async fn start(&self, claim: Claim) -> Result<bool, StoreError> {
        self.start_claimed(claim).await
    }

    async fn set_progress(
        &self,
        claim: Claim,
        progress: Option<f32>,
        message: Option<String>,
    ) -> Result<bool, StoreError> {
        self.write_progress(claim, progress, message).await
    }

    async fn finish(&self, claim: Claim, outcome: Outcome) -> Result<bool, StoreError> {
        let answer = self
            .end_job(claim.id(), Some(claim), outcome.status(), Some(&outcome))
            .await?;
        Ok(answer == "ended")
    }

    async fn cancel(&self, id: JobId) -> Result<Cancel, StoreError> {
        let answer = self.end_job(id, None, JobStatus::Canceled, None).await?;
        Ok(match answer.as_str() {
            "ended" => Cancel::Canceled,
            "terminal" => Cancel::AlreadyTerminal,
            "expired" => Cancel::Expired,
            _ => Cancel::Unknown,
        })
    }

    async fn delete(&self, id: JobId) -> Result<bool, StoreError> {
        let removed = self.delete_job(id).await.map_err(store_error)?;
        Ok(removed == 1)
    }

    async fn response(&self, id: JobId) -> Result<Option<Response<Bytes>>, StoreError> {
        let (status, headers, body): (Option<u16>, Option<Vec<u8>>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(self.key(id, "job"))
            .arg(&["rs", "rh", "rb"])
            .query_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        Ok(status
            .and_then(|status| stored_http::response(status, &headers.unwrap_or_default(), body.unwrap_or_default())))
    }

    /// Woken by the listener; reads the job again every lease in case a
    /// message was missed.
    async fn wait_terminal(&self, id: JobId) -> Result<(), StoreError> {
        self.inner
            .waiters
            .wait_for_end(id, self.inner.lease, || self.get(id))
            .await
    }

    async fn wait_change(&self, id: JobId, seen: u64) -> Result<(), StoreError> {
        self.inner
            .waiters
            .wait_for_change(id, seen, self.inner.lease, || self.get(id))
            .await
    }

    async fn create_durable(
        &self,
        record: JobRecord,
        durable: DurableJob,
        key: Option<IdempotencyKey>,
    ) -> Result<CreatedOnce, StoreError> {
        match key {
            None => self
                .create_job(&record, None, Some(&durable))
                .await
                .map(|_| CreatedOnce::New),
            Some(key) => self.create_keyed(&record, &key, Some(&durable)).await,
        }
    }

    async fn claim_next(&self, queue: &str) -> Result<Option<Claimed>, StoreError> {
        self.claim_job(queue).await
    }

    async fn renew(&self, claims: Vec<Claim>) -> Result<Vec<bool>, StoreError> {
        self.renew_claims(&claims).await
    }

    async fn release(&self, claim: Claim) -> Result<bool, StoreError> {
        self.release_claim(claim).await
    }

    async fn sweep(&self) -> Result<Swept, StoreError> {
        self.sweep_leases().await
    }

    async fn claim_deliveries(&self, limit: usize, hold: Duration) -> Result<Vec<DueDelivery>, StoreError> {
        self.claim_due(limit, hold).await
    }

    async fn record_delivery(&self, id: JobId, token: u32, attempt: DeliveryAttempt) -> Result<bool, StoreError> {
        self.record_attempt(id, token, attempt).await
    }

    fn lease(&self) -> Option<std::time::Duration> {
        Some(self.inner.lease)
    }

    /// `PING` on the shared connection, bounded by the command timeout (and
    /// a third of the lease); on
    /// a Cluster, to the master of the namespace's slot.
    async fn health(&self) -> Result<(), StoreError> {
        // Bounded here too: a connection manager the app built may have no
        // response timeout, and a probe must answer.
        let bound = (self.inner.lease / 3).max(std::time::Duration::from_millis(100));
        match tokio::time::timeout(bound, self.conn().ping(&self.job_prefix())).await {
            Ok(answer) => answer.map_err(store_error),
            Err(_) => Err(StoreError::Unavailable("Redis did not answer PING in time".into())),
        }
    }
}

impl RedisStore {
    /// Creates a job unless `key` is taken (a durable one with `durable`):
    /// the answer of [`create_once`](JobStore::create_once). A key whose
    /// job is gone (deleted meanwhile) is freed and tried again.
    async fn create_keyed(
        &self,
        record: &JobRecord,
        key: &IdempotencyKey,
        durable: Option<&DurableJob>,
    ) -> Result<CreatedOnce, StoreError> {
        for _ in 0..8 {
            let Some(holder) = self.create_job(record, Some(key), durable).await? else {
                return Ok(CreatedOnce::New);
            };
            let (id, fingerprint) = holder.split_once(' ').unwrap_or((holder.as_str(), ""));
            if fingerprint != key.fingerprint() {
                return Ok(CreatedOnce::Mismatch);
            }
            let Ok(id) = id.parse::<JobId>() else {
                return Ok(CreatedOnce::Mismatch);
            };
            if let Lookup::Found(existing) = self.get(id).await? {
                return Ok(CreatedOnce::Existing(existing));
            }
            let stale = self.idempotency_key(key);
            let _: Result<(), RedisError> = redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 0",
            )
            .key(stale)
            .arg(&holder)
            .invoke_async(&mut self.conn())
            .await
            .map(|_: i64| ());
        }
        Err(StoreError::Unavailable(
            "the idempotency key kept changing hands".into(),
        ))
    }
}

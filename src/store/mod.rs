//! Where jobs live: the [`JobStore`] trait and the in-memory [`MemoryStore`].
//!
//! The trait makes no in-process assumption: a result is bytes, a status and
//! headers (an `http::Response<Bytes>`, see [`Outcome`]), and waiting for a
//! job to end is a store operation ([`JobStore::wait_terminal`]), so that a
//! store shared between processes (Redis) fits behind the same trait. The
//! layer is the only writer of job states; a store's job is to keep them,
//! expire them and wake waiters.
//!
//! Every store keeps these rules, which the crate's store test suite checks:
//!
//! - a terminal state never changes: [`finish`](JobStore::finish) and
//!   [`cancel`](JobStore::cancel) on a terminal job change nothing;
//! - finished and canceled jobs expire after the store's time to live, and an
//!   expired id is reported as [`Lookup::Expired`] for a bounded time, then as
//!   [`Lookup::Unknown`];
//! - [`create`](JobStore::create) fails with [`StoreError::Full`] rather than
//!   grow past the store's capacity;
//! - every change of a job raises its
//!   [`updated_at_ms`](JobRecord::updated_at_ms), by at least a millisecond,
//!   and a start, progress or end wakes [`wait_change`](JobStore::wait_change)
//!   (a durable job handed back to its queue may show first with its next
//!   start);
//! - a job's end, whichever way it ended, makes its pending completion
//!   callback's delivery due in the same atomic write, and a pending
//!   delivery keeps its job from expiring
//!   ([`claim_deliveries`](JobStore::claim_deliveries)).
//!
//! The types of the contract can grow without breaking a store: the
//! structs a store builds ([`JobRecord`], [`JobError`], [`Page`],
//! [`ListCursor`]) are `#[non_exhaustive]` with constructors, and the
//! answers it gives ([`Lookup`], [`Cancel`], [`CreatedOnce`], [`KeyLookup`])
//! and what it is given ([`Outcome`], [`ErrorCode`]) are `#[non_exhaustive]`
//! enums.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::Response;

mod answers;
mod callback;
mod claim;
mod error;
mod id;
mod index;
mod job_error;
mod memory;
mod outcome;
mod page;
#[cfg(feature = "postgres")]
mod postgres;
mod record;
#[cfg(feature = "redis")]
mod redis;
mod status;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod stored_http;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod suite;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod waiters;

pub use answers::{Cancel, Lookup};
pub use callback::{DeliveryAttempt, DeliveryState, DueDelivery, InvalidDeliveryState, JobCallback};
pub(crate) use claim::renewal_period;
pub use claim::{Claim, Claimed, DurableJob, LOST_MESSAGE, OUT_OF_ATTEMPTS, Swept};
pub use error::StoreError;
pub use id::{InvalidJobId, JobId};
pub use job_error::{ErrorCode, JobError, OtherCode};
pub use memory::{MemoryStore, MemoryStoreBuilder};
pub use outcome::Outcome;
pub use page::{ListCursor, Page};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresStore, PostgresStoreBuilder};
pub(crate) use record::unix_ms;
pub use record::{CreatedOnce, IdempotencyKey, JobRecord, KeyLookup};
#[cfg(feature = "redis")]
pub use redis::{RedisStore, RedisStoreBuilder};
pub use status::{InvalidJobStatus, JobStatus};

/// A place to keep jobs, their progress and their results.
///
/// Implementations are shared by every clone of the layer and called from
/// many tasks at once. Every operation should cost O(1) and must not hold a
/// lock across an `.await`. Methods may be implemented with `async fn`.
///
/// A store of your own proves it keeps the rules with the conformance kit,
/// [`store::suite`](crate::store) (feature `test-util`), from its own test:
/// `suite::run_all(MyStore::new).await` (see the module for the checks and
/// for stores that are costly to make). A store that keeps its jobs on a
/// server also overrides [`health`](Self::health) with a cheap, bounded
/// round trip to it (the default answers `Ok` without asking anything), so
/// that [`AcceptedLayer::ready`](crate::AcceptedLayer::ready) takes a
/// replica cut off from its store out of a load balancer's rotation.
///
/// ```
/// use tower_accepted::store::{Claim, JobId, JobRecord, JobStatus, JobStore, Lookup, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_accepted::store::StoreError> {
/// let store = MemoryStore::new();
/// let id = JobId::new();
/// store.create(JobRecord::pending(id)).await?;
/// store.start(Claim::first(id)).await?;
/// let Lookup::Found(record) = store.get(id).await? else { unreachable!() };
/// assert_eq!(record.status, JobStatus::Running);
/// # Ok(())
/// # }
/// ```
///
/// # Keeping jobs elsewhere
///
/// A store that keeps jobs in storage of its own (a database table, say)
/// writes what the layer hands it as text and numbers, and builds the
/// crate's types back from them: a record with [`JobRecord::new`] and the
/// `with_…` methods, an error code from its text ([`ErrorCode`] keeps any
/// text, known or not), a stored response as an `http::Response<Bytes>`.
///
/// ```
/// use bytes::Bytes;
/// use http::{HeaderMap, Response, StatusCode};
/// use tower_accepted::store::{ErrorCode, JobError, JobId, JobRecord, JobStatus, Outcome};
///
/// /// A job as a table row keeps it.
/// struct Row {
///     id: JobId,
///     status: String,
///     created: u64,
///     updated: u64,
///     started: Option<u64>,
///     progress: Option<f32>,
///     message: Option<String>,
///     result_status: Option<u16>,
///     error: Option<(String, String)>,
///     owner: Option<String>,
///     body: Option<Vec<u8>>,
/// }
///
/// /// What `finish` writes: the record's end, and the response if there is one.
/// fn finished(row: &mut Row, outcome: &Outcome) {
///     row.status = outcome.status().as_str().to_owned();
///     row.error = outcome.error().map(|e| (e.code.to_string(), e.message));
///     row.result_status = outcome.response().map(|r| r.status().as_u16());
///     row.body = outcome.response().map(|r| r.body().to_vec());
/// }
///
/// /// What `get` reads back.
/// fn record(row: &Row) -> Option<JobRecord> {
///     let status: JobStatus = row.status.parse().ok()?;
///     let error = row.error.as_ref().map(|(code, message)| JobError::new(code.as_str(), message.as_str()));
///     Some(
///         JobRecord::new(row.id, status, row.created, row.updated)
///             .with_started_at_ms(row.started)
///             .with_progress(row.progress)
///             .with_message(row.message.clone())
///             .with_result_status(row.result_status)
///             .with_error(error)
///             .with_owner(row.owner.clone()),
///     )
/// }
///
/// /// What `response` reads back.
/// fn response(row: &Row) -> Option<Response<Bytes>> {
///     let mut response = Response::new(Bytes::from(row.body.clone()?));
///     *response.status_mut() = StatusCode::from_u16(row.result_status?).ok()?;
///     *response.headers_mut() = HeaderMap::new(); // and the headers the row keeps
///     Some(response)
/// }
///
/// let mut row = Row {
///     id: JobId::new(), status: "running".into(), created: 1_000, updated: 1_500,
///     started: Some(1_500), progress: Some(0.5), message: None, result_status: None,
///     error: None, owner: Some("alice".into()), body: None,
/// };
/// let mut teapot = Response::new(Bytes::from_static(b"short and stout"));
/// *teapot.status_mut() = StatusCode::IM_A_TEAPOT;
/// finished(&mut row, &Outcome::Response(teapot));
/// let record = record(&row).unwrap();
/// assert_eq!(record.status, JobStatus::Failed);
/// assert_eq!(record.error.unwrap().code, ErrorCode::HttpStatus);
/// assert_eq!(record.owner.as_deref(), Some("alice"));
/// assert_eq!(response(&row).unwrap().status(), StatusCode::IM_A_TEAPOT);
/// ```
pub trait JobStore: Send + Sync + 'static {
    /// Adds a new job (normally `pending`). Fails with [`StoreError::Full`]
    /// when the store is at its capacity.
    fn create(&self, record: JobRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds a new job unless `key` is taken, atomically: of any number of
    /// concurrent calls with one key, exactly one creates its job. The key is
    /// held as long as the job is kept (it expires with it).
    fn create_once(
        &self,
        record: JobRecord,
        key: IdempotencyKey,
    ) -> impl Future<Output = Result<CreatedOnce, StoreError>> + Send;

    /// Who holds `key`, without creating anything: the layer asks before it
    /// refuses a keyed submission (over capacity, store full, shutting
    /// down), so that a client's retry of a job it already submitted still
    /// gets that job's `202` rather than a `503`.
    fn find_key(&self, key: &IdempotencyKey) -> impl Future<Output = Result<KeyLookup, StoreError>> + Send;

    /// The jobs of `owner` not yet expired, newest first (by creation time,
    /// then id): at most `limit`, starting after `after`. Pages stay stable
    /// while jobs are added, since new jobs sort before every cursor.
    fn list(
        &self,
        owner: &str,
        limit: usize,
        after: Option<ListCursor>,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;

    /// What the store knows of `id`.
    fn get(&self, id: JobId) -> impl Future<Output = Result<Lookup, StoreError>> + Send;

    /// Moves a `pending` job to `running` and records when it started
    /// ([`JobRecord::started_at_ms`]). Returns `false` (and changes nothing)
    /// when the job is not pending any more (canceled while it waited, say)
    /// or `claim` is not the job's current attempt.
    fn start(&self, claim: Claim) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records the handler's progress and message on a job that has not
    /// ended. Returns `false` (and changes nothing) when the job ended or
    /// `claim` is not its current attempt.
    fn set_progress(
        &self,
        claim: Claim,
        progress: Option<f32>,
        message: Option<String>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Ends a job with `outcome`, storing the response if there is one, and
    /// wakes its waiters. Returns `false` (and changes nothing) when the job
    /// had already ended, is gone, or `claim` is not its current attempt:
    /// a runner whose lease lapsed never overwrites the attempt that
    /// replaced it.
    fn finish(&self, claim: Claim, outcome: Outcome) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Whether [`finish`](Self::finish) can fail. The layer keeps a copy of
    /// every outcome it records, to try again after a failure, only for
    /// stores that can fail (the default); a store whose `finish` always
    /// succeeds saves that copy by answering `false`.
    fn finish_can_fail(&self) -> bool {
        true
    }

    /// Cancels a job that has not ended, and wakes its waiters.
    fn cancel(&self, id: JobId) -> impl Future<Output = Result<Cancel, StoreError>> + Send;

    /// Removes a job and its stored response; returns whether it was there.
    /// Waiters of a removed job are woken.
    fn delete(&self, id: JobId) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The stored response of a finished job, if it has one: the status,
    /// headers (every value, in order) and body that
    /// [`finish`](Self::finish) was given. Its version and extensions are
    /// not part of it: the layer replays neither.
    fn response(&self, id: JobId) -> impl Future<Output = Result<Option<Response<Bytes>>, StoreError>> + Send;

    /// Resolves once the job is terminal, or unknown, or expired; at once if
    /// it already is. Callers bound the wait with a timeout.
    fn wait_terminal(&self, id: JobId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Resolves once job `id` is no longer as it was when its record last
    /// changed at `seen` (its [`updated_at_ms`](JobRecord::updated_at_ms)
    /// differs: it started, made progress, ended, ran again), or it is gone
    /// or expired, or has ended (it will not change again); at once if so
    /// already. A wake-up with nothing changed is
    /// allowed: callers read the job again and wait again. Callers bound
    /// the wait with a timeout.
    ///
    /// This is what a Server-Sent Events stream of the job waits on, so a
    /// store that keeps jobs for several processes announces every change
    /// (Redis pub/sub, PostgreSQL `NOTIFY`) and waits without reading in a
    /// loop: a stream costs nothing while its job does not change. Every
    /// write that changes a job must raise its `updated_at_ms` (to at least
    /// one millisecond past its last value, whatever the clocks say), since
    /// streams tell changes, and name events, by it.
    ///
    /// The default waits for the job's end, and reads it once a second
    /// while it runs, for stores that cannot announce progress.
    ///
    /// ```
    /// use tower_accepted::store::{Claim, JobId, JobRecord, JobStore, Lookup, MemoryStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_accepted::store::StoreError> {
    /// let store = MemoryStore::new();
    /// let id = JobId::new();
    /// store.create(JobRecord::pending(id)).await?;
    /// let Lookup::Found(before) = store.get(id).await? else { unreachable!() };
    /// let waiting = store.wait_change(id, before.updated_at_ms);
    /// store.start(Claim::first(id)).await?;
    /// waiting.await?; // it started
    /// let Lookup::Found(after) = store.get(id).await? else { unreachable!() };
    /// assert!(after.updated_at_ms > before.updated_at_ms);
    /// # Ok(())
    /// # }
    /// ```
    fn wait_change(&self, id: JobId, seen: u64) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            loop {
                match self.get(id).await? {
                    Lookup::Found(record) if record.updated_at_ms == seen && !record.status.is_terminal() => {}
                    _ => return Ok(()),
                }
                // Any end resolves it at once; progress is seen within a second.
                let _ = tokio::time::timeout(Duration::from_secs(1), self.wait_terminal(id)).await;
            }
        }
    }

    /// Adds a durable job: its record and, in the same atomic write, its
    /// request, queue and attempts ([`DurableJob`]); with `key`, only if
    /// the key is free, as [`create_once`](Self::create_once). A job that
    /// is not [`queued`](DurableJob::queued) is claimed by the caller as
    /// attempt 1 (its [`Claim::first`]); a queued one waits, attempt 0,
    /// until [`claim_next`](Self::claim_next) takes it. Fails with
    /// [`StoreError::Full`] when the store (or the queue) is at its
    /// capacity.
    fn create_durable(
        &self,
        record: JobRecord,
        durable: DurableJob,
        key: Option<IdempotencyKey>,
    ) -> impl Future<Output = Result<CreatedOnce, StoreError>> + Send;

    /// Takes the oldest job waiting in `queue` (by creation time), if any:
    /// its attempt goes up by one and the caller holds its lease. Jobs that
    /// ended while they waited (canceled, deleted) are never handed out; a
    /// job whose next attempt would be more than its
    /// [`max_attempts`](DurableJob::max_attempts) ends `failed` with
    /// `error.code = "lost"` ([`OUT_OF_ATTEMPTS`]) instead, and the next one
    /// is looked at.
    fn claim_next(&self, queue: &str) -> impl Future<Output = Result<Option<Claimed>, StoreError>> + Send;

    /// Renews the leases of `claims`, the jobs this runner holds (running
    /// or waiting for a runner here). Answers, claim by claim, whether it
    /// is still held: `false` once the job ended or another attempt took
    /// it, after which the runner stops renewing it.
    fn renew(&self, claims: Vec<Claim>) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// Hands a durable job back to its queue (a runner shutting down), so
    /// that another replica takes it without waiting for its lease to
    /// lapse. Returns `false` (and changes nothing) when the job ended, is
    /// not durable or `claim` is not its current attempt. The attempt it
    /// made still counts, and the released claim holds nothing from then
    /// on: its writes and renewals answer `false`, as a stale attempt's.
    fn release(&self, claim: Claim) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deals with the jobs whose lease lapsed by the store's own clock: a
    /// durable job with attempts left goes back to its queue, any other
    /// ends `failed` with `error.code = "lost"` (and [`LOST_MESSAGE`]). Any
    /// replica may run it, at any time, as often as it likes; reads never
    /// do this work.
    fn sweep(&self) -> impl Future<Output = Result<Swept, StoreError>> + Send;

    /// Takes up to `limit` completion-callback deliveries that are due, by
    /// the store's own clock, oldest due first: those of jobs that ended
    /// with a [`callback`](JobRecord::callback) still
    /// [`Pending`](DeliveryState::Pending). A job's end makes its delivery
    /// due at once, in the same atomic write as the end (whichever way it
    /// ended: finish, cancel, sweep, out of attempts), so that a replica
    /// that dies right after the end loses nothing.
    ///
    /// Each delivery taken is *held*: its due time moves to now + `hold`
    /// in the same atomic step, so that two replicas never take the same
    /// one, and one whose replica dies while sending comes due again when
    /// `hold` lapses. Its job is kept at least `hold` + the store's time to
    /// live from now. The answer carries the record (terminal, with its
    /// callback) and the token the attempt is recorded with. Cheap when
    /// nothing is due: one round trip.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_accepted::store::{Claim, JobCallback, JobId, JobRecord, JobStore, MemoryStore, Outcome};
    /// # use tower_accepted::store::{ErrorCode, JobError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_accepted::store::StoreError> {
    /// let store = MemoryStore::new();
    /// let id = JobId::new();
    /// let callback = JobCallback::new("https://hooks.example.com/done");
    /// store.create(JobRecord::pending(id).with_callback(Some(callback))).await?;
    /// assert!(store.claim_deliveries(10, Duration::from_secs(30)).await?.is_empty());
    /// # let outcome = Outcome::Failed(JobError::new(ErrorCode::Error, "failed"));
    /// store.finish(Claim::first(id), outcome).await?;
    /// let due = store.claim_deliveries(10, Duration::from_secs(30)).await?;
    /// assert_eq!((due.len(), due[0].record.id, due[0].token), (1, id, 0));
    /// // Held: nobody else takes it meanwhile.
    /// assert!(store.claim_deliveries(10, Duration::from_secs(30)).await?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    fn claim_deliveries(
        &self,
        limit: usize,
        hold: Duration,
    ) -> impl Future<Output = Result<Vec<DueDelivery>, StoreError>> + Send;

    /// Records an attempt to deliver the callback of job `id`, made under
    /// the claim whose token is `token`: the callback's attempts become
    /// `token + 1`; [`Delivered`](DeliveryAttempt::Delivered) and
    /// [`Failed`](DeliveryAttempt::Failed) set its state and take it off
    /// the due deliveries for good; [`RetryAt`](DeliveryAttempt::RetryAt)
    /// keeps it pending and due at that time (and the job kept at least the
    /// store's time to live past it). Returns `false` (and changes nothing)
    /// when `token` is not the callback's attempts count (another claim
    /// recorded meanwhile), the delivery is no longer pending, or the job
    /// is gone. It never changes [`updated_at_ms`](JobRecord::updated_at_ms):
    /// a terminal record stays as it ended.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_accepted::store::{
    ///     Claim, DeliveryAttempt, DeliveryState, JobCallback, JobId, JobRecord, JobStore, Lookup, MemoryStore, Outcome,
    /// };
    /// # use tower_accepted::store::{ErrorCode, JobError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_accepted::store::StoreError> {
    /// let store = MemoryStore::new();
    /// let id = JobId::new();
    /// let callback = JobCallback::new("https://hooks.example.com/done");
    /// store.create(JobRecord::pending(id).with_callback(Some(callback))).await?;
    /// # let outcome = Outcome::Failed(JobError::new(ErrorCode::Error, "failed"));
    /// store.finish(Claim::first(id), outcome).await?;
    /// let due = store.claim_deliveries(1, Duration::from_secs(30)).await?;
    /// assert!(store.record_delivery(id, due[0].token, DeliveryAttempt::Delivered).await?);
    /// // A second record under the same claim is stale.
    /// assert!(!store.record_delivery(id, due[0].token, DeliveryAttempt::Failed).await?);
    /// let Lookup::Found(record) = store.get(id).await? else { unreachable!() };
    /// let callback = record.callback.unwrap();
    /// assert_eq!((callback.state, callback.attempts), (DeliveryState::Delivered, 1));
    /// # Ok(())
    /// # }
    /// ```
    fn record_delivery(
        &self,
        id: JobId,
        token: u32,
        attempt: DeliveryAttempt,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// How long a claim lasts without renewal, for stores whose leases can
    /// lapse; the layer renews its claims every third of it and sweeps
    /// every half of it. `None` (the default): a store of one process,
    /// whose claims lapse only with the process, renews nothing and sweeps
    /// nothing.
    fn lease(&self) -> Option<Duration> {
        None
    }

    /// A cheap round trip to the server that keeps the jobs, for readiness
    /// probes ([`AcceptedLayer::ready`](crate::AcceptedLayer::ready)):
    /// `Ok(())` when the store can serve operations now.
    ///
    /// The default answers `Ok(())` at once: a store of one process (as
    /// [`MemoryStore`]) is there as long as the process is. A store on a
    /// server answers with one request that touches no job (Redis `PING`,
    /// PostgreSQL `SELECT 1`), bounded in time as its other operations are,
    /// so that a probe never hangs on a server that does not answer:
    /// [`StoreError::Unavailable`] when the server cannot be reached or does
    /// not answer in time. It must change nothing, and stay cheap: a load
    /// balancer may call it every second on every replica.
    ///
    /// ```
    /// use tower_accepted::store::{JobStore, MemoryStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let store = MemoryStore::new();
    /// assert!(store.health().await.is_ok());
    /// # }
    /// ```
    fn health(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(Ok(()))
    }
}

//! Where jobs live: the [`JobStore`] trait and the in-memory [`MemoryStore`].
//!
//! The trait makes no in-process assumption: a result is bytes, a status and
//! headers ([`StoredResponse`]), and waiting for a job to end is a store
//! operation ([`JobStore::wait_terminal`]), so that a store shared between
//! processes (Redis) fits behind the same trait. The layer is the only writer
//! of job states; a store's job is to keep them, expire them and wake
//! waiters.
//!
//! Every store keeps these rules, which the crate's store test suite checks:
//!
//! - a terminal state never changes: [`finish`](JobStore::finish) and
//!   [`cancel`](JobStore::cancel) on a terminal job change nothing;
//! - finished and canceled jobs expire after the store's time to live, and an
//!   expired id is reported as [`Lookup::Expired`] for a bounded time, then as
//!   [`Lookup::Unknown`];
//! - [`create`](JobStore::create) fails with [`StoreError::Full`] rather than
//!   grow past the store's capacity.

use std::fmt;
use std::future::Future;

mod id;
mod index;
mod memory;
mod record;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod suite;

pub use id::{InvalidJobId, JobId};
pub use memory::{MemoryStore, MemoryStoreBuilder};
pub(crate) use record::unix_ms;
pub use record::{
    Created, IdempotencyKey, InvalidJobStatus, JobError, JobRecord, JobStatus, KeyLookup, ListCursor, Outcome, Page,
    StoredResponse,
};
#[cfg(feature = "redis")]
pub use redis::{RedisStore, RedisStoreBuilder};

/// What a store knows of an id.
///
/// ```
/// use tower_accepted::{JobId, JobStore, Lookup, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::new();
/// assert_eq!(store.get(JobId::new()).await.unwrap(), Lookup::Unknown);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The job is known.
    Found(JobRecord),
    /// The job expired recently; the id is remembered so that clients get
    /// `410 Gone` rather than `404`.
    Expired,
    /// The id is unknown (never created, deleted, or expired long ago).
    Unknown,
}

/// The answer of [`JobStore::cancel`].
///
/// ```
/// use tower_accepted::{Cancel, JobId, JobRecord, JobStore, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::new();
/// let id = JobId::new();
/// store.create(JobRecord::pending(id)).await.unwrap();
/// assert_eq!(store.cancel(id).await.unwrap(), Cancel::Canceled);
/// assert_eq!(store.cancel(id).await.unwrap(), Cancel::AlreadyTerminal);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// The job was pending or running and is now canceled.
    Canceled,
    /// The job had already ended; nothing changed.
    AlreadyTerminal,
    /// The job expired recently.
    Expired,
    /// No such job.
    Unknown,
}

/// Why a store could not do what was asked.
///
/// ```
/// use tower_accepted::{JobId, JobRecord, JobStore, MemoryStore, StoreError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::builder().capacity(1).build();
/// store.create(JobRecord::pending(JobId::new())).await.unwrap();
/// let full = store.create(JobRecord::pending(JobId::new())).await;
/// assert!(matches!(full, Err(StoreError::Full)));
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The store holds as many jobs as it may; try again later.
    Full,
    /// The store could not be reached or failed (for example a lost
    /// connection to a server).
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("the job store is full"),
            Self::Unavailable(e) => write!(f, "the job store is unavailable: {e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Full => None,
            Self::Unavailable(e) => Some(&**e),
        }
    }
}

/// A place to keep jobs, their progress and their results.
///
/// Implementations are shared by every clone of the layer and called from
/// many tasks at once. Every operation should cost O(1) and must not hold a
/// lock across an `.await`. Methods may be implemented with `async fn`.
///
/// A store of your own proves it keeps the rules with the conformance kit,
/// [`store::suite`](crate::store) (feature `test-util`), from its own test:
/// `suite::run_all(MyStore::new).await` (see the module for the checks and
/// for stores that are costly to make).
///
/// ```
/// use tower_accepted::{JobId, JobRecord, JobStatus, JobStore, Lookup, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_accepted::StoreError> {
/// let store = MemoryStore::new();
/// let id = JobId::new();
/// store.create(JobRecord::pending(id)).await?;
/// store.start(id).await?;
/// let Lookup::Found(record) = store.get(id).await? else { unreachable!() };
/// assert_eq!(record.status, JobStatus::Running);
/// # Ok(())
/// # }
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
    ) -> impl Future<Output = Result<Created, StoreError>> + Send;

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
    /// ([`JobRecord::started_at_ms`]); returns `false` (and changes nothing) when the job is not pending any more, for example canceled
    /// while it waited.
    fn start(&self, id: JobId) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records the handler's progress and message on a job that has not
    /// ended.
    fn set_progress(
        &self,
        id: JobId,
        progress: Option<f32>,
        message: Option<String>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Ends a job with `outcome`, storing the response if there is one, and
    /// wakes its waiters. Returns `false` (and changes nothing) when the job
    /// had already ended or is gone.
    fn finish(&self, id: JobId, outcome: Outcome) -> impl Future<Output = Result<bool, StoreError>> + Send;

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

    /// The stored response of a finished job, if it has one.
    fn response(&self, id: JobId) -> impl Future<Output = Result<Option<StoredResponse>, StoreError>> + Send;

    /// Resolves once the job is terminal, or unknown, or expired; at once if
    /// it already is. Callers bound the wait with a timeout.
    fn wait_terminal(&self, id: JobId) -> impl Future<Output = Result<(), StoreError>> + Send;
}

//! [`PostgresStore`]: jobs and the durable queue in PostgreSQL (feature
//! `postgres`).

mod builder;
mod claims;
mod deliveries;
mod expiry;
mod listener;
mod records;
mod rows;
mod schema;
mod sql;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use sqlx::PgPool;
use tokio::task::JoinHandle;

pub use builder::PostgresStoreBuilder;
use sql::Statements;

use super::waiters::Waiters;
use super::{
    Cancel, Claim, Claimed, CreatedOnce, DeliveryAttempt, DueDelivery, DurableJob, IdempotencyKey, JobId, JobRecord,
    JobStore, KeyLookup, ListCursor, Lookup, Outcome, Page, StoreError, Swept,
};

/// Jobs kept in PostgreSQL, the database the application most likely has
/// already: several replicas share them, and durable jobs wait in a queue
/// in the database until a replica claims them.
///
/// - **Schema.** The store keeps its tables in a schema of its own
///   (default `tower_accepted`; [`schema`](PostgresStoreBuilder::schema)),
///   which it creates and upgrades itself with versioned migrations
///   embedded in the crate, under an advisory lock, so that replicas that
///   start at once do not race. It never touches a table it did not
///   create: a table of the same name in its schema fails the build.
///   `jobs` holds one row per job: its state, progress and attempt, its
///   stored response (status, headers and body as bytes), its error, its
///   owner, its idempotency key (a unique index: of concurrent creates with
///   one key, exactly one inserts) and, for a durable job, its queue,
///   attempts and request, and its completion callback (URL, delivery
///   state, attempts, and when its delivery is due: through a partial
///   index, set only while an ended job's delivery is pending).
///   `tombstones` holds the ids of expired jobs.
///   `migrations` records the schema's version.
/// - **Expiry.** PostgreSQL has no time to live: an ended job's row
///   carries when it expires (its end plus [`ttl`](PostgresStoreBuilder::ttl),
///   by the database's clock) and every read treats a row past it as gone
///   (`410 Gone` until its tombstone is forgotten, `tombstone_ttl` later).
///   A sweeper in each store deletes such rows in batches of 500 (`SKIP
///   LOCKED`, through the expiry index), keeping their ids as tombstones;
///   no request waits for it. Jobs that have not ended do not expire: a
///   durable job waits in its queue until a replica claims it.
/// - **Claims and leases** by the database's clock (`now()`), never a
///   replica's: whoever runs an attempt of a job holds a [`Claim`], whose
///   number is the row's `attempt` (the fencing token), and a lease
///   (`lease_until`) that the layer renews every third of
///   [`lease`](JobStore::lease). Start, progress and finish change a job
///   only while their claim holds it; a runner whose lease lapsed gets
///   `false` and never overwrites the attempt that replaced it.
///   [`claim_next`](JobStore::claim_next) takes the oldest job of a queue
///   with `FOR UPDATE SKIP LOCKED`, so replicas claiming at once take
///   different jobs. [`sweep`](JobStore::sweep) puts a durable job whose
///   lease lapsed back in its queue (attempts left) or ends it `lost`.
/// - **Durable jobs.** The request (method, URI, headers, body) is kept
///   with the record, written in the same statement, credentials among the
///   headers included, since a replica that runs it again needs them: the
///   database holds secrets, and should be guarded as such. An end removes
///   it. A queue holds at most
///   [`max_queued`](PostgresStoreBuilder::max_queued) jobs.
/// - **Waking.** Every end (and delete) sends `NOTIFY` on the channel
///   `<schema>_ended` (a start or a progress, `~` and the id, for event
///   streams) in the same statement as the change, so it is sent
///   if and only if the change commits. Each store holds one `LISTEN`
///   connection for all its waiters (long polls, and the runner that must
///   drop a job canceled elsewhere), pinged every second; when it is lost,
///   the store reconnects and wakes every waiter to read its job again.
///   Waiters also read their job again every lease.
/// - **Cost.** One statement, one round trip on the caller's path, per
///   operation: create, get, progress, finish, cancel, claim, renew (all
///   of a replica's claims at once) each (sqlx pings a connection as it
///   goes back to the pool, after the answer). Every statement a request
///   runs finds its rows through an index. A `get` of an id without a row
///   reads its tombstone too (two); so does a keyed create whose key is
///   taken (the holder), and [`find_key`](JobStore::find_key) always.
/// - **Faults.** Every operation is bounded by the statement timeout,
///   waiting for a connection included: while PostgreSQL is unreachable,
///   operations fail with [`StoreError::Unavailable`] (the layer answers
///   `503` + `Retry-After`) rather than hang, and the pool reconnects when
///   it is back. An end the database could not take is tried again by the
///   layer while its claim is renewed. A database out of disk or memory
///   (SQLSTATE class 53) is reported as [`StoreError::Full`].
///
/// ```no_run
/// use tower_accepted::{AcceptedLayer, store::PostgresStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_accepted::store::StoreError> {
/// // The pool the application already has, or `PostgresStore::builder(url)`.
/// let pool = tower_accepted::sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/app")
///     .await
///     .map_err(|e| tower_accepted::store::StoreError::Unavailable(e.into()))?;
/// let store = PostgresStore::builder_with_pool(pool).build().await?;
/// let layer = AcceptedLayer::new().store(store);
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    /// What every clone shares.
    inner: Arc<Inner>,
}

/// The state of a store, shared by its clones.
struct Inner {
    /// The connections.
    pool: PgPool,
    /// The schema of the store's tables.
    schema: String,
    /// The SQL of every operation.
    statements: Statements,
    /// How long a claim lasts without renewal.
    lease: Duration,
    /// The bound of every operation.
    timeout: Duration,
    /// How many jobs a queue holds at most.
    max_queued: i64,
    /// This process's waiters, woken by the listener.
    waiters: Arc<Waiters>,
    /// The listener and the expiry sweeper, aborted with the last clone.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            task.abort();
        }
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .field("lease", &self.inner.lease)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// A builder for a store on the database at `url`, such as
    /// `postgres://postgres@127.0.0.1:5432/app`, with a pool of its own.
    pub fn builder(url: impl Into<String>) -> PostgresStoreBuilder {
        PostgresStoreBuilder::with_url(url.into())
    }

    /// A builder for a store on the pool the application already holds,
    /// whose connections it uses as any query does. Its `LISTEN`
    /// connection is one more, of its own, made with the pool's options.
    ///
    /// A pool the store makes from a URL has the server end each statement
    /// (`statement_timeout`, `lock_timeout`) before the store gives up on
    /// it, so that a create answered `503` never commits later; give the
    /// application's pool such settings too (`PgConnectOptions::options`),
    /// or a create that timed out may still commit, and its job end `lost`.
    pub fn builder_with_pool(pool: PgPool) -> PostgresStoreBuilder {
        PostgresStoreBuilder::with_pool(pool)
    }

    /// A store with the default settings on the database at `url`.
    ///
    /// ```no_run
    /// use tower_accepted::store::PostgresStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_accepted::store::StoreError> {
    /// let store = PostgresStore::connect("postgres://postgres@127.0.0.1:5432/app").await?;
    /// assert_eq!(store.schema(), "tower_accepted");
    /// // Queries of your own on the store's pool, with the re-exported sqlx.
    /// let jobs: i64 = tower_accepted::sqlx::query_scalar("SELECT count(*) FROM tower_accepted.jobs")
    ///     .fetch_one(store.pool())
    ///     .await
    ///     .map_err(|e| tower_accepted::store::StoreError::Unavailable(e.into()))?;
    /// # let _ = jobs;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(url: impl Into<String>) -> Result<Self, StoreError> {
        Self::builder(url).build().await
    }

    /// The schema that holds the store's tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The pool the store uses.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Deletes the expired jobs and forgets the expired tombstones now, as
    /// the store's sweeper does in the background; answers how many of
    /// each. For tests and maintenance: nothing needs it to run.
    ///
    /// ```no_run
    /// # use tower_accepted::store::PostgresStore;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_accepted::store::StoreError> {
    /// # let store = PostgresStore::connect("postgres://postgres@127.0.0.1:5432/app").await?;
    /// let (jobs, tombstones) = store.expire_now().await?;
    /// println!("deleted {jobs} expired jobs, forgot {tombstones} ids");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn expire_now(&self) -> Result<(u64, u64), StoreError> {
        let s = &self.inner.statements;
        expiry::round(&self.inner.pool, &s.expire, &s.forget, self.inner.timeout)
            .await
            .map_err(unavailable)
    }

    /// The SQL of every statement the store runs, by name, as it is sent
    /// (with the store's schema): for the test that checks, with
    /// `EXPLAIN`, that each finds its rows through an index.
    #[doc(hidden)]
    pub fn statements(&self) -> Vec<(&'static str, &str)> {
        self.inner.statements.all()
    }

    /// `query`, bounded by the statement timeout, its error as a
    /// [`StoreError`].
    async fn bounded<T>(&self, query: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, StoreError> {
        match tokio::time::timeout(self.inner.timeout, query).await {
            Ok(answer) => answer.map_err(unavailable),
            Err(_) => Err(StoreError::Unavailable("the PostgreSQL statement timed out".into())),
        }
    }
}

/// A database error as a [`StoreError`]: out of disk or memory (SQLSTATE
/// class 53) is [`Full`](StoreError::Full), anything else
/// [`Unavailable`](StoreError::Unavailable).
fn unavailable(e: sqlx::Error) -> StoreError {
    let full = e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code.starts_with("53"));
    if full {
        StoreError::Full
    } else {
        StoreError::Unavailable(Box::new(e))
    }
}

/// A time in ms since the Unix epoch as a `bigint` column keeps it.
fn i64_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

impl JobStore for PostgresStore {
    async fn create(&self, record: JobRecord) -> Result<(), StoreError> {
        self.create_job(&record, None, None).await.map(|_| ())
    }

    async fn create_once(&self, record: JobRecord, key: IdempotencyKey) -> Result<CreatedOnce, StoreError> {
        self.create_keyed(&record, &key, None).await
    }

    async fn find_key(&self, key: &IdempotencyKey) -> Result<KeyLookup, StoreError> {
        self.key_holder(key).await
    }

    async fn list(&self, owner: &str, limit: usize, after: Option<ListCursor>) -> Result<Page, StoreError> {
        self.list_owned(owner, limit, after).await
    }

    /// Reads only: a job whose lease lapsed stays as it is until a sweep
    /// deals with it.
    async fn get(&self, id: JobId) -> Result<Lookup, StoreError> {
        self.lookup(id).await
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
        self.end_claimed(claim, &outcome).await
    }

    async fn cancel(&self, id: JobId) -> Result<Cancel, StoreError> {
        self.cancel_job(id).await
    }

    async fn delete(&self, id: JobId) -> Result<bool, StoreError> {
        self.delete_job(id).await
    }

    async fn response(&self, id: JobId) -> Result<Option<Response<Bytes>>, StoreError> {
        self.stored_response(id).await
    }

    /// Woken by the listener; reads the job again every lease in case a
    /// message was missed.
    async fn wait_terminal(&self, id: JobId) -> Result<(), StoreError> {
        self.inner
            .waiters
            .wait_for_end(id, self.inner.lease, || self.lookup(id))
            .await
    }

    async fn wait_change(&self, id: JobId, seen: u64) -> Result<(), StoreError> {
        self.inner
            .waiters
            .wait_for_change(id, seen, self.inner.lease, || self.lookup(id))
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

    fn lease(&self) -> Option<Duration> {
        Some(self.inner.lease)
    }

    /// One statement through the pool (taking a connection included),
    /// bounded by the statement timeout as every operation is. Its text is
    /// not the listener's ping (`SELECT 1`), so that a look at
    /// `pg_stat_activity` still tells the `LISTEN` connection apart.
    async fn health(&self) -> Result<(), StoreError> {
        let probe = sqlx::raw_sql("SELECT 1 AS health").execute(&self.inner.pool);
        self.bounded(probe).await.map(|_| ())
    }
}

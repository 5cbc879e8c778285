//! [`PostgresStoreBuilder`]: where a [`PostgresStore`] keeps its jobs and
//! for how long.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::sql::{Settings, Statements};
use super::{Inner, PostgresStore, expiry, listener, schema, unavailable};
use crate::store::StoreError;
use crate::store::waiters::Waiters;

/// The longest duration the store writes into SQL: 100 years, as
/// [`RedisStore`](crate::store::RedisStore) caps its own, so that
/// `Duration::MAX` means "as good as forever" rather than an overflow.
const MAX_DURATION: Duration = Duration::from_millis(36_525 * 24 * 60 * 60 * 1000);

/// The statement timeout when none is set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The pool's size when the store opens its own.
const DEFAULT_CONNECTIONS: u32 = 16;

/// Where the store's connections come from.
#[derive(Debug)]
enum Source {
    /// A URL: the store opens a pool of its own.
    Url(String),
    /// The pool the application already has.
    Pool(PgPool),
}

/// Configures a [`PostgresStore`]; made by [`PostgresStore::builder`] (a
/// URL) or [`PostgresStore::builder_with_pool`] (a pool the application
/// holds).
///
/// Every duration is capped at 100 years: `Duration::MAX` is a valid
/// setting that means "as good as forever".
///
/// ```no_run
/// use std::time::Duration;
/// use tower_accepted::store::PostgresStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_accepted::store::StoreError> {
/// let store = PostgresStore::builder("postgres://postgres@127.0.0.1:5432/app")
///     .schema("reports_jobs")
///     .ttl(Duration::from_secs(600))
///     .lease(Duration::from_secs(10))
///     .build()
///     .await?;
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use]
pub struct PostgresStoreBuilder {
    /// A URL or a pool.
    source: Source,
    /// The schema of the store's tables.
    schema: String,
    /// How long an ended job is kept.
    ttl: Duration,
    /// How long an expired id is remembered past `ttl`.
    tombstone_ttl: Duration,
    /// How long a claim lasts without renewal.
    lease: Duration,
    /// How many jobs a queue holds at most.
    max_queued: usize,
    /// The statement timeout, when set.
    timeout: Option<Duration>,
    /// How often the expiry sweeper runs, when set.
    expiry_every: Option<Duration>,
}

impl PostgresStoreBuilder {
    /// The default settings, with connections from `source`.
    fn new(source: Source) -> Self {
        Self {
            source,
            schema: "tower_accepted".to_owned(),
            ttl: Duration::from_secs(60 * 60),
            tombstone_ttl: Duration::from_secs(24 * 60 * 60),
            lease: Duration::from_secs(5),
            max_queued: 100_000,
            timeout: None,
            expiry_every: None,
        }
    }

    /// A builder that opens a pool (16 connections) to `url`.
    pub(super) fn with_url(url: String) -> Self {
        Self::new(Source::Url(url))
    }

    /// A builder on the application's pool.
    pub(super) fn with_pool(pool: PgPool) -> Self {
        Self::new(Source::Pool(pool))
    }

    /// The schema that holds the store's tables (default `tower_accepted`),
    /// so that several applications can share a database: lowercase ASCII
    /// letters, digits and `_`, at most 57 bytes ([`build`](Self::build)
    /// refuses any other name). The store creates it if it is missing.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// How long a finished or canceled job is kept (default one hour; at
    /// most 100 years).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.min(MAX_DURATION);
        self
    }

    /// How long an expired id is remembered for `410 Gone` (default 24 h; at
    /// most 100 years).
    pub fn tombstone_ttl(mut self, ttl: Duration) -> Self {
        self.tombstone_ttl = ttl.min(MAX_DURATION);
        self
    }

    /// How long a claim lasts without renewal: once it lapsed (by the
    /// database's clock), a sweep puts a durable job with attempts left back
    /// in its queue and ends any other `lost` (default 5 s; the layer renews
    /// every third of it and sweeps every half; at least 300 ms, at most 100
    /// years). At least three times the statement timeout: a shorter lease
    /// is raised to that.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.clamp(Duration::from_millis(300), MAX_DURATION);
        self
    }

    /// How many durable jobs one queue holds at most (default 100 000; at
    /// least 1): a queued create into a full queue fails with
    /// [`StoreError::Full`] (the layer answers `503`). The check counts the
    /// queue through its index, up to this number, and is only made for a
    /// job that must wait: when no runner is free.
    pub fn max_queued(mut self, max_queued: usize) -> Self {
        self.max_queued = max_queued.max(1);
        self
    }

    /// The longest an operation may take, waiting for a connection
    /// included, before it fails with [`StoreError::Unavailable`] (default
    /// 2 s, or a third of the lease when that is shorter). The lease is
    /// raised to at least three times a timeout set here. On a pool the
    /// store makes, the server ends a statement after two thirds of it
    /// (`statement_timeout`, `lock_timeout`), so that what the store
    /// reported failed never commits afterwards.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout.min(MAX_DURATION));
        self
    }

    /// How often the expiry sweeper deletes the jobs past their time to
    /// live (default: a quarter of the time to live, between 1 s and 60 s).
    /// Reads never depend on it: an expired row reads as gone at once.
    pub fn expiry_interval(mut self, every: Duration) -> Self {
        self.expiry_every = Some(every.clamp(Duration::from_millis(10), MAX_DURATION));
        self
    }

    /// Connects, creates or upgrades the schema, and starts listening for
    /// ended jobs and sweeping expired ones. Must be called within a tokio
    /// runtime.
    pub async fn build(self) -> Result<PostgresStore, StoreError> {
        if !schema::valid_name(&self.schema) {
            return Err(StoreError::Unavailable(
                format!(
                    "schema name {:?}: use lowercase ASCII letters, digits and `_` (at most 57)",
                    self.schema
                )
                .into(),
            ));
        }
        let (timeout, lease) = match self.timeout {
            Some(timeout) => (timeout, self.lease.max(timeout.saturating_mul(3)).min(MAX_DURATION)),
            None => (DEFAULT_TIMEOUT.min(self.lease / 3), self.lease),
        };
        let owned = matches!(self.source, Source::Url(_));
        let pool = match self.source {
            Source::Pool(pool) => pool,
            Source::Url(url) => {
                let options: PgConnectOptions = url.parse().map_err(unavailable)?;
                // The server ends a statement after two thirds of the
                // timeout, before the store gives up on it: a statement the
                // store reported failed (a create answered `503`, a claim)
                // never commits afterwards.
                let server_timeout = (timeout * 2 / 3)
                    .max(Duration::from_millis(100))
                    .as_millis()
                    .to_string();
                let options = options.options([
                    ("statement_timeout", server_timeout.as_str()),
                    ("lock_timeout", server_timeout.as_str()),
                ]);
                PgPoolOptions::new()
                    .max_connections(DEFAULT_CONNECTIONS)
                    .acquire_timeout(timeout)
                    // No ping before each use, which would double the round
                    // trips of every operation: a connection that broke fails
                    // its statement (`503`, the client retries) and is closed.
                    .test_before_acquire(false)
                    .connect_with(options)
                    .await
                    .map_err(unavailable)?
            }
        };
        let migrated = tokio::time::timeout(
            timeout.max(Duration::from_secs(10)),
            schema::migrate(&pool, &self.schema),
        )
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable("creating the schema timed out".into())));
        if let Err(e) = migrated {
            if owned {
                // Nothing is left behind: a connection that timed out in
                // the migration's transaction goes with the pool.
                pool.close().await;
            }
            return Err(e);
        }
        let channel = format!("{}_ended", self.schema);
        let statements = Statements::new(&Settings {
            schema: &self.schema,
            channel: &channel,
            ttl_ms: ms(self.ttl),
            tombstone_ms: ms(self.tombstone_ttl),
            lease_ms: ms(lease),
        });
        let waiters = Arc::new(Waiters::default());
        let (listening_tx, listening_rx) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(listener::listen(
            pool.clone(),
            channel,
            Arc::clone(&waiters),
            listening_tx,
            timeout,
        ));
        let every = self
            .expiry_every
            .unwrap_or_else(|| (self.ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60)));
        let sweeper = tokio::spawn(expiry::sweep_forever(
            pool.clone(),
            statements.expire.clone(),
            statements.forget.clone(),
            every,
            timeout,
        ));
        let inner = Arc::new(Inner {
            pool,
            schema: self.schema,
            statements,
            lease,
            timeout,
            max_queued: i64::try_from(self.max_queued).unwrap_or(i64::MAX),
            waiters,
            tasks: Mutex::new(vec![listener, sweeper]),
        });
        // Wake-ups are only reliable once the listener listens.
        match tokio::time::timeout(timeout.max(Duration::from_secs(5)), listening_rx).await {
            Ok(Ok(())) => Ok(PostgresStore { inner }),
            _ => Err(StoreError::Unavailable("could not LISTEN on the job channel".into())),
        }
    }
}

/// A duration in whole milliseconds, as SQL intervals take it.
fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

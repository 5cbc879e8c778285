//! Helpers for tests against the real PostgreSQL (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`): each test works in a schema
//! of its own, dropped when the test ends (also when it fails).
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use tower_accepted::sqlx::{self, PgPool};
use tower_accepted::store::{Claim, JobId, JobStore, PostgresStore, PostgresStoreBuilder};

pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema of a test's own, dropped with it.
pub struct Schema {
    /// The schema's name.
    pub name: String,
}

impl Schema {
    /// A name no other test uses.
    pub fn new() -> Self {
        Self {
            name: format!("test_{}", JobId::new().as_uuid().simple()),
        }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // On a thread of its own: `Drop` may run inside a runtime, which
        // must not be blocked on.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async {
                if let Ok(pool) = PgPool::connect(&database_url()).await {
                    let _ = sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                        .execute(&pool)
                        .await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// The time to live the expiry suite runs `PostgresStore` with (real time,
/// by the database's clock; the window between TTL and the end of the
/// tombstone is wide, as for Redis).
pub const EXPIRY_TTL: Duration = Duration::from_millis(800);
/// The tombstone's time to live for the expiry suite.
pub const EXPIRY_TOMBSTONE_TTL: Duration = Duration::from_secs(5);

/// A builder on the test database in `schema`, with a 3 s lease: its
/// statement timeout, a third of it, is a second, which a loaded machine
/// (tests run side by side) needs to get a connection of the pool.
pub fn builder(schema: &Schema) -> PostgresStoreBuilder {
    PostgresStore::builder(database_url())
        .schema(&schema.name)
        .lease(Duration::from_secs(3))
}

/// A store in `schema` as the expiry suite runs it: [`EXPIRY_TTL`] and
/// [`EXPIRY_TOMBSTONE_TTL`], a 3 s lease.
pub async fn expiry_store(schema: &Schema) -> PostgresStore {
    builder(schema)
        .ttl(EXPIRY_TTL)
        .tombstone_ttl(EXPIRY_TOMBSTONE_TTL)
        .build()
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must answer at {} for these tests: {e}", database_url()))
}

/// A store on the test database in `schema`, with a 3 s lease.
pub async fn store(schema: &Schema) -> PostgresStore {
    builder(schema)
        .build()
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must answer at {} for these tests: {e}", database_url()))
}

/// A plain pool for checks made behind the store's back.
pub async fn pool() -> PgPool {
    PgPool::connect(&database_url()).await.unwrap()
}

/// Renews, every third of the lease, the claims of every job of `store`
/// that holds a lease: what the layer does for the claims it holds, for
/// tests that keep jobs pending or running through the store alone.
pub fn renew_every_claim(store: PostgresStore) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let lease = store.lease().expect("a PostgresStore has a lease");
        let query = format!(
            "SELECT id, attempt FROM \"{}\".jobs WHERE lease_until IS NOT NULL",
            store.schema()
        );
        loop {
            let rows: Vec<(uuid::Uuid, i32)> = sqlx::query_as(&query).fetch_all(store.pool()).await.unwrap_or_default();
            let claims = rows
                .into_iter()
                .map(|(id, attempt)| Claim::new(JobId::from(id), u32::try_from(attempt).unwrap_or(0)))
                .collect();
            let _ = store.renew(claims).await;
            tokio::time::sleep(lease / 3).await;
        }
    })
}

//! Helpers for tests against the real Redis (`REDIS_URL`, default
//! `redis://127.0.0.1:6379`).
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use tower_accepted::store::{JobId, RedisStore};

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Milliseconds since the Unix epoch, as the records count them.
pub fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The time to live the expiry suite runs `RedisStore` with. Redis keeps
/// real time, and the suite reads a job between its TTL and the end of its
/// tombstone, so that window is wide: with 800 ms it closed before the read
/// when the whole suite ran on a loaded machine.
pub const EXPIRY_TTL: Duration = Duration::from_millis(800);
/// The tombstone's time to live for the expiry suite (see [`EXPIRY_TTL`]).
pub const EXPIRY_TOMBSTONE_TTL: Duration = Duration::from_secs(5);

/// `builder` as the expiry suite runs it: [`EXPIRY_TTL`],
/// [`EXPIRY_TOMBSTONE_TTL`] and a 1 s lease, in `namespace`.
pub async fn expiry_store(builder: tower_accepted::store::RedisStoreBuilder, namespace: &str) -> RedisStore {
    builder
        .namespace(namespace)
        .ttl(EXPIRY_TTL)
        .tombstone_ttl(EXPIRY_TOMBSTONE_TTL)
        .lease(Duration::from_millis(1000))
        .build()
        .await
        .unwrap()
}

/// A namespace no other test uses.
pub fn namespace() -> String {
    format!("test-{}", JobId::new())
}

/// A store on the test Redis in `namespace`, with a short lease.
pub async fn store(namespace: &str) -> RedisStore {
    RedisStore::builder(redis_url())
        .namespace(namespace)
        .lease(Duration::from_millis(1000))
        .build()
        .await
        .unwrap_or_else(|e| panic!("Redis must answer at {} for these tests: {e}", redis_url()))
}

/// A plain connection for checks made behind the store's back.
pub async fn connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Every key of `namespace` with its time to live in ms (`-1`: none, `-2`:
/// expired since it was listed): a job's keys (`{ns}:job:<id>`, `{ns}:gone:<id>`) and the
/// namespace's own (`{ns}:owner:…` owner indexes, `{ns}:key:…` idempotency
/// keys).
pub async fn keys_with_ttl(namespace: &str) -> Vec<(String, i64)> {
    let mut conn = connection().await;
    let mut keys: Vec<String> = Vec::new();
    for pattern in [format!("{{{namespace}:*"), format!("{{{namespace}}}:*")] {
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .unwrap();
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    let mut out = Vec::new();
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.unwrap();
        out.push((key, ttl));
    }
    out
}

/// Asserts that every key of `namespace` has a time to live.
pub async fn assert_every_key_expires(namespace: &str) {
    let keys = keys_with_ttl(namespace).await;
    // PTTL -1: no TTL; -2: the key expired between SCAN and PTTL, which is fine.
    let forever: Vec<_> = keys.iter().filter(|(_, ttl)| *ttl == -1).collect();
    assert!(forever.is_empty(), "keys without a TTL: {forever:?}");
}

/// Renews, every third of the store's lease, every claim current in
/// `namespace` (as a layer renews the claims it holds): for checks that
/// keep jobs pending or running longer than a lease without a layer. Ends
/// with the returned task (abort it).
pub fn renew_every_claim(store: RedisStore) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let conn = connection().await;
        renew_every_claim_on(store, conn).await;
    })
}

/// As [`renew_every_claim`], reading the lease set through `conn` (a
/// cluster's connection, say).
pub async fn renew_every_claim_on(store: RedisStore, mut conn: impl redis::aio::ConnectionLike + Send) {
    use tower_accepted::store::{Claim, JobStore, Lookup};
    let lease = store.lease().expect("a RedisStore has a lease");
    let leases = format!("{{{}}}:leases", store.namespace());
    loop {
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&leases)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        let mut claims = Vec::new();
        for id in ids.iter().filter_map(|id| id.parse::<JobId>().ok()) {
            if let Ok(Lookup::Found(record)) = store.get(id).await {
                claims.push(Claim::new(id, record.attempt));
            }
        }
        let _ = store.renew(claims).await;
        tokio::time::sleep(lease / 3).await;
    }
}

/// The members of the lease set of `namespace` with their expiry, and the
/// server's time, both in ms by Redis's clock.
pub async fn leases(namespace: &str) -> (Vec<(String, u64)>, u64) {
    let mut conn = connection().await;
    let (members, (secs, micros)): (Vec<(String, u64)>, (u64, u64)) = redis::pipe()
        .cmd("ZRANGE")
        .arg(format!("{{{namespace}}}:leases"))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .cmd("TIME")
        .query_async(&mut conn)
        .await
        .unwrap();
    (members, secs * 1000 + micros / 1000)
}

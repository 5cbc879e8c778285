//! `PostgresStore` against the real PostgreSQL (`DATABASE_URL`): the store
//! suite, the expiry suite, and what only a database store has (schema
//! migrations, the expiry sweeper, keyset pages).
#![cfg(feature = "postgres")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use tower_accepted::sqlx::{self, PgPool};
use tower_accepted::store::{Claim, JobStatus, JobStore, Outcome, PostgresStore, suite};

use crate::common;
use common::postgres::{
    EXPIRY_TOMBSTONE_TTL, EXPIRY_TTL, Schema, builder, expiry_store, pool, renew_every_claim, store,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_suite() {
    let schema = Schema::new();
    suite::run_all_on(Arc::new(store(&schema).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_expiry_suite() {
    let schema = Schema::new();
    let store = expiry_store(&schema).await;
    // The suite keeps jobs pending and running for several leases: their
    // claims are renewed meanwhile, as the layer renews the claims it holds.
    let renewer = renew_every_claim(store.clone());
    suite::expiry(&store, EXPIRY_TTL, EXPIRY_TOMBSTONE_TTL).await;
    renewer.abort();
}

/// Completion-callback deliveries on PostgreSQL, besides the suite's
/// checks: a lost job's delivery made due by the sweep (3 s lease), and a
/// pending delivery keeping its job past the expiry suite's time to live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_keeps_callback_deliveries() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let schema = Schema::new();
        suite::lost_job_delivery_is_due(&store(&schema).await).await;
        let schema = Schema::new();
        let store = expiry_store(&schema).await;
        suite::pending_delivery_keeps_its_job(&store, EXPIRY_TTL).await;
    })
    .await
    .expect("the delivery checks end within a minute");
}

/// The migrations' table of `schema`: its versions.
async fn versions(pool: &PgPool, schema: &str) -> Vec<i32> {
    sqlx::query_scalar(&format!("SELECT version FROM \"{schema}\".migrations ORDER BY version"))
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_at_once_create_the_schema_once() {
    let schema = Schema::new();
    let builds: Vec<_> = (0..4)
        .map(|_| {
            let builder = builder(&schema);
            tokio::spawn(builder.build())
        })
        .collect();
    let mut stores = Vec::new();
    for build in builds {
        stores.push(build.await.unwrap().expect("every replica starts"));
    }
    assert_eq!(versions(stores[0].pool(), &schema.name).await, vec![1, 2]);
    // And they share it: a job made by one is read by another.
    let id = suite::pending(&stores[0]).await;
    assert_eq!(suite::found(&stores[3], id).await.status, JobStatus::Pending);
}

/// A schema of version 1 (before callbacks) with a job in it is upgraded in
/// place: the job is read back without a callback, and new jobs keep theirs.
#[tokio::test]
async fn a_schema_of_version_one_is_upgraded_with_its_jobs() {
    let schema = Schema::new();
    let pool = pool().await;
    let quoted = format!("\"{}\"", schema.name);
    let version_one = include_str!("../../src/store/postgres/migrations/0001_jobs.sql").replace("{schema}", &quoted);
    let id = tower_accepted::store::JobId::new();
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA {quoted}; {version_one}; \
         CREATE TABLE {quoted}.migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now()); \
         INSERT INTO {quoted}.migrations (version) VALUES (1); \
         INSERT INTO {quoted}.jobs (id, status, created_at_ms, updated_at_ms, attempt) \
         VALUES ('{}', 'pending', 1000, 1000, 1)",
        id.as_uuid()
    ))
    .execute(&pool)
    .await
    .unwrap();
    let store = store(&schema).await;
    assert_eq!(versions(store.pool(), &schema.name).await, vec![1, 2]);
    let old = suite::found(&store, id).await;
    assert_eq!((old.status, old.callback), (JobStatus::Pending, None));
    suite::callback_round_trips(&store).await;
}

#[tokio::test]
async fn a_table_the_store_did_not_create_is_never_used() {
    let schema = Schema::new();
    let pool = pool().await;
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA \"{s}\"; CREATE TABLE \"{s}\".jobs (id int PRIMARY KEY, what text); \
         INSERT INTO \"{s}\".jobs VALUES (1, 'the app''s own')",
        s = schema.name
    ))
    .execute(&pool)
    .await
    .unwrap();
    let refused = builder(&schema).build().await;
    let error = refused
        .expect_err("a schema holding a table of another's is refused")
        .to_string();
    assert!(error.contains("jobs"), "the error names the table: {error}");
    let kept: String = sqlx::query_scalar(&format!("SELECT what FROM \"{}\".jobs WHERE id = 1", schema.name))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, "the app's own");
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = $1")
        .bind(&schema.name)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tables, 1, "nothing of the failed migration is left");
}

#[tokio::test]
async fn a_schema_newer_than_the_crate_is_refused() {
    let schema = Schema::new();
    let store = store(&schema).await;
    sqlx::query(&format!(
        "INSERT INTO \"{}\".migrations (version) VALUES (99)",
        schema.name
    ))
    .execute(store.pool())
    .await
    .unwrap();
    let error = builder(&schema).build().await.expect_err("refused").to_string();
    assert!(error.contains("version 99"), "{error}");
}

#[tokio::test]
async fn bad_schema_names_are_refused() {
    for name in ["", "Upper", "a;drop", "1st", &"x".repeat(58)] {
        let refused = PostgresStore::builder(common::postgres::database_url())
            .schema(name)
            .build()
            .await;
        assert!(refused.is_err(), "{name:?} was accepted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_clears_100_000_expired_rows_without_holding_requests() {
    let _heavy = common::replica::one_heavy_test_at_a_time().await;
    let schema = Schema::new();
    // A sweeper that runs only when asked (`expire_now`).
    let store = builder(&schema)
        .expiry_interval(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    sqlx::raw_sql(&format!(
        "INSERT INTO \"{s}\".jobs (id, status, created_at_ms, updated_at_ms, attempt, owner, result_status, \
         result_body, expires_at, forget_at) \
         SELECT gen_random_uuid(), 'succeeded', i, i, 1, 'owner' || (i % 100), 200, convert_to(repeat('x', 200), 'UTF8'), \
         now() - interval '1 second', now() + interval '1 hour' FROM generate_series(1, 100000) AS i",
        s = schema.name
    ))
    // Not the store's pool, whose statements the server ends after its
    // timeout.
    .execute(&pool().await)
    .await
    .unwrap();

    // Requests go on while the sweeper works: a job's whole life, and reads
    // of jobs that are being swept. Each operation is timed on its own.
    let sweeping = Arc::new(AtomicBool::new(true));
    let requests = {
        let store = store.clone();
        let sweeping = Arc::clone(&sweeping);
        tokio::spawn(async move {
            let mut times = Vec::new();
            let mut lives = 0_i64;
            while sweeping.load(Ordering::Relaxed) {
                let timed = Instant::now();
                let id = suite::running(&store).await;
                times.push(timed.elapsed() / 2); // a create and a start
                let timed = Instant::now();
                store.set_progress(Claim::first(id), Some(0.5), None).await.unwrap();
                times.push(timed.elapsed());
                let timed = Instant::now();
                store.list("owner7", 10, None).await.unwrap();
                times.push(timed.elapsed());
                let done = Outcome::Response(suite::sample_response(StatusCode::OK));
                let timed = Instant::now();
                assert!(store.finish(Claim::first(id), done).await.unwrap());
                times.push(timed.elapsed());
                let timed = Instant::now();
                store.get(id).await.unwrap();
                times.push(timed.elapsed());
                lives += 1;
            }
            (times, lives)
        })
    };
    let started = Instant::now();
    let (expired, _) = store.expire_now().await.unwrap();
    let took = started.elapsed();
    sweeping.store(false, Ordering::Relaxed);
    let (mut times, lives) = requests.await.unwrap();
    times.sort();
    let p99 = times[times.len() * 99 / 100];
    let slowest = times[times.len() - 1];
    eprintln!(
        "swept {expired} rows in {took:?}; {} operations meanwhile: median {:?}, p99 {p99:?}, slowest {slowest:?}",
        times.len(),
        times[times.len() / 2]
    );
    assert!(expired >= 100_000, "every expired row went: {expired}");
    assert!(lives > 10, "requests ran during the sweep: {lives}");
    // The sweeper locks only the rows of its batch (`SKIP LOCKED`), which
    // no request waits for: what a request waits for is the machine, which
    // the test run shares with other tests. So the bound is on the p99;
    // the slowest is reported.
    assert!(p99 < Duration::from_millis(50), "requests were held: p99 {p99:?}");
    let left: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{}\".jobs", schema.name))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(left, lives, "only the jobs made meanwhile are left");
    let tombstones: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{}\".tombstones", schema.name))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(tombstones >= 100_000, "expired ids are remembered: {tombstones}");
}

//! Replicas sharing jobs through one `PostgresStore` schema: two apps in
//! process over real HTTP (submit on one, poll, wait, fetch, cancel and
//! delete on the other; a long poll woken by `NOTIFY`), and the durable
//! chaos of `replicas.rs` on PostgreSQL: three `replicas` examples as
//! processes, one killed and restarted, one stopped gracefully and
//! restarted, every connection of theirs terminated once by the database;
//! every durable job ends `succeeded`, its result recorded once by the
//! attempt the job names; and a killed replica's jobs that are not durable
//! end `lost` within two leases.

#![cfg(feature = "postgres")]

use crate::common;
use common::sharing::{self, Flags};

use std::time::{Duration, Instant};

use tower_accepted::sqlx;
use tower_accepted::store::{JobId, JobStatus};

use common::Server;
use common::http::{HttpClient, assert_accepted};
use common::postgres::{Schema, builder, database_url, pool};

use common::replica::{Completions, Replica, check_every_job_recorded_once, client, spread_echo_jobs, until_record};

/// The lease of the in-process replicas: far longer than any wait below,
/// so that a long poll that ends soon after its job was woken by the
/// `NOTIFY` of the end, not by its waiter reading the job again every
/// lease.
const LONG_LEASE: Duration = Duration::from_secs(30);

/// One replica on `schema` (see `common::sharing`), with a long lease.
async fn replica(schema: &Schema, flags: Flags) -> (Server, HttpClient) {
    sharing::replica(builder(schema).lease(LONG_LEASE).build().await.unwrap(), flags).await
}

/// The rows left in `schema`'s `jobs` table.
async fn job_rows(schema: &Schema) -> i64 {
    let pool = pool().await;
    let (rows,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM \"{}\".jobs", schema.name))
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_on_one_postgres_replica_follow_on_another() {
    let schema = Schema::new();
    let (_a_server, a) = replica(&schema, Flags::default()).await;
    let (_b_server, b) = replica(&schema, Flags::default()).await;
    // The long poll on B wakes when A finishes (400 ms), not after its
    // 20 s, nor at its next read of the job (a lease, 30 s): by the end's
    // NOTIFY.
    let woke = sharing::submit_on_one_follow_on_another(&a, &b, Duration::from_secs(3)).await;
    println!("the long poll on B woke {woke:?} after it began (the job took 400 ms on A)");
    assert_eq!(job_rows(&schema).await, 0, "the deleted job's row is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_another_postgres_replica_stops_the_job_where_it_runs() {
    let schema = Schema::new();
    let flags = Flags::default();
    let (_a_server, a) = replica(&schema, flags.clone()).await;
    let (_b_server, b) = replica(&schema, Flags::default()).await;
    // A, whose runner waits for the end by `LISTEN` (its lease is 30 s),
    // drops the handler at once.
    sharing::cancel_on_another_stops_the_job_where_it_runs(&a, &b, &flags, Some(Duration::from_secs(5))).await;
}

/// The lease of the replica processes.
const LEASE_MS: u64 = 1000;

/// `url` with the connection parameter `application_name=name`, by which
/// the test finds the replicas' connections (and only theirs) in
/// `pg_stat_activity`.
fn with_application_name(url: &str, name: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={name}")
}

/// Terminates every connection of the database named `application_name`;
/// how many there were.
async fn terminate_backends(application_name: &str) -> usize {
    let pool = pool().await;
    let terminated: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = $1",
    )
    .bind(application_name)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    terminated.len()
}

/// Three replica processes on one schema, 300 durable jobs, a replica
/// killed and restarted, another stopped gracefully and restarted, every
/// connection of the replicas terminated by the database once: every job
/// succeeds, its result made by the attempt it names, which finished once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_postgres_replicas_run_every_durable_job_once_recorded_through_kills_restarts_and_lost_connections() {
    let _heavy = common::replica::one_heavy_test_at_a_time().await;
    let schema = Schema::new();
    let application_name = format!("replicas_{}", &schema.name[5..17]);
    let url = with_application_name(&database_url(), &application_name);
    let lease = LEASE_MS.to_string();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("SCHEMA", schema.name.as_str()),
        ("LEASE_MS", lease.as_str()),
        ("MAX_RUNNING", "8"),
    ];
    let completions = Completions::default();
    let mut a = Replica::start(&env, completions.clone()).await;
    let mut b = Replica::start(&env, completions.clone()).await;
    let mut c = Replica::start(&env, completions.clone()).await;
    let started = Instant::now();

    // 300 durable jobs, spread over the three, each 100 ms to 1.5 s long.
    let jobs = spread_echo_jobs([&a, &b, &c]).await;

    // A replica killed mid-run and started again; another stopped
    // gracefully and started again (a rolling restart); then every
    // connection of the replicas (pools and listeners) terminated once.
    tokio::time::sleep(Duration::from_millis(800)).await;
    a.kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.restart().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.terminate(Duration::from_secs(30)).await;
    b.restart().await;
    let terminated = terminate_backends(&application_name).await;
    assert!(terminated > 0, "the replicas had connections to terminate");

    let store = builder(&schema).build().await.unwrap();
    let poller = client(&c);
    let (ran_again, finished) = check_every_job_recorded_once(&store, &poller, &jobs, &completions).await;
    println!(
        "300 durable jobs succeeded on PostgreSQL in {:?}; {ran_again} ran again; \
         {finished} handler runs finished; {terminated} connections terminated",
        started.elapsed()
    );

    // No ended job holds a lease, keeps its request, or lacks an expiry.
    let pool = pool().await;
    let (kept,): (i64,) = sqlx::query_as(&format!(
        "SELECT count(*) FROM \"{}\".jobs \
         WHERE lease_until IS NOT NULL OR request_uri IS NOT NULL OR expires_at IS NULL",
        schema.name
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(kept, 0, "no ended job holds a lease or its request, each expires");

    // The processes first, the schema (dropped with `schema`) after.
    a.kill().await;
    b.kill().await;
    c.kill().await;
    drop(store);
}

/// The database's clock, in ms since the epoch: the clock of the records'
/// `updated_at_ms`.
async fn db_now_ms() -> u64 {
    let pool = pool().await;
    let (now,): (i64,) = sqlx::query_as("SELECT (extract(epoch FROM now()) * 1000)::bigint")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    u64::try_from(now).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_postgres_replicas_jobs_that_are_not_durable_end_lost_within_two_leases() {
    let schema = Schema::new();
    let url = database_url();
    let lease = LEASE_MS.to_string();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("SCHEMA", schema.name.as_str()),
        ("LEASE_MS", lease.as_str()),
        ("MAX_RUNNING", "4"),
    ];
    let completions = Completions::default();
    let mut a = Replica::start(&env, completions.clone()).await;
    let mut b = Replica::start(&env, completions.clone()).await;
    // `/fail` is not durable: 4 running and 6 queued on A.
    let mut ids = Vec::new();
    for _ in 0..10 {
        let monitor = assert_accepted(&client(&a).post("/fail?delay_ms=30000", "").await);
        ids.push(monitor.rsplit('/').next().unwrap().parse::<JobId>().unwrap());
    }
    let store = builder(&schema).build().await.unwrap();
    until_record(&store, ids[0], Duration::from_secs(20), |r| {
        r.status == JobStatus::Running
    })
    .await;
    a.kill().await;
    let killed_ms = db_now_ms().await;
    for id in &ids {
        let record = until_record(&store, *id, Duration::from_secs(20), |r| r.status.is_terminal()).await;
        assert_eq!(record.status, JobStatus::Failed, "{record:?}");
        assert_eq!(record.error.as_ref().map(|e| e.code.as_str()), Some("lost"));
        let after = record.updated_at_ms.saturating_sub(killed_ms);
        assert!(after <= 2 * LEASE_MS, "ended lost {after} ms after the kill");
    }
    // B, which swept them, answers for them.
    let doc = client(&b).get(&format!("/jobs/{}", ids[0])).await.json();
    assert_eq!(doc["error"]["code"], "lost", "{doc}");
    b.kill().await;
    drop(store);
}

//! `RedisStore` against the real Redis server (`REDIS_URL`): the store suite,
//! replicas sharing jobs over HTTP, lost jobs of a killed replica, key
//! expiry, idempotency-key lookups, start times and extreme settings.
#![cfg(feature = "redis")]

use crate::common;
use common::sharing::{self, Flags};
use tower_accepted::store::Claim;
use tower_accepted::store::suite;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tower_accepted::store::{
    Cancel, CreatedOnce, IdempotencyKey, JobId, JobRecord, JobStatus, JobStore, KeyLookup, Lookup, Outcome, RedisStore,
};

use common::redis::{
    EXPIRY_TOMBSTONE_TTL, EXPIRY_TTL, assert_every_key_expires, connection, expiry_store, keys_with_ttl, namespace,
    now_ms, redis_url, renew_every_claim, store,
};
use common::{HttpClient, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_suite() {
    let ns = namespace();
    suite::run_all_on(Arc::new(store(&ns).await)).await;
    assert_every_key_expires(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_expiry_suite() {
    let ns = namespace();
    let store = expiry_store(RedisStore::builder(redis_url()), &ns).await;
    // The suite keeps jobs pending and running for several leases: their
    // claims are renewed meanwhile, as the layer renews the claims it holds
    // (the store renews nothing by itself).
    let renewer = renew_every_claim(store.clone());
    suite::expiry(&store, EXPIRY_TTL, EXPIRY_TOMBSTONE_TTL).await;
    renewer.abort();
    assert_every_key_expires(&ns).await;
}

/// Completion-callback deliveries on Redis, besides the suite's checks: a
/// lost job's delivery made due by the sweep (1 s lease), and a pending
/// delivery keeping its job past the expiry suite's time to live; every
/// key (the deliveries set too) has a time to live after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_keeps_callback_deliveries() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let ns = namespace();
        let store = store(&ns).await;
        suite::lost_job_delivery_is_due(&store).await;
        assert_every_key_expires(&ns).await;
        let ns = namespace();
        let store = expiry_store(RedisStore::builder(redis_url()), &ns).await;
        suite::pending_delivery_keeps_its_job(&store, EXPIRY_TTL).await;
        assert_every_key_expires(&ns).await;
    })
    .await
    .expect("the delivery checks end within a minute");
}

/// The record of a job that must be there.
async fn found(store: &RedisStore, id: JobId) -> JobRecord {
    match store.get(id).await.unwrap() {
        Lookup::Found(record) => record,
        other => panic!("job {id} not found: {other:?}"),
    }
}

/// A `200 OK` outcome with `body`.
fn ok(body: &'static str) -> Outcome {
    Outcome::Response(tower_accepted::store::suite::stored_response(
        StatusCode::OK,
        http::HeaderMap::new(),
        bytes::Bytes::from_static(body.as_bytes()),
    ))
}

#[tokio::test]
async fn find_key_answers_free_existing_mismatch_and_free_once_the_holder_is_gone() {
    let ns = namespace();
    let store = store(&ns).await;
    let key = IdempotencyKey::new(Some("alice"), "order-42", "POST /orders abc");
    assert_eq!(store.find_key(&key).await.unwrap(), KeyLookup::Free);

    // Looking creates nothing: the key is still free to take.
    let id = JobId::new();
    let record = JobRecord::pending(id).with_owner(Some("alice".into()));
    assert_eq!(store.create_once(record, key.clone()).await.unwrap(), CreatedOnce::New);

    // Held: the same record as `get`, for the same request.
    let KeyLookup::Existing(existing) = store.find_key(&key).await.unwrap() else {
        panic!("the key's job is not found");
    };
    assert_eq!(existing, found(&store, id).await);
    assert!(store.start(Claim::first(id)).await.unwrap());
    let KeyLookup::Existing(running) = store.find_key(&key).await.unwrap() else {
        panic!("the key's job is not found once running");
    };
    assert_eq!(running.status, JobStatus::Running);
    assert_eq!(running, found(&store, id).await);

    // Another request with the same key: a mismatch. Another owner's, or
    // another key: free.
    let other_request = IdempotencyKey::new(Some("alice"), "order-42", "POST /orders def");
    assert_eq!(store.find_key(&other_request).await.unwrap(), KeyLookup::Mismatch);
    let bobs = IdempotencyKey::new(Some("bob"), "order-42", "POST /orders abc");
    assert_eq!(store.find_key(&bobs).await.unwrap(), KeyLookup::Free);
    let anonymous = IdempotencyKey::new(None, "order-42", "POST /orders abc");
    assert_eq!(store.find_key(&anonymous).await.unwrap(), KeyLookup::Free);

    // A finished holder still holds it.
    assert!(store.finish(Claim::first(id), ok("done")).await.unwrap());
    let KeyLookup::Existing(finished) = store.find_key(&key).await.unwrap() else {
        panic!("the key's job is not found once finished");
    };
    assert_eq!(finished.status, JobStatus::Succeeded);

    // Deleted: free again, and free to take.
    assert!(store.delete(id).await.unwrap());
    assert_eq!(store.find_key(&key).await.unwrap(), KeyLookup::Free);
    assert_eq!(store.find_key(&other_request).await.unwrap(), KeyLookup::Free);
    let again = JobId::new();
    let record = JobRecord::pending(again).with_owner(Some("alice".into()));
    assert_eq!(store.create_once(record, key.clone()).await.unwrap(), CreatedOnce::New);
    assert!(matches!(store.find_key(&key).await.unwrap(), KeyLookup::Existing(r) if r.id == again));

    // A key that outlived its job (its hash expired or was evicted): free,
    // whatever the fingerprint, as no kept job holds it.
    let mut conn = connection().await;
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{{{ns}}}:job:{again}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(store.find_key(&key).await.unwrap(), KeyLookup::Free);
    assert_eq!(store.find_key(&other_request).await.unwrap(), KeyLookup::Free);
    assert!(store.delete(again).await.is_ok());
    assert_every_key_expires(&ns).await;
}

#[tokio::test]
async fn started_at_is_set_by_start_and_kept_after_the_end() {
    let ns = namespace();
    let store = store(&ns).await;
    let id = JobId::new();
    store.create(JobRecord::pending(id)).await.unwrap();
    let pending = found(&store, id).await;
    assert_eq!(pending.started_at_ms, None);

    // Times are in milliseconds: the start comes in a later one.
    common::until("the clock to pass the creation's millisecond", || {
        now_ms() > pending.created_at_ms
    })
    .await;
    assert!(store.start(Claim::first(id)).await.unwrap());
    let after_start = now_ms();
    let running = found(&store, id).await;
    let started = running.started_at_ms.expect("start records when the job started");
    assert!(
        pending.created_at_ms <= started && started <= after_start,
        "started at {started}, created at {}, now {after_start}",
        pending.created_at_ms
    );
    assert_eq!(started, running.updated_at_ms, "start writes one time to both");
    // A second start changes nothing.
    assert!(!store.start(Claim::first(id)).await.unwrap());
    assert_eq!(found(&store, id).await.started_at_ms, Some(started));

    // The progress comes in a later millisecond than the start.
    common::until("the clock to pass the start's millisecond", || now_ms() > started).await;
    store
        .set_progress(Claim::first(id), Some(0.5), Some("half".into()))
        .await
        .unwrap();
    let progressed = found(&store, id).await;
    assert_eq!(progressed.started_at_ms, Some(started));
    assert!(progressed.updated_at_ms > started);
    assert!(store.finish(Claim::first(id), ok("done")).await.unwrap());
    let finished = found(&store, id).await;
    assert_eq!(finished.status, JobStatus::Succeeded);
    assert_eq!(finished.started_at_ms, Some(started));

    // A job canceled while it waited never started.
    let waiting = JobId::new();
    store.create(JobRecord::pending(waiting)).await.unwrap();
    assert_eq!(store.cancel(waiting).await.unwrap(), Cancel::Canceled);
    assert!(!store.start(Claim::first(waiting)).await.unwrap());
    assert_eq!(found(&store, waiting).await.started_at_ms, None);

    // A record created with a start time keeps it.
    let created_running = JobId::new();
    let mut record = JobRecord::pending(created_running);
    record.status = JobStatus::Running;
    record.started_at_ms = Some(record.created_at_ms + 1);
    store.create(record.clone()).await.unwrap();
    assert_eq!(found(&store, created_running).await.started_at_ms, record.started_at_ms);
    assert!(store.delete(created_running).await.unwrap());
    assert_every_key_expires(&ns).await;
}

/// 100 years in ms: the cap of every duration `RedisStore` hands Redis.
const HUNDRED_YEARS_MS: i64 = 36_525 * 24 * 60 * 60 * 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_max_settings_run_a_whole_job_life() {
    let ns = namespace();
    let store = RedisStore::builder(redis_url())
        .namespace(ns.as_str())
        .ttl(Duration::MAX)
        .tombstone_ttl(Duration::MAX)
        .lease(Duration::MAX)
        .command_timeout(Duration::MAX)
        .build()
        .await
        .unwrap();
    let key = IdempotencyKey::new(Some("alice"), "forever", "POST /work");
    let id = JobId::new();
    let record = JobRecord::pending(id).with_owner(Some("alice".into()));
    assert_eq!(store.create_once(record, key.clone()).await.unwrap(), CreatedOnce::New);
    assert!(store.start(Claim::first(id)).await.unwrap());
    store
        .set_progress(Claim::first(id), Some(0.25), Some("a quarter".into()))
        .await
        .unwrap();
    let running = found(&store, id).await;
    assert_eq!(
        running.status,
        JobStatus::Running,
        "a lease of Duration::MAX never lapses"
    );
    assert_eq!(running.progress, Some(0.25));

    let other = JobId::new();
    store.create(JobRecord::pending(other)).await.unwrap();
    assert!(store.start(Claim::first(other)).await.unwrap());
    assert_eq!(store.cancel(other).await.unwrap(), Cancel::Canceled);
    assert_eq!(found(&store, other).await.status, JobStatus::Canceled);

    let doomed = JobId::new();
    store.create(JobRecord::pending(doomed)).await.unwrap();
    assert!(store.delete(doomed).await.unwrap());
    assert_eq!(store.get(doomed).await.unwrap(), Lookup::Unknown);

    assert!(store.finish(Claim::first(id), ok("kept forever")).await.unwrap());
    tokio::time::timeout(Duration::from_secs(5), store.wait_terminal(id))
        .await
        .expect("an ended job's wait resolves at once")
        .unwrap();
    let finished = found(&store, id).await;
    assert_eq!(finished.status, JobStatus::Succeeded);
    assert!(finished.started_at_ms.is_some());
    let response = store.response(id).await.unwrap().expect("a stored response");
    assert_eq!(response.body(), "kept forever");
    assert!(matches!(store.find_key(&key).await.unwrap(), KeyLookup::Existing(r) if r.id == id));
    let page = store.list("alice", 10, None).await.unwrap();
    assert_eq!(page.jobs.len(), 1);
    assert_eq!(page.jobs[0].id, id);

    // Every key left (hashes, tombstones, owner index, idempotency key)
    // lives as long as the cap, not forever.
    let keys = keys_with_ttl(&ns).await;
    for suffix in [
        format!(":job:{id}"),
        format!(":gone:{id}"),
        format!(":job:{other}"),
        format!(":gone:{other}"),
        "}:owner:alice".to_owned(),
        "}:key:".to_owned(),
    ] {
        assert!(
            keys.iter().any(|(k, _)| k.contains(&suffix)),
            "no key with {suffix}: {keys:?}"
        );
    }
    for (key, ttl) in &keys {
        assert!(
            *ttl > HUNDRED_YEARS_MS - 60_000 && *ttl <= HUNDRED_YEARS_MS,
            "{key} has a TTL of {ttl} ms"
        );
    }
    assert_every_key_expires(&ns).await;
    // Leave nothing behind for a century.
    assert!(store.delete(id).await.unwrap());
    assert!(store.delete(other).await.unwrap());
    assert!(keys_with_ttl(&ns).await.is_empty(), "{:?}", keys_with_ttl(&ns).await);
}

/// One replica on namespace `ns` (see `common::sharing`).
async fn replica(ns: &str, flags: Flags) -> (Server, HttpClient) {
    sharing::replica(store(ns).await, flags).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_on_one_replica_follow_on_another() {
    let ns = namespace();
    let (_a_server, a) = replica(&ns, Flags::default()).await;
    let (_b_server, b) = replica(&ns, Flags::default()).await;
    sharing::submit_on_one_follow_on_another(&a, &b, Duration::from_secs(5)).await;
    assert_every_key_expires(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_another_replica_stops_the_job_where_it_runs() {
    let ns = namespace();
    let flags = Flags::default();
    let (_a_server, a) = replica(&ns, flags.clone()).await;
    let (_b_server, b) = replica(&ns, Flags::default()).await;
    sharing::cancel_on_another_stops_the_job_where_it_runs(&a, &b, &flags, None).await;
    assert_every_key_expires(&ns).await;
}

// A killed replica's jobs: `replicas.rs` (the example run as processes).

/// The wake-up of a waiter on another replica really comes by pub/sub. The
/// generic suite's wake checks cannot tell: a `RedisStore` waiter also reads
/// the record again every lease, 1 s in the other tests. Here the lease is a
/// minute, so a waiter woken within 30 s of the job's end was woken by the
/// message its end published, and by nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_woken_by_the_published_end_not_by_its_next_read() {
    const LEASE: Duration = Duration::from_secs(60);
    let ns = namespace();
    let runner = RedisStore::builder(redis_url())
        .namespace(ns.as_str())
        .lease(LEASE)
        .build()
        .await
        .unwrap();
    // The waiting replica on a connection of its own, whose commands Redis
    // shows (`CLIENT LIST`): the test sees when its waiter read the record.
    let mut conn = redis::aio::ConnectionManager::new(redis::Client::open(redis_url()).unwrap())
        .await
        .unwrap();
    let conn_id: i64 = redis::cmd("CLIENT").arg("ID").query_async(&mut conn).await.unwrap();
    let watcher = RedisStore::builder(redis_url())
        .namespace(ns.as_str())
        .lease(LEASE)
        .connection_manager(conn)
        .build()
        .await
        .unwrap();

    let id = JobId::new();
    runner.create(JobRecord::pending(id)).await.unwrap();
    assert!(runner.start(Claim::first(id)).await.unwrap());
    let waiting = watcher.clone();
    let waiter = tokio::spawn(async move { waiting.wait_terminal(id).await });
    // The waiter has read the record of the running job (a pipeline that
    // ends with `EXISTS`, the only command of that connection since
    // `CLIENT ID`): it waits for a message, or for the lease to pass.
    let plain = connection().await;
    common::until_some("the waiter to read the running job", || {
        let mut plain = plain.clone();
        async move {
            let line: String = redis::cmd("CLIENT")
                .arg("LIST")
                .arg("ID")
                .arg(conn_id)
                .query_async(&mut plain)
                .await
                .unwrap();
            if line.split_whitespace().any(|field| field == "cmd=exists") {
                Ok(())
            } else {
                Err(line)
            }
        }
    })
    .await;
    assert!(!waiter.is_finished(), "the waiter ended while the job ran");
    assert_eq!(found(&watcher, id).await.status, JobStatus::Running);

    assert!(runner.finish(Claim::first(id), ok("done")).await.unwrap());
    let woken = tokio::time::timeout(LEASE / 2, waiter).await;
    assert!(
        matches!(woken, Ok(Ok(Ok(())))),
        "the waiter was not woken within {:?} of the end: {woken:?}",
        LEASE / 2
    );
    assert!(runner.delete(id).await.is_ok());
    assert_every_key_expires(&ns).await;
}

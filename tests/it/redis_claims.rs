//! `RedisStore`'s claims against the real Redis server (`REDIS_URL`):
//! durable jobs and their queues, fenced writes, renewals, releases, the
//! sweep of lapsed leases by Redis's clock, queue capacity, and a time to
//! live on every key left behind.
#![cfg(feature = "redis")]

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use tower_accepted::store::{
    Cancel, Claim, Claimed, CreatedOnce, DurableJob, ErrorCode, IdempotencyKey, JobId, JobRecord, JobStatus, JobStore,
    LOST_MESSAGE, Lookup, Outcome, RedisStore, StoreError, Swept, suite,
};

use crate::common;
use common::redis::{assert_every_key_expires, connection, keys_with_ttl, leases, namespace, redis_url};

/// The shortest lease a store takes: tests wait for it to lapse.
const LEASE: Duration = Duration::from_millis(300);

/// A store in `ns` with the shortest lease.
async fn short_lease(ns: &str) -> RedisStore {
    RedisStore::builder(redis_url())
        .namespace(ns)
        .lease(LEASE)
        .build()
        .await
        .unwrap()
}

/// A request with a method, a query, repeated headers, credentials and a
/// body: everything a durable job keeps.
fn request(body: &'static str) -> Request<Bytes> {
    let mut request = Request::new(Bytes::from_static(body.as_bytes()));
    *request.method_mut() = Method::PUT;
    *request.uri_mut() = "/reports/7?format=pdf&lang=fr".parse().unwrap();
    let headers = request.headers_mut();
    headers.insert("authorization", HeaderValue::from_static("Bearer s3cret"));
    headers.append("x-tag", HeaderValue::from_static("a"));
    headers.append("x-tag", HeaderValue::from_static("b: c"));
    request
}

/// A durable job waiting in `queue` for a claim.
fn queued(queue: &str, body: &'static str) -> DurableJob {
    DurableJob::new(request(body), queue).queued(true)
}

/// Creates a queued durable job in `queue`, created at `created_at_ms`.
async fn enqueue(store: &RedisStore, queue: &str, created_at_ms: u64) -> JobId {
    let id = JobId::new();
    let record = JobRecord::new(id, JobStatus::Pending, created_at_ms, created_at_ms);
    let created = store.create_durable(record, queued(queue, "{}"), None).await.unwrap();
    assert_eq!(created, CreatedOnce::New);
    id
}

/// The next job of `queue`, which must be there.
async fn claim(store: &RedisStore, queue: &str) -> Claimed {
    store
        .claim_next(queue)
        .await
        .unwrap()
        .expect("a job waits in the queue")
}

/// A `200 OK` outcome.
fn ok() -> Outcome {
    Outcome::Response(suite::stored_response(
        StatusCode::OK,
        http::HeaderMap::new(),
        Bytes::from_static(b"done"),
    ))
}

/// Waits for every lease taken so far to lapse, by Redis's clock.
async fn lapse() {
    tokio::time::sleep(LEASE + Duration::from_millis(150)).await;
}

#[tokio::test]
async fn a_queued_job_is_claimed_as_attempt_1_with_its_request() {
    let ns = namespace();
    let store = short_lease(&ns).await;
    let id = JobId::new();
    let record = JobRecord::pending(id).with_owner(Some("alice".into()));
    let created = store
        .create_durable(record, queued("reports", "{\"pages\": 3}"), None)
        .await;
    assert_eq!(created.unwrap(), CreatedOnce::New);
    let waiting = suite::found(&store, id).await;
    assert_eq!((waiting.status, waiting.attempt), (JobStatus::Pending, 0));
    assert!(store.claim_next("other").await.unwrap().is_none(), "queues are apart");

    let claimed = claim(&store, "reports").await;
    assert_eq!(claimed.claim, Claim::new(id, 1));
    assert_eq!(claimed.record.id, id);
    assert_eq!(claimed.record.status, JobStatus::Pending);
    assert_eq!(claimed.record.attempt, 1);
    assert_eq!(claimed.record.owner.as_deref(), Some("alice"));
    let expected = request("{\"pages\": 3}");
    assert_eq!(claimed.request.method(), expected.method());
    assert_eq!(claimed.request.uri(), expected.uri());
    assert_eq!(claimed.request.headers(), expected.headers());
    assert_eq!(claimed.request.body(), expected.body());
    assert!(store.claim_next("reports").await.unwrap().is_none(), "claimed once");

    assert!(store.start(claimed.claim).await.unwrap());
    assert!(store.finish(claimed.claim, ok()).await.unwrap());
    // The request (its credentials) is not kept once the job ended.
    let mut conn = connection().await;
    let kept: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
        .arg(format!("{{{ns}}}:job:{id}"))
        .arg(&["qm", "qu", "qh", "qb"])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(kept.iter().all(Option::is_none), "{kept:?}");
    assert_every_key_expires(&ns).await;
}

#[tokio::test]
async fn claims_take_the_oldest_job_first() {
    let ns = namespace();
    let store = short_lease(&ns).await;
    let now = suite::found(&store, {
        let probe = JobId::new();
        store.create(JobRecord::pending(probe)).await.unwrap();
        probe
    })
    .await
    .created_at_ms;
    let middle = enqueue(&store, "q", now - 2_000).await;
    let newest = enqueue(&store, "q", now - 1_000).await;
    let oldest = enqueue(&store, "q", now - 3_000).await;
    for expected in [oldest, middle, newest] {
        assert_eq!(claim(&store, "q").await.claim, Claim::first(expected));
    }
    assert!(store.claim_next("q").await.unwrap().is_none());
    assert_every_key_expires(&ns).await;
}

#[tokio::test]
async fn canceled_and_deleted_queued_jobs_are_never_claimed() {
    let ns = namespace();
    let store = short_lease(&ns).await;
    let now = 1_700_000_000_000;
    let canceled = enqueue(&store, "q", now).await;
    let deleted = enqueue(&store, "q", now + 1).await;
    // More ended jobs than one claim script passes by (16).
    let mut ended = Vec::new();
    for i in 0..20 {
        ended.push(enqueue(&store, "q", now + 2 + i).await);
    }
    let live = enqueue(&store, "q", now + 100).await;
    assert_eq!(store.cancel(canceled).await.unwrap(), Cancel::Canceled);
    assert!(store.delete(deleted).await.unwrap());
    for id in &ended {
        assert_eq!(store.cancel(*id).await.unwrap(), Cancel::Canceled);
    }
    // A cancel or delete leaves the queue at once.
    let mut conn = connection().await;
    let waiting: u64 = redis::cmd("ZCARD")
        .arg(format!("{{{ns}}}:queue:q"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(waiting, 1);
    assert_eq!(claim(&store, "q").await.claim, Claim::first(live));
    assert!(store.claim_next("q").await.unwrap().is_none());
    assert_eq!(suite::found(&store, canceled).await.status, JobStatus::Canceled);

    // Entries whose job ended behind the store's back (here: statuses
    // written directly) are passed by too, beyond 16 of them.
    let mut stale = Vec::new();
    for i in 0..20 {
        stale.push(enqueue(&store, "r", now + i).await);
    }
    let behind = enqueue(&store, "r", now + 100).await;
    for id in &stale {
        let _: () = redis::cmd("HSET")
            .arg(format!("{{{ns}}}:job:{id}"))
            .arg("st")
            .arg("canceled")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(claim(&store, "r").await.claim, Claim::first(behind));
    for id in stale {
        assert!(store.delete(id).await.unwrap());
    }
    assert_every_key_expires(&ns).await;
}

#[tokio::test]
async fn writes_of_a_stale_attempt_change_nothing() {
    let ns = namespace();
    let store = short_lease(&ns).await;
    let id = enqueue(&store, "q", 1_000).await;
    let first = claim(&store, "q").await.claim;
    assert!(store.start(first).await.unwrap());
    assert!(store.set_progress(first, Some(0.5), Some("half".into())).await.unwrap());

    // The runner goes silent; the sweep puts the job back in its queue.
    lapse().await;
    assert_eq!(store.sweep().await.unwrap(), Swept::new(1, 0));
    let requeued = suite::found(&store, id).await;
    assert_eq!(requeued.status, JobStatus::Pending);
    assert_eq!(requeued.started_at_ms, None);
    // Fenced before another replica even claims it: the lease is gone.
    assert!(!store.start(first).await.unwrap());
    assert_eq!(store.renew(vec![first]).await.unwrap(), [false]);

    let second = claim(&store, "q").await.claim;
    assert_eq!(second, Claim::new(id, 2));
    assert!(store.start(second).await.unwrap());
    // The first runner wakes up and writes: nothing changes.
    assert!(
        !store
            .set_progress(first, Some(0.9), Some("stale".into()))
            .await
            .unwrap()
    );
    assert!(!store.finish(first, ok()).await.unwrap());
    assert!(!store.release(first).await.unwrap());
    let running = suite::found(&store, id).await;
    assert_eq!((running.status, running.attempt), (JobStatus::Running, 2));
    assert_eq!(running.message.as_deref(), Some("half"));
    assert!(store.response(id).await.unwrap().is_none());

    assert!(store.finish(second, ok()).await.unwrap());
    let done = suite::found(&store, id).await;
    assert_eq!((done.status, done.attempt), (JobStatus::Succeeded, 2));
    assert!(!store.finish(second, ok()).await.unwrap(), "ended once");
    assert_every_key_expires(&ns).await;
}

#[tokio::test]
async fn a_renewal_holds_until_the_job_ends() {
    let ns = namespace();
    let store = short_lease(&ns).await;
    let id = JobId::new();
    store.create(JobRecord::pending(id)).await.unwrap();
    let claim = Claim::first(id);
    assert!(store.start(claim).await.unwrap());
    assert_eq!(store.renew(Vec::new()).await.unwrap(), Vec::<bool>::new());
    // Renewed past several leases: never lapsed, never swept.
    for _ in 0..6 {
        assert_eq!(
            store.renew(vec![claim, Claim::new(id, 2)]).await.unwrap(),
            [true, false]
        );
        tokio::time::sleep(LEASE / 3).await;
        assert_eq!(store.sweep().await.unwrap(), Swept::new(0, 0));
    }
    assert!(store.finish(claim, ok()).await.unwrap());
    assert_eq!(store.renew(vec![claim]).await.unwrap(), [false]);
    let unknown = Claim::first(JobId::new());
    assert_eq!(store.renew(vec![unknown]).await.unwrap(), [false]);
    assert!(leases(&ns).await.0.is_empty(), "the end took the lease");
    assert_eq!(store.lease(), Some(LEASE));
    assert_every_key_expires(&ns).await;
}

#[tokio::test]
async fn a_release_puts_the_job_back_for_its_next_attempt() {
    let ns = namespace();
    let store = short_lease(&ns).await;
    let id = enqueue(&store, "q", 1_000).await;
    let first = claim(&store, "q").await.claim;
    assert!(store.start(first).await.unwrap());
    assert!(store.release(first).await.unwrap());
    let back = suite::found(&store, id).await;
    assert_eq!(back.status, JobStatus::Pending);
    assert_eq!(back.started_at_ms, None);
    assert!(!store.release(first).await.unwrap(), "released once");
    assert!(
        !store.finish(first, ok()).await.unwrap(),
        "a released claim is not held"
    );
    assert!(leases(&ns).await.0.is_empty(), "the release took the lease");

    let second = claim(&store, "q").await;
    assert_eq!(second.claim, Claim::new(id, 2));
    assert_eq!(second.request.body(), "{}");
    assert!(store.finish(second.claim, ok()).await.unwrap());
    assert!(!store.release(second.claim).await.unwrap(), "an ended job stays ended");

    // A job that is not durable has no queue to go back to.
    let plain = JobId::new();
    store.create(JobRecord::pending(plain)).await.unwrap();
    assert!(!store.release(Claim::first(plain)).await.unwrap());
    assert_eq!(suite::found(&store, plain).await.status, JobStatus::Pending);
    assert!(store.delete(plain).await.unwrap());
    assert_every_key_expires(&ns).await;
}

#[tokio::test]
async fn the_sweep_requeues_jobs_with_attempts_left_and_ends_the_others_lost() {
    let ns = namespace();
    let store = short_lease(&ns).await;
    // A durable job of two attempts, run at once by its creator.
    let durable = JobId::new();
    let job = DurableJob::new(request("{}"), "q").with_max_attempts(2);
    let created = store.create_durable(JobRecord::pending(durable), job, None).await;
    assert_eq!(created.unwrap(), CreatedOnce::New);
    assert!(store.start(Claim::first(durable)).await.unwrap());
    assert!(
        store.claim_next("q").await.unwrap().is_none(),
        "run at once: not queued"
    );
    // A job that is not durable.
    let plain = JobId::new();
    store.create(JobRecord::pending(plain)).await.unwrap();
    assert!(store.start(Claim::first(plain)).await.unwrap());
    let waiting = {
        let store = store.clone();
        tokio::spawn(async move { store.wait_terminal(plain).await })
    };
    assert_eq!(store.sweep().await.unwrap(), Swept::default(), "nothing lapsed yet");

    lapse().await;
    assert_eq!(
        suite::found(&store, plain).await.status,
        JobStatus::Running,
        "reads declare nothing lost"
    );
    assert_eq!(store.sweep().await.unwrap(), Swept::new(1, 1));
    assert_eq!(store.sweep().await.unwrap(), Swept::default(), "swept once");
    let lost = suite::found(&store, plain).await;
    assert_eq!(lost.status, JobStatus::Failed);
    let error = lost.error.expect("an error");
    assert_eq!(error.code, ErrorCode::Lost);
    assert_eq!(error.message, LOST_MESSAGE);
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the sweep's end wakes waiters")
        .unwrap()
        .unwrap();

    // Its second and last attempt lapses too: lost.
    let second = claim(&store, "q").await.claim;
    assert_eq!(second, Claim::new(durable, 2));
    assert!(store.start(second).await.unwrap());
    lapse().await;
    assert_eq!(store.sweep().await.unwrap(), Swept::new(0, 1));
    let lost = suite::found(&store, durable).await;
    assert_eq!((lost.status, lost.attempt), (JobStatus::Failed, 2));
    assert_eq!(lost.error.expect("an error").code, ErrorCode::Lost);
    assert!(store.claim_next("q").await.unwrap().is_none());
    assert!(leases(&ns).await.0.is_empty());
    assert_every_key_expires(&ns).await;
}

#[tokio::test]
async fn a_full_queue_refuses_queued_creates() {
    let ns = namespace();
    let store = RedisStore::builder(redis_url())
        .namespace(ns.as_str())
        .lease(LEASE)
        .max_queued(2)
        .build()
        .await
        .unwrap();
    enqueue(&store, "q", 1_000).await;
    enqueue(&store, "q", 2_000).await;
    let refused = JobId::new();
    let full = store
        .create_durable(JobRecord::pending(refused), queued("q", "{}"), None)
        .await;
    assert!(matches!(full, Err(StoreError::Full)), "{full:?}");
    assert_eq!(store.get(refused).await.unwrap(), Lookup::Unknown, "nothing written");
    let key = IdempotencyKey::new(None, "k", "f");
    let keyed = store
        .create_durable(JobRecord::pending(JobId::new()), queued("q", "{}"), Some(key.clone()))
        .await;
    assert!(matches!(keyed, Err(StoreError::Full)), "{keyed:?}");
    assert_eq!(
        store.find_key(&key).await.unwrap(),
        tower_accepted::store::KeyLookup::Free,
        "a refused create holds no key"
    );
    // Other queues, and jobs run at once, are not that queue's.
    enqueue(&store, "other", 1_000).await;
    let at_once = DurableJob::new(request("{}"), "q");
    let created = store
        .create_durable(JobRecord::pending(JobId::new()), at_once, None)
        .await;
    assert_eq!(created.unwrap(), CreatedOnce::New);
    // A claim frees a place.
    claim(&store, "q").await;
    enqueue(&store, "q", 3_000).await;
    assert_every_key_expires(&ns).await;
}

#[tokio::test]
async fn a_keyed_durable_create_happens_once() {
    let ns = namespace();
    let store = short_lease(&ns).await;
    let key = IdempotencyKey::new(Some("alice"), "k-1", "PUT /reports/7");
    let id = JobId::new();
    let first = store
        .create_durable(JobRecord::pending(id), queued("q", "{}"), Some(key.clone()))
        .await
        .unwrap();
    assert_eq!(first, CreatedOnce::New);
    let again = store
        .create_durable(JobRecord::pending(JobId::new()), queued("q", "{}"), Some(key.clone()))
        .await
        .unwrap();
    assert!(
        matches!(&again, CreatedOnce::Existing(record) if record.id == id),
        "{again:?}"
    );
    let other = IdempotencyKey::new(Some("alice"), "k-1", "PUT /reports/8");
    let mismatch = store
        .create_durable(JobRecord::pending(JobId::new()), queued("q", "{}"), Some(other))
        .await
        .unwrap();
    assert_eq!(mismatch, CreatedOnce::Mismatch);
    assert_eq!(claim(&store, "q").await.claim, Claim::first(id));
    assert!(store.claim_next("q").await.unwrap().is_none(), "queued once");
    assert_every_key_expires(&ns).await;
}

/// A create run again under the same id (what the store does after a lost
/// reply) queues the job once; a cancel of a claimed job takes its lease,
/// so its runner's next renewal tells it to stop.
#[tokio::test]
async fn a_create_run_again_queues_once_and_a_cancel_ends_the_claim() {
    let ns = namespace();
    let store = short_lease(&ns).await;
    let id = JobId::new();
    let record = JobRecord::new(id, JobStatus::Pending, 1_000, 1_000);
    for _ in 0..2 {
        let created = store.create_durable(record.clone(), queued("q", "{}"), None).await;
        assert_eq!(created.unwrap(), CreatedOnce::New);
    }
    let claimed = claim(&store, "q").await.claim;
    assert!(store.claim_next("q").await.unwrap().is_none(), "queued once");
    // Run again after the claim: the claim stands, nothing is queued.
    let created = store.create_durable(record, queued("q", "{}"), None).await;
    assert_eq!(created.unwrap(), CreatedOnce::New);
    assert!(store.claim_next("q").await.unwrap().is_none());
    assert_eq!(store.renew(vec![claimed]).await.unwrap(), [true]);

    assert!(store.start(claimed).await.unwrap());
    assert_eq!(store.cancel(id).await.unwrap(), Cancel::Canceled);
    assert_eq!(store.renew(vec![claimed]).await.unwrap(), [false]);
    assert!(!store.finish(claimed, ok()).await.unwrap());
    assert!(leases(&ns).await.0.is_empty(), "the cancel took the lease");
    assert_eq!(suite::found(&store, id).await.status, JobStatus::Canceled);
    assert_every_key_expires(&ns).await;
}

/// Every key a store writes in its namespace, the lease set and the queues
/// among them, has a time to live, whatever the jobs went through.
#[tokio::test]
async fn every_key_of_claims_and_queues_expires() {
    let ns = namespace();
    let store = short_lease(&ns).await;
    enqueue(&store, "waiting", 1_000).await;
    let claimed = enqueue(&store, "claimed", 1_000).await;
    let claim = claim(&store, "claimed").await.claim;
    assert_eq!(claim.id(), claimed);
    assert_eq!(store.renew(vec![claim]).await.unwrap(), [true]);
    let running = JobId::new();
    store.create(JobRecord::pending(running)).await.unwrap();
    let keys = keys_with_ttl(&ns).await;
    for suffix in [":leases", ":queue:waiting"] {
        assert!(
            keys.iter().any(|(k, ttl)| k.ends_with(suffix) && *ttl > 0),
            "no {suffix} with a TTL: {keys:?}"
        );
    }
    // And by the brief's own scan: every key whose name holds the
    // namespace.
    let mut conn = connection().await;
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("*{ns}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        for key in batch {
            let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.unwrap();
            assert!(ttl > 0 || ttl == -2, "{key} has no time to live ({ttl})");
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_every_key_expires(&ns).await;
}

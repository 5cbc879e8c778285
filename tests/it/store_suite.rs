//! The store test suite: the rules of `JobStore` (see `src/store/mod.rs`),
//! written once, generic over the store, and run here against `MemoryStore`.
//!
//! The generic part lives in `tests/suite/mod.rs`, which other stores reuse.
//! The `MemoryStore`-specific tests here drive tokio's paused clock, which
//! `MemoryStore` uses for expiry.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use tower_accepted::store::{
    Cancel, Claim, DeliveryAttempt, ErrorCode, JobCallback, JobError, JobId, JobRecord, JobStatus, JobStore, Lookup,
    MemoryStore, Outcome, StoreError,
};

use tower_accepted::store::suite;

// ---------------------------------------------------------------------------
// The suite against MemoryStore.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_the_suite() {
    suite::run_all(MemoryStore::new).await;
}

#[tokio::test]
async fn memory_store_passes_the_suite_on_one_thread() {
    suite::run_all(|| MemoryStore::builder().capacity(1_000).build()).await;
}

#[tokio::test(start_paused = true)]
async fn memory_store_passes_the_expiry_suite() {
    let ttl = Duration::from_secs(60);
    let tombstone_ttl = Duration::from_secs(600);
    let store = MemoryStore::builder().ttl(ttl).tombstones(1_000, tombstone_ttl).build();
    suite::expiry(&store, ttl, tombstone_ttl).await;
}

#[tokio::test(start_paused = true)]
async fn memory_store_keeps_jobs_with_pending_deliveries() {
    let ttl = Duration::from_secs(60);
    let store = MemoryStore::builder().ttl(ttl).build();
    suite::pending_delivery_keeps_its_job(&store, ttl).await;
    suite::lost_job_delivery_is_due(&store).await;
}

/// Jobs kept for their pending deliveries are never evicted, even past the
/// byte budget: eviction and `purge_expired` pass them by (and end), and
/// once delivered they go as any other.
#[tokio::test(start_paused = true)]
async fn pending_deliveries_are_never_evicted() {
    let store = MemoryStore::builder().max_finished_bytes(1).build();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = JobId::new();
        let callback = JobCallback::new("https://hooks.example.com/done");
        store
            .create(JobRecord::pending(id).with_callback(Some(callback)))
            .await
            .unwrap();
        assert!(store.finish(Claim::first(id), ok_response("kept")).await.unwrap());
        ids.push(id);
    }
    store.purge_expired();
    assert_eq!(store.len(), 3, "pending deliveries keep their jobs over the budget");
    for &id in &ids {
        assert_eq!(suite::found(&store, id).await.status, JobStatus::Succeeded);
    }
    let due = store.claim_deliveries(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(due.len(), 3);
    for delivery in due {
        let id = delivery.record.id;
        assert!(
            store
                .record_delivery(id, delivery.token, DeliveryAttempt::Delivered)
                .await
                .unwrap()
        );
    }
    store.purge_expired();
    assert_eq!(store.len(), 0, "delivered, they are evicted as any other");
    for id in ids {
        assert_eq!(store.get(id).await.unwrap(), Lookup::Expired);
    }
}

// ---------------------------------------------------------------------------
// MemoryStore specifics, on tokio's paused clock.

const TTL: Duration = Duration::from_secs(60);
const TOMBSTONE_TTL: Duration = Duration::from_secs(600);
const TICK: Duration = Duration::from_millis(1);

fn store(capacity: usize) -> MemoryStore {
    MemoryStore::builder()
        .capacity(capacity)
        .ttl(TTL)
        .tombstones(1_000, TOMBSTONE_TTL)
        .build()
}

fn ok_response(body: &'static str) -> Outcome {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    Outcome::Response(suite::stored_response(
        StatusCode::OK,
        headers,
        Bytes::from_static(body.as_bytes()),
    ))
}

async fn finished(store: &MemoryStore) -> JobId {
    let id = suite::running(store).await;
    assert!(store.finish(Claim::first(id), ok_response("done")).await.unwrap());
    id
}

#[tokio::test(start_paused = true)]
async fn finished_jobs_expire_after_the_ttl() {
    let store = store(100);
    let id = finished(&store).await;
    let failed = suite::running(&store).await;
    let error = JobError::new(ErrorCode::Panicked, "boom");
    assert!(
        store
            .finish(Claim::first(failed), Outcome::Failed(error))
            .await
            .unwrap()
    );
    assert_eq!(store.len(), 2);

    tokio::time::advance(TTL - TICK).await;
    assert_eq!(suite::found(&store, id).await.status, JobStatus::Succeeded);
    assert_eq!(store.response(id).await.unwrap().unwrap().body(), "done");
    assert_eq!(suite::found(&store, failed).await.status, JobStatus::Failed);
    assert_eq!(store.len(), 2);

    tokio::time::advance(2 * TICK).await;
    assert_eq!(store.get(id).await.unwrap(), Lookup::Expired);
    assert!(store.response(id).await.unwrap().is_none());
    assert_eq!(store.cancel(id).await.unwrap(), Cancel::Expired);
    assert_eq!(store.get(failed).await.unwrap(), Lookup::Expired);
    assert!(!store.finish(Claim::first(id), ok_response("late")).await.unwrap());
    assert_eq!(
        store.get(id).await.unwrap(),
        Lookup::Expired,
        "a late finish does not revive it"
    );
    store.purge_expired();
    assert_eq!(store.len(), 0);
    assert!(store.is_empty());
}

#[tokio::test(start_paused = true)]
async fn canceled_jobs_expire_after_the_ttl() {
    let store = store(100);
    let id = suite::running(&store).await;
    tokio::time::advance(TTL * 3).await;
    assert_eq!(store.cancel(id).await.unwrap(), Cancel::Canceled);
    tokio::time::advance(TTL - TICK).await;
    assert_eq!(
        suite::found(&store, id).await.status,
        JobStatus::Canceled,
        "the TTL runs from the end"
    );
    tokio::time::advance(2 * TICK).await;
    assert_eq!(store.get(id).await.unwrap(), Lookup::Expired);
    store.purge_expired();
    assert_eq!(store.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_ttl_runs_from_the_end_not_the_creation() {
    let store = store(100);
    let id = suite::running(&store).await;
    tokio::time::advance(TTL * 10).await;
    assert!(store.finish(Claim::first(id), ok_response("slow")).await.unwrap());
    tokio::time::advance(TTL / 2).await;
    assert_eq!(suite::found(&store, id).await.status, JobStatus::Succeeded);
    assert_eq!(store.response(id).await.unwrap().unwrap().body(), "slow");
}

#[tokio::test(start_paused = true)]
async fn tombstones_are_forgotten_after_their_ttl() {
    let store = store(100);
    let id = finished(&store).await;
    tokio::time::advance(TTL + TICK).await;
    store.purge_expired();
    assert_eq!(store.get(id).await.unwrap(), Lookup::Expired);

    tokio::time::advance(TOMBSTONE_TTL - 2 * TICK).await;
    assert_eq!(
        store.get(id).await.unwrap(),
        Lookup::Expired,
        "remembered for the tombstone TTL"
    );
    tokio::time::advance(2 * TICK).await;
    assert_eq!(store.get(id).await.unwrap(), Lookup::Unknown);
    assert_eq!(store.cancel(id).await.unwrap(), Cancel::Unknown);
    assert!(store.response(id).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn tombstones_of_an_idle_store_are_forgotten_too() {
    // Nobody touches the store between the job's end and long after its
    // tombstone should be gone: the id is unknown, not expired.
    let store = store(100);
    let id = finished(&store).await;
    tokio::time::advance(TTL + TOMBSTONE_TTL + TICK).await;
    assert_eq!(store.get(id).await.unwrap(), Lookup::Unknown);
    assert_eq!(store.len(), 0);
}

/// How many of `ids` the store still remembers as expired.
async fn remembered(store: &MemoryStore, ids: &[JobId]) -> usize {
    let mut count = 0;
    for &id in ids {
        match store.get(id).await.unwrap() {
            Lookup::Expired => count += 1,
            Lookup::Unknown => {}
            other => panic!("{id} should have expired: {other:?}"),
        }
    }
    count
}

async fn expire_many(store: &MemoryStore, jobs: usize) -> Vec<JobId> {
    let mut ids = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        ids.push(finished(store).await);
    }
    tokio::time::advance(Duration::from_secs(2)).await;
    store.purge_expired();
    assert_eq!(store.len(), 0);
    ids
}

#[tokio::test(start_paused = true)]
async fn tombstones_are_bounded_in_number() {
    let store = MemoryStore::builder()
        .capacity(10_000)
        .ttl(Duration::from_secs(1))
        .tombstones(640, Duration::from_secs(3600))
        .build();
    let ids = expire_many(&store, 5_000).await;
    let count = remembered(&store, &ids).await;
    assert!(count <= 640, "{count} expired ids remembered, at most 640 configured");
    assert!(count >= 320, "only {count} expired ids remembered of 640 allowed");
}

#[tokio::test(start_paused = true)]
async fn tombstones_respect_a_small_bound() {
    let store = MemoryStore::builder()
        .capacity(10_000)
        .ttl(Duration::from_secs(1))
        .tombstones(10, Duration::from_secs(3600))
        .build();
    let ids = expire_many(&store, 1_000).await;
    let count = remembered(&store, &ids).await;
    assert!(count >= 1, "no expired id is remembered");
    assert!(count <= 10, "{count} expired ids remembered, at most 10 configured");
}

#[tokio::test(start_paused = true)]
async fn by_default_every_expired_job_of_a_full_store_is_remembered() {
    // The default store keeps 100,000 jobs and remembers "as many as
    // `capacity`" expired ids: a full store that expires at once remembers
    // every id it held, for `410 Gone`.
    const CAPACITY: usize = 100_000;
    let store = MemoryStore::builder().ttl(Duration::from_secs(1)).build();
    let ids = expire_many(&store, CAPACITY).await;
    let count = remembered(&store, &ids).await;
    assert_eq!(count, CAPACITY, "{} expired ids were forgotten early", CAPACITY - count);
}

#[tokio::test(start_paused = true)]
async fn default_tombstone_count_follows_the_capacity() {
    // "default: as many as `capacity`": with a capacity of 128, no more than
    // 128 expired ids are remembered, however many jobs expired.
    const CAPACITY: usize = 128;
    let store = MemoryStore::builder()
        .capacity(CAPACITY)
        .ttl(Duration::from_secs(1))
        .build();
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.extend(expire_many(&store, CAPACITY).await);
    }
    let count = remembered(&store, &ids).await;
    assert!(count >= CAPACITY / 2, "only {count} expired ids remembered");
    assert!(
        count <= CAPACITY,
        "{count} expired ids remembered by a store of capacity {CAPACITY}"
    );
}

#[tokio::test(start_paused = true)]
async fn no_tombstones_when_none_are_configured() {
    let store = MemoryStore::builder()
        .ttl(Duration::from_secs(1))
        .tombstones(0, Duration::from_secs(3600))
        .build();
    let ids = expire_many(&store, 100).await;
    assert_eq!(remembered(&store, &ids).await, 0);
}

#[tokio::test(start_paused = true)]
async fn create_past_capacity_is_full() {
    // The capacity bounds unfinished jobs (pending and running) only.
    let store = store(2);
    let a = suite::pending(&store).await;
    let b = suite::running(&store).await;
    assert_eq!(store.len(), 2);

    let refused = JobId::new();
    let error = store.create(JobRecord::pending(refused)).await.unwrap_err();
    assert!(matches!(error, StoreError::Full), "{error:?}");
    assert_eq!(error.to_string(), "the job store is full");
    assert_eq!(
        store.get(refused).await.unwrap(),
        Lookup::Unknown,
        "no half-created job"
    );
    assert_eq!(store.len(), 2);

    // A job that finishes gives its place back at once, though it is kept.
    let outcome = Outcome::Response(suite::stored_response(StatusCode::OK, HeaderMap::new(), Bytes::new()));
    assert!(store.finish(Claim::first(b), outcome).await.unwrap());
    let c = JobId::new();
    store
        .create(JobRecord::pending(c))
        .await
        .expect("room once a job finished");
    assert_eq!(store.len(), 3);
    assert_eq!(suite::found(&store, b).await.status, JobStatus::Succeeded);
    assert!(matches!(
        store.create(JobRecord::pending(JobId::new())).await,
        Err(StoreError::Full)
    ));
    // So does a canceled one.
    assert_eq!(store.cancel(c).await.unwrap(), Cancel::Canceled);
    store
        .create(JobRecord::pending(JobId::new()))
        .await
        .expect("room after a cancel");

    // Deleting an unfinished job makes room at once.
    assert!(store.delete(a).await.unwrap());
    store
        .create(JobRecord::pending(JobId::new()))
        .await
        .expect("room after a delete");
    assert_eq!(store.len(), 4);
}

#[tokio::test(start_paused = true)]
async fn finished_jobs_hold_no_capacity_and_purge_empties_the_store() {
    let store = store(50);
    let mut ids = Vec::new();
    for _ in 0..200 {
        ids.push(finished(&store).await);
    }
    assert_eq!(store.len(), 200, "four times the capacity, all finished");
    tokio::time::advance(TTL + TICK).await;
    store.purge_expired();
    assert_eq!(store.len(), 0);
    assert!(store.is_empty());
    assert_eq!(store.finished_bytes(), 0);
    for _ in 0..50 {
        suite::pending(&store).await;
    }
    assert_eq!(store.len(), 50);
    assert_eq!(remembered(&store, &ids).await, 200, "every expired id is remembered");
}

#[tokio::test(start_paused = true)]
async fn pending_and_running_jobs_never_expire() {
    let store = store(100);
    let pending = suite::pending(&store).await;
    let running = suite::running(&store).await;
    store
        .set_progress(Claim::first(running), Some(0.5), Some("half".into()))
        .await
        .unwrap();
    for _ in 0..5 {
        tokio::time::advance(TOMBSTONE_TTL * 10).await;
        store.purge_expired();
        assert_eq!(suite::found(&store, pending).await.status, JobStatus::Pending);
        assert_eq!(suite::found(&store, running).await.status, JobStatus::Running);
    }
    assert_eq!(store.len(), 2);
    // And a full store of them stays full.
    let full = store_with_capacity_of_running(3).await;
    tokio::time::advance(TOMBSTONE_TTL * 10).await;
    assert!(matches!(
        full.create(JobRecord::pending(JobId::new())).await,
        Err(StoreError::Full)
    ));
    assert_eq!(full.len(), 3);
}

async fn store_with_capacity_of_running(n: usize) -> MemoryStore {
    let store = store(n);
    for _ in 0..n {
        suite::running(&store).await;
    }
    store
}

#[tokio::test(start_paused = true)]
async fn len_counts_every_job_until_it_is_gone() {
    let store = store(100);
    assert_eq!(store.len(), 0);
    assert!(store.is_empty());
    let ids: Vec<JobId> = {
        let mut ids = Vec::new();
        for _ in 0..6 {
            ids.push(suite::pending(&store).await);
        }
        ids
    };
    assert_eq!(store.len(), 6);
    assert!(!store.is_empty());

    assert!(store.start(Claim::first(ids[0])).await.unwrap());
    store.set_progress(Claim::first(ids[0]), Some(0.1), None).await.unwrap();
    assert!(store.finish(Claim::first(ids[1]), ok_response("one")).await.unwrap());
    assert_eq!(store.cancel(ids[2]).await.unwrap(), Cancel::Canceled);
    assert_eq!(store.len(), 6, "ended jobs count until they expire");

    assert!(store.delete(ids[3]).await.unwrap());
    assert_eq!(store.len(), 5);
    assert!(!store.delete(ids[3]).await.unwrap());
    assert_eq!(store.len(), 5, "a second delete changes nothing");
    assert!(store.delete(ids[1]).await.unwrap());
    assert_eq!(store.len(), 4, "deleting a finished job frees it at once");

    // Refused creates and repeated operations do not count.
    assert!(!store.finish(Claim::first(ids[2]), ok_response("late")).await.unwrap());
    assert_eq!(store.cancel(ids[2]).await.unwrap(), Cancel::AlreadyTerminal);
    assert_eq!(store.len(), 4);

    tokio::time::advance(TTL + TICK).await;
    store.purge_expired();
    // ids[2] (canceled) expired; ids[0] (running), ids[4], ids[5] (pending) stay.
    assert_eq!(store.len(), 3);
    store.purge_expired();
    assert_eq!(store.len(), 3, "purging twice counts once");
    // The deleted finished job's expiry comes up without counting again.
    tokio::time::advance(TTL * 2).await;
    store.purge_expired();
    assert_eq!(store.len(), 3);

    assert!(store.finish(Claim::first(ids[0]), ok_response("zero")).await.unwrap());
    assert!(store.finish(Claim::first(ids[4]), ok_response("four")).await.unwrap());
    assert!(store.delete(ids[5]).await.unwrap());
    assert_eq!(store.len(), 2);
    tokio::time::advance(TTL + TICK).await;
    // Lazily: operations on the jobs' shards clear them without a purge call.
    assert_eq!(store.get(ids[0]).await.unwrap(), Lookup::Expired);
    assert_eq!(store.get(ids[4]).await.unwrap(), Lookup::Expired);
    assert_eq!(store.len(), 0);
    assert!(store.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_hundred_thousand_expired_jobs_leave_nothing() {
    const JOBS: usize = 100_000;
    let store = MemoryStore::new();
    let mut ids = Vec::with_capacity(JOBS);
    let body = Bytes::from_static(b"result");
    for _ in 0..JOBS {
        let id = JobId::new();
        store.create(JobRecord::pending(id)).await.unwrap();
        assert!(store.start(Claim::first(id)).await.unwrap());
        let outcome = Outcome::Response(suite::stored_response(StatusCode::OK, HeaderMap::new(), body.clone()));
        assert!(store.finish(Claim::first(id), outcome).await.unwrap());
        ids.push(id);
    }
    assert_eq!(store.len(), JOBS);
    // Finished jobs take no place among the unfinished.
    let more = JobId::new();
    store
        .create(JobRecord::pending(more))
        .await
        .expect("finished jobs hold no capacity");
    assert!(store.delete(more).await.unwrap());

    // The default time to live is one hour.
    tokio::time::advance(Duration::from_secs(3600) - TICK).await;
    store.purge_expired();
    assert_eq!(store.len(), JOBS, "nothing expires early");
    tokio::time::advance(2 * TICK).await;
    store.purge_expired();
    assert_eq!(store.len(), 0);
    assert!(store.is_empty());
    // Every id is gone (remembered as expired, or forgotten), none is found.
    let sample: Vec<JobId> = ids.iter().step_by(100).copied().collect();
    let remembered = remembered(&store, &sample).await;
    assert!(
        remembered > sample.len() / 2,
        "only {remembered} of {} remembered",
        sample.len()
    );
    for &id in &sample {
        assert!(store.response(id).await.unwrap().is_none());
    }
    // And the room is there again.
    for _ in 0..1_000 {
        suite::pending(&store).await;
    }
    assert_eq!(store.len(), 1_000);
}

#[tokio::test(start_paused = true)]
async fn expiry_wakes_nobody_but_waiters_of_ended_jobs_resolve() {
    // A waiter of an ended job resolves at once even after it expired, and
    // the waiter of a running job is not woken by other jobs expiring.
    let store = std::sync::Arc::new(store(100));
    let ended = finished(&store).await;
    let running = suite::running(&*store).await;
    let waiting = {
        let store = std::sync::Arc::clone(&store);
        tokio::spawn(async move { store.wait_terminal(running).await })
    };
    tokio::task::yield_now().await;
    tokio::time::advance(TTL + TICK).await;
    store.purge_expired();
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished(), "expiry of another job woke a waiter");
    store.wait_terminal(ended).await.unwrap();
    assert_eq!(store.cancel(running).await.unwrap(), Cancel::Canceled);
    waiting.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_pass_the_capacity() {
    const CAPACITY: usize = 100;
    let store = std::sync::Arc::new(MemoryStore::builder().capacity(CAPACITY).build());
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move {
                let (mut created, mut full) = (Vec::new(), 0usize);
                for _ in 0..50 {
                    let id = JobId::new();
                    match store.create(JobRecord::pending(id)).await {
                        Ok(()) => created.push(id),
                        Err(StoreError::Full) => full += 1,
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
                (created, full)
            })
        })
        .collect();
    let (mut created, mut full) = (Vec::new(), 0);
    for task in tasks {
        let (ids, refused) = task.await.unwrap();
        created.extend(ids);
        full += refused;
    }
    assert_eq!(created.len(), CAPACITY);
    assert_eq!(full, 16 * 50 - CAPACITY);
    assert_eq!(store.len(), CAPACITY);
    for id in created {
        assert_eq!(suite::found(&*store, id).await.status, JobStatus::Pending);
    }
}

// ---------------------------------------------------------------------------
// Hardening: idempotency keys behind a long expiry queue, waking outside the
// lock, waiters removed in O(1), extreme durations.

/// Polls `future` once with a waker that does nothing: `MemoryStore`'s
/// operations never wait, so they are ready at once.
fn ready_now<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("a MemoryStore operation waited"),
    }
}

/// A job id whose first byte is `first`: before the hardening the store's
/// shard was the id's first byte modulo 64, so such ids all shared a shard.
fn id_with_first_byte(first: u8) -> JobId {
    let mut bytes = *JobId::new().as_bytes();
    bytes[0] = first;
    JobId::from(uuid::Uuid::from_bytes(bytes))
}

#[tokio::test(start_paused = true)]
async fn create_once_frees_an_expired_key_behind_many_unpurged_jobs() {
    // Before the hardening each shard had its own expiry queue, purged 32
    // entries per operation on that shard, and `create_once` found an
    // expired holder with `get(holder)`, 8 tries at most: a holder behind
    // more than 8 × 32 = 256 (up to 512, counting the purges of the new
    // job's shard) expired entries of its shard's queue was still there
    // after the 8th try, and `create_once` failed with
    // `StoreError::Unavailable("the idempotency key kept changing hands")`
    // (a `503`). The crowd's ids share the holders' first byte, so that in
    // the old store they were all in the holders' shard, ahead of them; now
    // the shard is a keyed hash, there is one expiry queue, and an expired
    // holder is cleared directly.
    use tower_accepted::store::{CreatedOnce, IdempotencyKey, KeyLookup};
    const CROWD: usize = 2_000;
    // Room for the crowd also where finished jobs held capacity.
    let store = store(2 * CROWD);
    let holder = id_with_first_byte(7);
    let other = id_with_first_byte(7);
    let key = IdempotencyKey::new(Some("alice"), "order-1", "fingerprint");
    let other_key = IdempotencyKey::new(Some("alice"), "order-2", "fingerprint");
    for (id, key) in [(holder, &key), (other, &other_key)] {
        let created = store.create_once(JobRecord::pending(id), key.clone()).await.unwrap();
        assert_eq!(created, CreatedOnce::New);
        assert!(store.start(Claim::first(id)).await.unwrap());
    }
    // The crowd finishes first, the holders last: at the back of the queue.
    for _ in 0..CROWD {
        let id = id_with_first_byte(7);
        store.create(JobRecord::pending(id)).await.unwrap();
        assert!(store.finish(Claim::first(id), ok_response("crowd")).await.unwrap());
    }
    assert!(store.finish(Claim::first(holder), ok_response("held")).await.unwrap());
    assert!(store.finish(Claim::first(other), ok_response("held")).await.unwrap());
    assert_eq!(store.len(), CROWD + 2);

    // Everything expires; nothing is purged but what operations do.
    tokio::time::advance(TTL + TICK).await;
    assert_eq!(
        store.find_key(&other_key).await.unwrap(),
        KeyLookup::Free,
        "an expired holder frees its key for find_key"
    );
    let fresh = JobId::new();
    let created = store
        .create_once(JobRecord::pending(fresh), key.clone())
        .await
        .expect("an expired holder frees its key for create_once");
    assert_eq!(created, CreatedOnce::New);
    assert!(
        store.len() > CROWD / 2,
        "the key was freed without purging the crowd first"
    );
    // The key is the new job's now.
    match store.create_once(JobRecord::pending(JobId::new()), key).await.unwrap() {
        CreatedOnce::Existing(record) => assert_eq!(record.id, fresh),
        other => panic!("the key should name the new job: {other:?}"),
    }
    assert_eq!(store.get(holder).await.unwrap(), Lookup::Expired);
    store.purge_expired();
    assert_eq!(store.len(), 1);
}

/// A waker that reads the store the moment it is woken: were it woken under
/// the shard's lock, that read would wait for the lock forever.
struct Reentrant {
    store: MemoryStore,
    id: JobId,
    seen: std::sync::Mutex<Vec<Lookup>>,
}

impl std::task::Wake for Reentrant {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        let lookup = ready_now(self.store.get(self.id)).unwrap();
        // Also wait on the job again: ready, since it ended or left (unless
        // it was replaced by a new pending job).
        if !matches!(&lookup, Lookup::Found(record) if record.status == JobStatus::Pending) {
            assert!(ready_now(self.store.wait_terminal(self.id)).is_ok());
        }
        self.seen.lock().unwrap().push(lookup);
    }
}

/// Runs `end` on another thread and returns what it returned, or `None`
/// after 10 s (a deadlock).
fn on_another_thread<T: Send + 'static>(what: &str, end: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(end());
    });
    match outcome.recv_timeout(Duration::from_secs(10)) {
        Ok(value) => Some(value),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

#[test]
fn waiters_are_woken_after_the_lock_is_released() {
    // Before the hardening `finish`, `cancel`, `delete` and a `create` that
    // replaced a job woke the job's waiters while holding its shard's lock
    // (`Entry::wake` in `Inner::end`): a waker that touched the same shard
    // (here, at once, on the thread that ends the job) deadlocked on the
    // lock, so each of these timed out. Plain threads, no runtime: the
    // store's operations never wait.
    type End = fn(&MemoryStore, JobId) -> bool;
    type Seen = fn(&Lookup) -> bool;
    let ends: [(&str, End, Seen); 4] = [
        (
            "finish",
            |store, id| ready_now(store.finish(Claim::first(id), ok_response("done"))).unwrap(),
            |lookup| matches!(lookup, Lookup::Found(r) if r.status == JobStatus::Succeeded),
        ),
        (
            "cancel",
            |store, id| ready_now(store.cancel(id)).unwrap() == Cancel::Canceled,
            |lookup| matches!(lookup, Lookup::Found(r) if r.status == JobStatus::Canceled),
        ),
        (
            "delete",
            |store, id| ready_now(store.delete(id)).unwrap(),
            |lookup| *lookup == Lookup::Unknown,
        ),
        (
            "create over the same id",
            |store, id| ready_now(store.create(JobRecord::pending(id))).is_ok(),
            |lookup| matches!(lookup, Lookup::Found(r) if r.status == JobStatus::Pending),
        ),
    ];
    let store = MemoryStore::builder().ttl(TTL).build();
    for (what, end, expected) in ends {
        // Several waiters (the inline one and extra ones), each reading.
        let id = JobId::new();
        ready_now(store.create(JobRecord::pending(id))).unwrap();
        assert!(ready_now(store.start(Claim::first(id))).unwrap());
        let wakers: Vec<_> = (0..3)
            .map(|_| {
                std::sync::Arc::new(Reentrant {
                    store: store.clone(),
                    id,
                    seen: std::sync::Mutex::default(),
                })
            })
            .collect();
        let mut waits: Vec<_> = wakers.iter().map(|_| Box::pin(store.wait_terminal(id))).collect();
        for (wait, waker) in waits.iter_mut().zip(&wakers) {
            let waker = std::task::Waker::from(std::sync::Arc::clone(waker));
            let poll = wait.as_mut().poll(&mut std::task::Context::from_waker(&waker));
            assert!(poll.is_pending(), "{what}: the job has not ended");
        }

        let ending = store.clone();
        let Some(ended) = on_another_thread(what, move || end(&ending, id)) else {
            // The shard's lock is held for ever: dropping the waiters
            // (which takes it) would hang rather than fail.
            std::mem::forget(waits);
            panic!("{what} did not return within 10 s: a waker was woken under the shard's lock");
        };
        assert!(ended, "{what} did what it should");
        for waker in &wakers {
            let seen = waker.seen.lock().unwrap();
            assert_eq!(seen.len(), 1, "{what}: each waiter is woken once");
            assert!(expected(&seen[0]), "{what}: the waker saw {:?}", seen[0]);
        }
        // (A waiter of a job created over is not polled again: it would
        // find the new job pending and wait on it without its waker in the
        // new job's entry; see
        // `a_dropped_waiter_of_a_replaced_job_leaves_the_new_jobs_waiters_alone`.)
        if what != "create over the same id" {
            for wait in &mut waits {
                let poll = wait
                    .as_mut()
                    .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
                assert!(poll.is_ready(), "{what}: the waiter resolves");
            }
        }
    }
}

/// Counts how often each of many wakers was woken.
struct Counted {
    wakes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl std::task::Wake for Counted {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.wakes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn many_waiters_are_removed_in_any_order_and_never_woken() {
    // 10,000 long polls on one job, dropped in reverse order, then in a
    // random order, then half of them: none of those dropped is woken when
    // the job ends, each of the others exactly once. Before the hardening a
    // dropped waiter was found by a linear search of the job's wakers
    // (`will_wake`, then `swap_remove`): just as correct with distinct
    // wakers, but O(n) a waiter, so 10,000 of them took ~50 million
    // comparisons; now each has a slab key, removed in O(1). This checks the
    // bookkeeping of those keys (the inline first slot, slab slots freed and
    // reused in any order), not the time.
    const WAITERS: usize = 10_000;
    let store = MemoryStore::builder().ttl(TTL).build();
    let id = JobId::new();
    ready_now(store.create(JobRecord::pending(id))).unwrap();
    let wakes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let wakers: Vec<std::task::Waker> = (0..WAITERS)
        .map(|_| {
            std::task::Waker::from(std::sync::Arc::new(Counted {
                wakes: std::sync::Arc::clone(&wakes),
            }))
        })
        .collect();
    let register = || {
        let mut waits: Vec<_> = (0..WAITERS).map(|_| Box::pin(store.wait_terminal(id))).collect();
        for (wait, waker) in waits.iter_mut().zip(&wakers) {
            assert!(
                wait.as_mut()
                    .poll(&mut std::task::Context::from_waker(waker))
                    .is_pending()
            );
        }
        waits
    };
    let shuffled = |mut waits: Vec<_>| {
        fastrand::shuffle(&mut waits);
        waits
    };

    let started = std::time::Instant::now();
    // Reverse order.
    let mut waits = register();
    while let Some(wait) = waits.pop() {
        drop(wait);
    }
    // Random order.
    for wait in shuffled(register()) {
        drop(wait);
    }
    // In order, after polling each again with another waker (the task
    // moved): the replaced waker is removed, not the first one.
    let mut waits = register();
    let moved = std::task::Waker::from(std::sync::Arc::new(Counted {
        wakes: std::sync::Arc::clone(&wakes),
    }));
    for wait in waits.iter_mut().step_by(7) {
        assert!(
            wait.as_mut()
                .poll(&mut std::task::Context::from_waker(&moved))
                .is_pending()
        );
    }
    drop(waits);
    assert_eq!(
        wakes.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "dropping wakes nobody"
    );

    // Half of a last round kept, chosen at random; the rest dropped.
    let mut waits: Vec<_> = register().into_iter().enumerate().collect();
    fastrand::shuffle(&mut waits);
    let kept = waits.split_off(WAITERS / 2);
    drop(waits);
    let elapsed = started.elapsed();

    assert!(ready_now(store.finish(Claim::first(id), ok_response("done"))).unwrap());
    assert_eq!(
        wakes.load(std::sync::atomic::Ordering::SeqCst),
        kept.len(),
        "exactly the waiters kept are woken"
    );
    for (index, mut wait) in kept {
        let poll = wait.as_mut().poll(&mut std::task::Context::from_waker(&wakers[index]));
        assert!(poll.is_ready(), "waiter {index} resolves");
    }
    assert_eq!(
        wakes.load(std::sync::atomic::Ordering::SeqCst),
        WAITERS / 2,
        "once each"
    );
    println!("4 × {WAITERS} waiters registered and dropped in {elapsed:.2?}");
}

#[tokio::test(start_paused = true)]
async fn extreme_durations_never_panic() {
    // Before the hardening a tombstone was remembered until
    // `expired_at + tombstone_ttl` (an `Instant` plus a `Duration`), which
    // panicked ("overflow when adding duration to instant") for
    // `Duration::MAX` as soon as a job expired: the second half of this
    // test, at its `purge_expired` (a `Duration::MAX` time to live alone
    // was already saturated). Times now saturate, and `Duration::MAX`
    // means "never".
    use tower_accepted::store::{CreatedOnce, IdempotencyKey, KeyLookup};
    let forever = MemoryStore::builder()
        .capacity(usize::MAX)
        .ttl(Duration::MAX)
        .max_finished_bytes(usize::MAX)
        .tombstones(usize::MAX, Duration::MAX)
        .build();
    let store = &forever;
    let owner = Some("alice".to_owned());
    let id = JobId::new();
    store
        .create(JobRecord::pending(id).with_owner(owner.clone()))
        .await
        .unwrap();
    assert!(store.start(Claim::first(id)).await.unwrap());
    store
        .set_progress(Claim::first(id), Some(0.5), Some("half".into()))
        .await
        .unwrap();
    let mut waiting = Box::pin(store.wait_terminal(id));
    assert!(
        waiting
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
            .is_pending()
    );
    assert!(store.finish(Claim::first(id), ok_response("done")).await.unwrap());
    waiting.await.unwrap();
    store.wait_terminal(id).await.unwrap();
    assert_eq!(suite::found(store, id).await.status, JobStatus::Succeeded);
    assert_eq!(store.response(id).await.unwrap().unwrap().body(), "done");
    assert_eq!(store.list("alice", 10, None).await.unwrap().jobs.len(), 1);

    let key = IdempotencyKey::new(Some("alice"), "k", "f");
    let keyed = JobId::new();
    assert_eq!(
        store.create_once(JobRecord::pending(keyed), key.clone()).await.unwrap(),
        CreatedOnce::New
    );
    assert_eq!(store.cancel(keyed).await.unwrap(), Cancel::Canceled);
    assert!(matches!(
        store.create_once(JobRecord::pending(JobId::new()), key.clone()).await.unwrap(),
        CreatedOnce::Existing(record) if record.id == keyed
    ));
    assert!(matches!(store.find_key(&key).await.unwrap(), KeyLookup::Existing(_)));
    assert_eq!(store.cancel(keyed).await.unwrap(), Cancel::AlreadyTerminal);

    // Centuries later (as far as tokio's clock goes without overflowing),
    // nothing has expired.
    for _ in 0..5 {
        tokio::time::advance(Duration::from_secs(100 * 365 * 24 * 3600)).await;
        store.purge_expired();
        assert_eq!(suite::found(store, id).await.status, JobStatus::Succeeded);
        assert!(matches!(store.find_key(&key).await.unwrap(), KeyLookup::Existing(_)));
    }
    assert_eq!(store.len(), 2);
    assert!(store.delete(id).await.unwrap());
    assert!(store.delete(keyed).await.unwrap());
    store.purge_expired();
    assert_eq!(store.len(), 0);
    assert_eq!(store.finished_bytes(), 0);

    // Jobs that expire, remembered for ever.
    let remembering = MemoryStore::builder()
        .ttl(Duration::from_secs(1))
        .tombstones(usize::MAX, Duration::MAX)
        .build();
    let store = &remembering;
    let expired = finished(store).await;
    let key = IdempotencyKey::new(None, "k", "f");
    let keyed = JobId::new();
    store.create_once(JobRecord::pending(keyed), key.clone()).await.unwrap();
    assert_eq!(store.cancel(keyed).await.unwrap(), Cancel::Canceled);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(store.find_key(&key).await.unwrap(), KeyLookup::Free);
    store.purge_expired();
    assert_eq!(store.len(), 0);
    for _ in 0..5 {
        tokio::time::advance(Duration::from_secs(100 * 365 * 24 * 3600)).await;
        assert_eq!(store.get(expired).await.unwrap(), Lookup::Expired);
        assert_eq!(store.get(keyed).await.unwrap(), Lookup::Expired);
        assert_eq!(store.cancel(expired).await.unwrap(), Cancel::Expired);
        assert!(store.response(expired).await.unwrap().is_none());
        store.wait_terminal(expired).await.unwrap();
        assert!(!store.delete(expired).await.unwrap());
    }
    assert_eq!(
        store.create_once(JobRecord::pending(JobId::new()), key).await.unwrap(),
        CreatedOnce::New
    );
}

/// A waiter remembers the slab key of its waker in the job's entry. When
/// the job was replaced meanwhile (deleted and created again under its id,
/// or created over it), that key may name another waiter of the new job:
/// dropping the old waiter must not remove the new one's waker, and the old
/// waiter, polled again, must register in the new entry. (Found by this
/// test: both failed until a waiter checked that its key still holds its
/// own waker.)
#[test]
fn a_dropped_waiter_of_a_replaced_job_leaves_the_new_jobs_waiters_alone() {
    type Replace = fn(&MemoryStore, JobId);
    let replacements: [(&str, Replace); 2] = [
        ("created over", |store, id| {
            ready_now(store.create(JobRecord::pending(id))).unwrap();
        }),
        ("deleted and created again", |store, id| {
            assert!(ready_now(store.delete(id)).unwrap());
            ready_now(store.create(JobRecord::pending(id))).unwrap();
        }),
    ];
    for (how, replace) in replacements {
        let store = MemoryStore::builder().ttl(TTL).build();
        let id = JobId::new();
        ready_now(store.create(JobRecord::pending(id))).unwrap();
        let counter = || std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let waker = |wakes: &std::sync::Arc<std::sync::atomic::AtomicUsize>| {
            std::task::Waker::from(std::sync::Arc::new(Counted {
                wakes: std::sync::Arc::clone(wakes),
            }))
        };
        let (old_wakes, new_wakes) = (counter(), counter());
        let mut old = Box::pin(store.wait_terminal(id));
        assert!(
            old.as_mut()
                .poll(&mut std::task::Context::from_waker(&waker(&old_wakes)))
                .is_pending()
        );
        replace(&store, id);
        assert_eq!(
            old_wakes.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{how}: the old job left"
        );
        let mut new = Box::pin(store.wait_terminal(id));
        assert!(
            new.as_mut()
                .poll(&mut std::task::Context::from_waker(&waker(&new_wakes)))
                .is_pending()
        );
        drop(old);
        assert!(ready_now(store.finish(Claim::first(id), ok_response("done"))).unwrap());
        assert_eq!(
            new_wakes.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{how}: the new job's waiter is woken when it ends"
        );
        assert!(
            new.as_mut()
                .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
                .is_ready()
        );
    }
}

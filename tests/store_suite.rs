//! The store test suite: the rules of `JobStore` (see `src/store/mod.rs`),
//! written once, generic over the store, and run here against `MemoryStore`.
//!
//! The generic part lives in `tests/suite/mod.rs`, which other stores reuse.
//! The `MemoryStore`-specific tests here drive tokio's paused clock, which
//! `MemoryStore` uses for expiry.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use tower_accepted::{
    Cancel, JobError, JobId, JobRecord, JobStatus, JobStore, Lookup, MemoryStore, Outcome, StoreError, StoredResponse,
};

mod suite;

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
    Outcome::Response(StoredResponse::new(
        StatusCode::OK,
        headers,
        Bytes::from_static(body.as_bytes()),
    ))
}

async fn finished(store: &MemoryStore) -> JobId {
    let id = suite::running(store).await;
    assert!(store.finish(id, ok_response("done")).await.unwrap());
    id
}

#[tokio::test(start_paused = true)]
async fn finished_jobs_expire_after_the_ttl() {
    let store = store(100);
    let id = finished(&store).await;
    let failed = suite::running(&store).await;
    let error = JobError::new(JobError::PANICKED, "boom");
    assert!(store.finish(failed, Outcome::Failed(error)).await.unwrap());
    assert_eq!(store.len(), 2);

    tokio::time::advance(TTL - TICK).await;
    assert_eq!(suite::found(&store, id).await.status, JobStatus::Succeeded);
    assert_eq!(store.response(id).await.unwrap().unwrap().body, "done");
    assert_eq!(suite::found(&store, failed).await.status, JobStatus::Failed);
    assert_eq!(store.len(), 2);

    tokio::time::advance(2 * TICK).await;
    assert_eq!(store.get(id).await.unwrap(), Lookup::Expired);
    assert_eq!(store.response(id).await.unwrap(), None);
    assert_eq!(store.cancel(id).await.unwrap(), Cancel::Expired);
    assert_eq!(store.get(failed).await.unwrap(), Lookup::Expired);
    assert!(!store.finish(id, ok_response("late")).await.unwrap());
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
    assert!(store.finish(id, ok_response("slow")).await.unwrap());
    tokio::time::advance(TTL / 2).await;
    assert_eq!(suite::found(&store, id).await.status, JobStatus::Succeeded);
    assert_eq!(store.response(id).await.unwrap().unwrap().body, "slow");
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
    assert_eq!(store.response(id).await.unwrap(), None);
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
            Lookup::Found(record) => panic!("{id} should have expired: {record:?}"),
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
    let store = store(3);
    let a = suite::pending(&store).await;
    let b = suite::running(&store).await;
    let c = finished(&store).await;
    assert_eq!(store.len(), 3);

    let refused = JobId::new();
    let error = store.create(JobRecord::pending(refused)).await.unwrap_err();
    assert!(matches!(error, StoreError::Full), "{error:?}");
    assert_eq!(error.to_string(), "the job store is full");
    assert_eq!(
        store.get(refused).await.unwrap(),
        Lookup::Unknown,
        "no half-created job"
    );
    assert_eq!(store.len(), 3);

    // A finished job holds its slot until it expires.
    tokio::time::advance(TTL - TICK).await;
    assert!(matches!(
        store.create(JobRecord::pending(JobId::new())).await,
        Err(StoreError::Full)
    ));
    assert_eq!(store.len(), 3);

    // Once it expires, create makes room itself (no purge call).
    tokio::time::advance(2 * TICK).await;
    let d = JobId::new();
    store
        .create(JobRecord::pending(d))
        .await
        .expect("room once a job expired");
    assert_eq!(store.len(), 3);
    assert_eq!(store.get(c).await.unwrap(), Lookup::Expired);
    assert!(matches!(
        store.create(JobRecord::pending(JobId::new())).await,
        Err(StoreError::Full)
    ));

    // Deleting makes room at once.
    assert!(store.delete(a).await.unwrap());
    store
        .create(JobRecord::pending(JobId::new()))
        .await
        .expect("room after a delete");
    assert_eq!(store.len(), 3);
    assert_eq!(suite::found(&store, b).await.status, JobStatus::Running);
    assert_eq!(suite::found(&store, d).await.status, JobStatus::Pending);
}

#[tokio::test(start_paused = true)]
async fn purge_expired_releases_slots() {
    let store = store(50);
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(finished(&store).await);
    }
    assert_eq!(store.len(), 50);
    assert!(matches!(
        store.create(JobRecord::pending(JobId::new())).await,
        Err(StoreError::Full)
    ));
    tokio::time::advance(TTL + TICK).await;
    store.purge_expired();
    assert_eq!(store.len(), 0);
    assert!(store.is_empty());
    for _ in 0..50 {
        suite::pending(&store).await;
    }
    assert_eq!(store.len(), 50);
    assert_eq!(remembered(&store, &ids).await, 50);
}

#[tokio::test(start_paused = true)]
async fn pending_and_running_jobs_never_expire() {
    let store = store(100);
    let pending = suite::pending(&store).await;
    let running = suite::running(&store).await;
    store
        .set_progress(running, Some(0.5), Some("half".into()))
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

    assert!(store.start(ids[0]).await.unwrap());
    store.set_progress(ids[0], Some(0.1), None).await.unwrap();
    assert!(store.finish(ids[1], ok_response("one")).await.unwrap());
    assert_eq!(store.cancel(ids[2]).await.unwrap(), Cancel::Canceled);
    assert_eq!(store.len(), 6, "ended jobs count until they expire");

    assert!(store.delete(ids[3]).await.unwrap());
    assert_eq!(store.len(), 5);
    assert!(!store.delete(ids[3]).await.unwrap());
    assert_eq!(store.len(), 5, "a second delete changes nothing");
    assert!(store.delete(ids[1]).await.unwrap());
    assert_eq!(store.len(), 4, "deleting a finished job frees it at once");

    // Refused creates and repeated operations do not count.
    assert!(!store.finish(ids[2], ok_response("late")).await.unwrap());
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

    assert!(store.finish(ids[0], ok_response("zero")).await.unwrap());
    assert!(store.finish(ids[4], ok_response("four")).await.unwrap());
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
        assert!(store.start(id).await.unwrap());
        let outcome = Outcome::Response(StoredResponse::new(StatusCode::OK, HeaderMap::new(), body.clone()));
        assert!(store.finish(id, outcome).await.unwrap());
        ids.push(id);
    }
    assert_eq!(store.len(), JOBS);
    assert!(matches!(
        store.create(JobRecord::pending(JobId::new())).await,
        Err(StoreError::Full)
    ));

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
        assert_eq!(store.response(id).await.unwrap(), None);
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

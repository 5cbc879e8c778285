//! The checks of durable queues: a queued job is claimed once, oldest
//! first, with its request; ended jobs are passed by; a released job waits
//! again for its next attempt; a keyed durable create creates once.

use super::claims::{assert_empty, assert_same_request, claim, durable, fresh_queue, ok, sample_request};
use super::{found, running};
use crate::store::{
    Cancel, Claim, CreatedOnce, DurableJob, IdempotencyKey, JobId, JobRecord, JobStatus, JobStore, Lookup, unix_ms,
};

/// A queued durable job waits `pending` at attempt 0, which runs nothing;
/// `claim_next` hands it out once, as attempt 1 with its request as it was
/// given; queues are apart.
pub async fn queued_job_is_claimed_once_with_its_request<St: JobStore>(store: &St) {
    let queue = fresh_queue("queued");
    let other = fresh_queue("other");
    let id = durable(store, &queue, true).await;
    let waiting = found(store, id).await;
    assert_eq!(waiting.status, JobStatus::Pending);
    assert_eq!(waiting.attempt, 0, "a queued job waits at attempt 0");
    assert_eq!(waiting.started_at_ms, None);
    assert!(
        !store.start(Claim::first(id)).await.expect("start"),
        "a queued job is not run before it is claimed"
    );
    // Attempt 0 is the job's while it waits, but no claim (claims count
    // from 1): nothing written with it runs or changes the job.
    let unclaimed = Claim::new(id, 0);
    assert!(
        !store.start(unclaimed).await.expect("start"),
        "attempt 0 does not start a waiting job"
    );
    assert!(
        !store
            .set_progress(unclaimed, Some(0.5), Some("early".into()))
            .await
            .expect("set_progress"),
        "attempt 0 reports no progress"
    );
    assert!(
        !store.finish(unclaimed, ok("early")).await.expect("finish"),
        "attempt 0 does not finish a waiting job"
    );
    assert_eq!(
        store.renew(vec![unclaimed]).await.expect("renew"),
        [false],
        "nobody holds a waiting job"
    );
    assert!(
        !store.release(unclaimed).await.expect("release"),
        "attempt 0 releases nothing"
    );
    assert_eq!(found(store, id).await, waiting, "refused writes change nothing");
    assert_empty(store, &other, "another queue").await;

    let claimed = claim(store, &queue).await;
    assert_eq!(claimed.claim, Claim::new(id, 1), "the first claim is attempt 1");
    assert_eq!(claimed.record.id, id);
    assert_eq!(claimed.record.status, JobStatus::Pending, "claimed, not yet started");
    assert_eq!(claimed.record.attempt, 1);
    assert_same_request(&claimed.request, &sample_request());
    assert_eq!(found(store, id).await.attempt, 1, "the record shows the claim");
    assert_empty(store, &queue, "a job is handed out once").await;

    // The other queue's jobs are its own.
    let elsewhere = durable(store, &other, true).await;
    assert_empty(store, &queue, "a job of another queue").await;
    assert_eq!(claim(store, &other).await.claim, Claim::new(elsewhere, 1));
    assert_empty(store, &other, "a job is handed out once").await;

    // The claim runs the job.
    assert!(store.start(claimed.claim).await.expect("start"));
    assert_eq!(found(store, id).await.status, JobStatus::Running);
    assert!(store.finish(claimed.claim, ok("done")).await.expect("finish"));
    assert_eq!(found(store, id).await.status, JobStatus::Succeeded);
    assert_empty(store, &queue, "an ended job").await;
}

/// `claim_next` takes the oldest job of a queue first, by creation time,
/// whatever the order they were added in.
pub async fn claims_take_the_oldest_first<St: JobStore>(store: &St) {
    let queue = fresh_queue("oldest");
    let now = unix_ms();
    let (oldest, middle, newest) = (JobId::new(), JobId::new(), JobId::new());
    // Added in another order than their age.
    for (id, age_ms) in [(middle, 2_000), (newest, 1_000), (oldest, 3_000)] {
        let created_at_ms = now - age_ms;
        let record = JobRecord::new(id, JobStatus::Pending, created_at_ms, created_at_ms);
        let created = store
            .create_durable(record, DurableJob::new(sample_request(), &queue).queued(true), None)
            .await
            .expect("create_durable");
        assert_eq!(created, CreatedOnce::New);
    }
    for (expected, which) in [(oldest, "oldest"), (middle, "middle"), (newest, "newest")] {
        let claimed = claim(store, &queue).await;
        assert_eq!(
            claimed.claim,
            Claim::new(expected, 1),
            "the {which} job should come next"
        );
    }
    assert_empty(store, &queue, "every job was claimed").await;
}

/// A queued job canceled or deleted before it is claimed is never handed
/// out; the jobs behind it still are.
pub async fn ended_queued_jobs_are_never_claimed<St: JobStore>(store: &St) {
    let queue = fresh_queue("ended");
    let canceled = durable(store, &queue, true).await;
    let deleted = durable(store, &queue, true).await;
    let live = durable(store, &queue, true).await;
    assert_eq!(store.cancel(canceled).await.expect("cancel"), Cancel::Canceled);
    assert!(store.delete(deleted).await.expect("delete"));

    let claimed = claim(store, &queue).await;
    assert_eq!(claimed.claim, Claim::new(live, 1), "only the live job is handed out");
    assert_empty(store, &queue, "the ended jobs stay out").await;

    let record = found(store, canceled).await;
    assert_eq!(record.status, JobStatus::Canceled, "a canceled job stays canceled");
    assert_eq!(record.attempt, 0, "and was never claimed");
    assert_eq!(store.get(deleted).await.expect("get"), Lookup::Unknown);
}

/// `release` hands a claimed durable job back to its queue, `pending`
/// again, to be claimed as the next attempt; the released attempt is
/// fenced off from then on. A job that is not durable, ended, or claimed by
/// another attempt is not released.
pub async fn release_requeues_a_durable_job_for_the_next_attempt<St: JobStore>(store: &St) {
    let queue = fresh_queue("release");
    let id = durable(store, &queue, true).await;
    let first = claim(store, &queue).await.claim;
    assert_eq!(first, Claim::new(id, 1));
    assert!(store.start(first).await.expect("start"));
    assert!(
        store
            .set_progress(first, Some(0.25), Some("a quarter".into()))
            .await
            .expect("set_progress")
    );
    assert!(
        !store.release(Claim::new(id, 2)).await.expect("release"),
        "an attempt the job never had releases nothing"
    );
    assert_eq!(found(store, id).await.status, JobStatus::Running);
    assert!(store.release(first).await.expect("release"), "the holder releases it");
    let released = found(store, id).await;
    assert_eq!(released.status, JobStatus::Pending, "a released job waits again");
    assert_eq!(released.attempt, 1, "the attempt it made still counts");
    assert_eq!(released.started_at_ms, None, "a waiting job has not started");
    // A released claim holds nothing, even before anyone claims the job
    // again: a retried release, a late start, progress or end change
    // nothing (and the job does not wait in its queue twice).
    assert!(!store.release(first).await.expect("release"), "released once");
    assert!(
        !store.start(first).await.expect("start"),
        "a released attempt starts nothing"
    );
    assert!(!store.finish(first, ok("late")).await.expect("finish"), "nor ends it");
    assert_eq!(store.renew(vec![first]).await.expect("renew"), [false]);
    assert_eq!(found(store, id).await.status, JobStatus::Pending);

    let second = claim(store, &queue).await;
    assert_eq!(second.claim, Claim::new(id, 2), "the next claim is attempt 2");
    assert_eq!(second.record.attempt, 2);
    assert_same_request(&second.request, &sample_request());
    assert_empty(store, &queue, "a released job is queued once").await;

    // The released attempt is fenced off.
    assert!(!store.start(first).await.expect("start"), "attempt 1 is stale");
    assert!(
        !store
            .set_progress(first, Some(0.9), Some("stale".into()))
            .await
            .expect("set_progress")
    );
    assert!(!store.finish(first, ok("stale")).await.expect("finish"));
    assert_eq!(
        store.renew(vec![first, second.claim]).await.expect("renew"),
        [false, true]
    );
    assert!(!store.release(first).await.expect("release"));
    let record = found(store, id).await;
    assert_eq!(record.status, JobStatus::Pending, "the stale writes changed nothing");
    assert_eq!(record.attempt, 2);
    assert!(store.response(id).await.expect("response").is_none());

    assert!(store.start(second.claim).await.expect("start"));
    assert!(store.finish(second.claim, ok("done")).await.expect("finish"));
    let ended = found(store, id).await;
    assert_eq!(ended.status, JobStatus::Succeeded);
    assert_eq!(ended.attempt, 2);
    assert!(
        !store.release(second.claim).await.expect("release"),
        "an ended job is not released"
    );
    assert_eq!(found(store, id).await, ended);
    assert_empty(store, &queue, "an ended job is not requeued").await;

    // A durable job its creator ran at once goes to its queue too.
    let at_once = durable(store, &queue, false).await;
    assert!(store.start(Claim::first(at_once)).await.expect("start"));
    assert!(store.release(Claim::first(at_once)).await.expect("release"));
    assert_eq!(found(store, at_once).await.status, JobStatus::Pending);
    assert_eq!(claim(store, &queue).await.claim, Claim::new(at_once, 2));

    // A job that is not durable has no queue to go back to.
    let plain = running(store).await;
    let before = found(store, plain).await;
    assert!(
        !store.release(Claim::first(plain)).await.expect("release"),
        "a job that is not durable is not released"
    );
    assert_eq!(found(store, plain).await, before, "and nothing changed");
}

/// `create_durable` with an idempotency key creates once: the same key and
/// request again gives the existing job, another request `Mismatch`, and
/// the queue holds the job once.
pub async fn create_durable_with_a_key_creates_once<St: JobStore>(store: &St) {
    let queue = fresh_queue("keyed");
    let scope = JobId::new().to_string();
    let key = IdempotencyKey::new(Some(&scope), "order-7", "fingerprint-a");
    let make = |id| {
        (
            JobRecord::pending(id),
            DurableJob::new(sample_request(), &queue).queued(true),
        )
    };

    let id = JobId::new();
    let (record, job) = make(id);
    let created = store
        .create_durable(record, job, Some(key.clone()))
        .await
        .expect("create_durable");
    assert_eq!(created, CreatedOnce::New);

    let again = JobId::new();
    let (record, job) = make(again);
    match store
        .create_durable(record, job, Some(key.clone()))
        .await
        .expect("create_durable")
    {
        CreatedOnce::Existing(existing) => {
            assert_eq!(existing.id, id, "the key's holder is the first job");
            assert_eq!(existing.status, JobStatus::Pending);
        }
        other => panic!("the same key and request should find the first job, the store says {other:?}"),
    }
    let mismatched = JobId::new();
    let (record, job) = make(mismatched);
    let other_request = IdempotencyKey::new(Some(&scope), "order-7", "fingerprint-b");
    assert_eq!(
        store
            .create_durable(record, job, Some(other_request))
            .await
            .expect("create_durable"),
        CreatedOnce::Mismatch
    );
    for loser in [again, mismatched] {
        assert_eq!(
            store.get(loser).await.expect("get"),
            Lookup::Unknown,
            "a create that lost its key adds nothing"
        );
    }

    assert_eq!(claim(store, &queue).await.claim, Claim::new(id, 1));
    assert_empty(store, &queue, "the queue holds the job once").await;
}

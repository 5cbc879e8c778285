//! The checks of execution: claims fence every write, durable jobs wait in
//! their queues and are claimed oldest first, leases are renewed and
//! released, and a sweep leaves held leases alone. None of them sleeps or
//! lets a lease lapse: what a store does with a lapsed lease is its own
//! test's business.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode};

use super::{assert_same_response, found, pending, running, sample_response, stored_response};
use crate::store::{
    Cancel, Claim, Claimed, CreatedOnce, DurableJob, IdempotencyKey, JobId, JobRecord, JobStatus, JobStore, Lookup,
    Outcome, unix_ms,
};

/// A queue name no other check (nor another run on the same store) uses.
fn fresh_queue(what: &str) -> String {
    format!("suite-{what}-{}", JobId::new())
}

/// A request as a durable job keeps it: a method, a URI with a query,
/// repeated headers, a header value that is not UTF-8, and a body that is
/// not UTF-8 either.
fn sample_request() -> Request<Bytes> {
    let mut request = Request::put("/reports/42?format=pdf&lang=fr")
        .body(Bytes::from_static(b"{\"pages\":4}\x00\xff\xfe"))
        .expect("a request");
    let headers = request.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.append("x-multi", HeaderValue::from_static("first"));
    headers.append("x-multi", HeaderValue::from_static("second"));
    headers.insert(
        "x-opaque",
        HeaderValue::from_bytes(b"caf\xe9").expect("header value bytes"),
    );
    request
}

/// Asserts that `actual` is `expected`: method, URI, every header value in
/// order, every body byte.
fn assert_same_request(actual: &Request<Bytes>, expected: &Request<Bytes>) {
    assert_eq!(actual.method(), expected.method());
    assert_eq!(actual.uri(), expected.uri());
    assert_eq!(
        actual.headers().len(),
        expected.headers().len(),
        "{:?}",
        actual.headers()
    );
    for name in expected.headers().keys() {
        let values = |headers: &HeaderMap| -> Vec<Vec<u8>> {
            headers.get_all(name).iter().map(|v| v.as_bytes().to_vec()).collect()
        };
        assert_eq!(values(actual.headers()), values(expected.headers()), "header {name}");
    }
    assert!(actual.body() == expected.body(), "the body differs");
}

/// Adds a durable job (`queued` or not) in `queue`, with no key; returns
/// its id.
async fn durable<St: JobStore>(store: &St, queue: &str, queued: bool) -> JobId {
    let id = JobId::new();
    let created = store
        .create_durable(
            JobRecord::pending(id),
            DurableJob::new(sample_request(), queue).queued(queued),
            None,
        )
        .await
        .expect("create_durable");
    assert_eq!(created, CreatedOnce::New, "a durable job without a key is new");
    id
}

/// Takes the next job of `queue`, which must hold one.
async fn claim<St: JobStore>(store: &St, queue: &str) -> Claimed {
    store
        .claim_next(queue)
        .await
        .expect("claim_next")
        .unwrap_or_else(|| panic!("queue {queue} should hold a job"))
}

/// Asserts that `queue` holds nothing to claim.
async fn assert_empty<St: JobStore>(store: &St, queue: &str, why: &str) {
    let next = store.claim_next(queue).await.expect("claim_next");
    assert!(
        next.is_none(),
        "{why}: queue {queue} handed out {:?}",
        next.map(|c| c.claim)
    );
}

fn ok(body: &'static str) -> Outcome {
    Outcome::Response(stored_response(StatusCode::OK, HeaderMap::new(), Bytes::from(body)))
}

/// A claim fences every write: the creator's attempt 1 starts, reports
/// progress and finishes a job; an attempt the job never had changes
/// nothing and is answered `false`.
pub async fn claims_fence_start_progress_and_finish<St: JobStore>(store: &St) {
    let id = pending(store).await;
    assert_eq!(found(store, id).await.attempt, 1, "a created job is at attempt 1");
    let stale = Claim::new(id, 2);
    let never = Claim::new(id, 0);

    let before = found(store, id).await;
    assert!(
        !store.start(stale).await.expect("start"),
        "attempt 2 of a job at attempt 1 does not start it"
    );
    assert!(
        !store.start(never).await.expect("start"),
        "attempt 0 of a job at attempt 1 does not start it"
    );
    assert_eq!(found(store, id).await, before, "a refused start changes nothing");
    assert!(store.start(Claim::first(id)).await.expect("start"), "attempt 1 starts");
    let started = found(store, id).await;
    assert_eq!(started.status, JobStatus::Running);
    assert_eq!(started.attempt, 1);

    assert!(
        !store
            .set_progress(stale, Some(0.9), Some("stale".into()))
            .await
            .expect("set_progress"),
        "attempt 2 reports no progress"
    );
    assert_eq!(found(store, id).await, started, "a refused report changes nothing");
    assert!(
        store
            .set_progress(Claim::first(id), Some(0.5), Some("half".into()))
            .await
            .expect("set_progress"),
        "attempt 1 reports progress"
    );
    let progressed = found(store, id).await;
    assert_eq!(progressed.progress, Some(0.5));
    assert_eq!(progressed.message.as_deref(), Some("half"));

    assert!(
        !store.finish(stale, ok("stale")).await.expect("finish"),
        "attempt 2 does not finish the job"
    );
    assert_eq!(found(store, id).await, progressed, "a refused finish changes nothing");
    assert!(
        store.response(id).await.expect("response").is_none(),
        "a refused finish stores no response"
    );

    let response = sample_response(StatusCode::OK);
    assert!(
        store
            .finish(Claim::first(id), Outcome::Response(response.clone()))
            .await
            .expect("finish"),
        "attempt 1 finishes the job"
    );
    let ended = found(store, id).await;
    assert_eq!(ended.status, JobStatus::Succeeded);
    assert_eq!(ended.attempt, 1);
    assert_same_response(&store.response(id).await.expect("response").expect("kept"), &response);
}

/// A durable job that is not queued is its creator's attempt 1: it runs
/// like a created job, and no queue hands it out.
pub async fn durable_job_not_queued_runs_as_attempt_one<St: JobStore>(store: &St) {
    let queue = fresh_queue("at-once");
    let id = durable(store, &queue, false).await;
    let record = found(store, id).await;
    assert_eq!(record.status, JobStatus::Pending);
    assert_eq!(record.attempt, 1, "the creator holds attempt 1");
    assert_empty(store, &queue, "a job that is not queued").await;

    assert!(
        !store.start(Claim::new(id, 2)).await.expect("start"),
        "an attempt the job never had does not start it"
    );
    assert!(store.start(Claim::first(id)).await.expect("start"), "attempt 1 starts");
    assert!(
        store
            .set_progress(Claim::first(id), Some(0.5), None)
            .await
            .expect("set_progress")
    );
    assert!(store.finish(Claim::first(id), ok("done")).await.expect("finish"));
    let ended = found(store, id).await;
    assert_eq!(ended.status, JobStatus::Succeeded);
    assert_eq!(ended.attempt, 1);
    assert_eq!(ended.progress, Some(0.5));
    assert_empty(store, &queue, "an ended job").await;
}

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

/// `renew` answers, claim by claim and in order, whether each is still
/// held: `true` for the current attempt of a job that has not ended,
/// `false` for a stale attempt, an ended job or an unknown one.
pub async fn renew_answers_claim_by_claim<St: JobStore>(store: &St) {
    assert_eq!(store.renew(Vec::new()).await.expect("renew"), Vec::<bool>::new());

    let queue = fresh_queue("renew");
    let created = running(store).await;
    let at_once = durable(store, &queue, false).await;
    let queued = durable(store, &queue, true).await;
    let claimed = claim(store, &queue).await;
    assert_eq!(claimed.claim, Claim::new(queued, 1));
    let ended = running(store).await;
    assert!(store.finish(Claim::first(ended), ok("done")).await.expect("finish"));

    let claims = vec![
        Claim::first(created),
        Claim::first(at_once),
        claimed.claim,
        Claim::new(created, 2),
        Claim::first(ended),
        Claim::first(JobId::new()),
    ];
    assert_eq!(
        store.renew(claims).await.expect("renew"),
        [true, true, true, false, false, false],
        "held, held, held, stale attempt, ended, unknown"
    );

    // Once it ends, a held claim is not held any more.
    assert!(store.finish(claimed.claim, ok("done")).await.expect("finish"));
    assert_eq!(
        store
            .renew(vec![claimed.claim, Claim::first(created)])
            .await
            .expect("renew"),
        [false, true]
    );
    assert_eq!(
        found(store, created).await.status,
        JobStatus::Running,
        "renewing changes no job"
    );
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
    // Released again before anyone claims it (a retried release): the
    // contract leaves the answer open (attempt 1 is still the job's), but
    // the job must not wait in its queue twice, or a second claim would
    // take it from the first.
    store.release(first).await.expect("release");
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

/// `sweep` never touches a job whose lease is held: right after their
/// claims, it neither requeues nor ends them.
pub async fn sweep_leaves_held_claims_alone<St: JobStore>(store: &St) {
    let queue = fresh_queue("sweep");
    let created = running(store).await;
    let waiting = pending(store).await;
    let at_once = durable(store, &queue, false).await;
    assert!(store.start(Claim::first(at_once)).await.expect("start"));
    let queued = durable(store, &queue, true).await;
    let claimed = claim(store, &queue).await.claim;
    let unclaimed = durable(store, &queue, true).await;
    let ids = [created, waiting, at_once, queued, unclaimed];
    let mut before = Vec::new();
    for id in ids {
        before.push(found(store, id).await);
    }

    // Other checks' jobs may share the store (and lapse): only these are
    // looked at.
    store.sweep().await.expect("sweep");
    store.sweep().await.expect("sweep");
    for (id, record) in ids.iter().zip(&before) {
        assert_eq!(&found(store, *id).await, record, "the sweep changed job {id}");
    }
    assert_eq!(
        store
            .renew(vec![Claim::first(created), Claim::first(at_once), claimed])
            .await
            .expect("renew"),
        [true, true, true],
        "the claims are still held"
    );
    assert_eq!(
        claim(store, &queue).await.claim,
        Claim::new(unclaimed, 1),
        "only the job that waited is in the queue"
    );
    assert_empty(store, &queue, "the sweep requeued nothing").await;
}

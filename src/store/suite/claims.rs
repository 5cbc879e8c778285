//! The checks of execution: claims fence every write, durable jobs wait in
//! their queues and are claimed oldest first, leases are renewed and
//! released, and a sweep leaves held leases alone. None of them sleeps or
//! lets a lease lapse: what a store does with a lapsed lease is its own
//! test's business.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode};

use super::{assert_same_headers, assert_same_response, found, pending, running, sample_response, stored_response};
use crate::store::{Claim, Claimed, CreatedOnce, DurableJob, JobId, JobRecord, JobStatus, JobStore, Outcome};

/// A queue name no other check (nor another run on the same store) uses.
pub(super) fn fresh_queue(what: &str) -> String {
    format!("suite-{what}-{}", JobId::new())
}

/// A request as a durable job keeps it: a method, a URI with a query,
/// repeated headers, a header value that is not UTF-8, and a body that is
/// not UTF-8 either.
pub(super) fn sample_request() -> Request<Bytes> {
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
pub(super) fn assert_same_request(actual: &Request<Bytes>, expected: &Request<Bytes>) {
    assert_eq!(actual.method(), expected.method());
    assert_eq!(actual.uri(), expected.uri());
    assert_same_headers(actual.headers(), expected.headers());
    assert!(actual.body() == expected.body(), "the body differs");
}

/// Adds a durable job (`queued` or not) in `queue`, with no key; returns
/// its id.
pub(super) async fn durable<St: JobStore>(store: &St, queue: &str, queued: bool) -> JobId {
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
pub(super) async fn claim<St: JobStore>(store: &St, queue: &str) -> Claimed {
    store
        .claim_next(queue)
        .await
        .expect("claim_next")
        .unwrap_or_else(|| panic!("queue {queue} should hold a job"))
}

/// Asserts that `queue` holds nothing to claim.
pub(super) async fn assert_empty<St: JobStore>(store: &St, queue: &str, why: &str) {
    let next = store.claim_next(queue).await.expect("claim_next");
    assert!(
        next.is_none(),
        "{why}: queue {queue} handed out {:?}",
        next.map(|c| c.claim)
    );
}

pub(super) fn ok(body: &'static str) -> Outcome {
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

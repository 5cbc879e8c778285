//! The checks of completion-callback deliveries: a job keeps its callback,
//! its end makes the delivery due (whichever way it ended), a claim holds
//! it, the claim's token fences the attempt recorded, and a pending
//! delivery keeps its job from expiring.
//!
//! Claims may take deliveries of other checks' jobs on a shared store
//! ([`run_all_on`](super::run_all_on)): each check looks only at its own.

use std::collections::HashSet;
use std::time::Duration;

use http::StatusCode;

use super::claims::{fresh_queue, sample_request};
use super::{found, sample_response, succeed};
use crate::store::{
    Claim, CreatedOnce, DeliveryAttempt, DeliveryState, DueDelivery, DurableJob, ErrorCode, IdempotencyKey,
    JobCallback, JobId, JobRecord, JobStatus, JobStore, Lookup, unix_ms,
};

/// How long the checks hold what they claim: short, since one check waits
/// for a hold to lapse.
pub const HOLD: Duration = Duration::from_millis(200);
/// How many deliveries a check claims at once: more than a shared store's
/// other checks leave due, so that its own are among them.
const MANY: usize = 1_000;

/// A callback as the layer creates a job with it.
fn callback() -> JobCallback {
    JobCallback::new(format!("https://hooks.example.com/{}?token=secret", JobId::new()))
}

/// A new pending job with a callback; returns its id and the callback.
async fn with_callback<St: JobStore>(store: &St) -> (JobId, JobCallback) {
    let (id, callback) = (JobId::new(), callback());
    let record = JobRecord::pending(id).with_callback(Some(callback.clone()));
    store.create(record).await.expect("create");
    (id, callback)
}

/// The deliveries of `ids` among those due now, each held for `hold`.
async fn claim_of<St: JobStore>(store: &St, ids: &[JobId], hold: Duration) -> Vec<DueDelivery> {
    let ids: HashSet<JobId> = ids.iter().copied().collect();
    let claimed = store.claim_deliveries(MANY, hold).await.expect("claim_deliveries");
    assert!(
        claimed.len() <= MANY,
        "{} deliveries for a limit of {MANY}",
        claimed.len()
    );
    claimed.into_iter().filter(|d| ids.contains(&d.record.id)).collect()
}

/// The one delivery of `id` due now, held for `hold`.
async fn claim_one<St: JobStore>(store: &St, id: JobId, hold: Duration) -> DueDelivery {
    let mut due = claim_of(store, &[id], hold).await;
    assert_eq!(due.len(), 1, "the delivery of {id} should be due once: {due:?}");
    due.remove(0)
}

/// Records the first attempt of each of `ids`' claimed deliveries as
/// delivered, which it must be allowed to.
async fn delivered<St: JobStore>(store: &St, ids: impl IntoIterator<Item = JobId>) {
    for id in ids {
        assert!(
            store
                .record_delivery(id, 0, DeliveryAttempt::Delivered)
                .await
                .expect("record")
        );
    }
}

/// The callback of `id` as `get` shows it.
async fn callback_of<St: JobStore>(store: &St, id: JobId) -> JobCallback {
    found(store, id).await.callback.expect("the job keeps its callback")
}

/// A job keeps the callback it was created with, through `create`,
/// `create_once` and `create_durable`, as `get` and `list` read it back; a
/// job created without one has none.
pub async fn callback_round_trips<St: JobStore>(store: &St) {
    let owner = format!("suite-owner-{}", JobId::new());
    let (plain, cb) = (JobId::new(), callback());
    let record = JobRecord::pending(plain)
        .with_owner(Some(owner.clone()))
        .with_callback(Some(cb.clone()));
    store.create(record).await.expect("create");
    assert_eq!(callback_of(store, plain).await, cb);

    let (keyed, keyed_cb) = (JobId::new(), callback());
    let key = IdempotencyKey::new(Some(&owner), &format!("k-{keyed}"), "fingerprint");
    let record = JobRecord::pending(keyed).with_callback(Some(keyed_cb.clone()));
    let created = store.create_once(record, key).await.expect("create_once");
    assert_eq!(created, CreatedOnce::New);
    assert_eq!(callback_of(store, keyed).await, keyed_cb);

    let (durable, durable_cb) = (JobId::new(), callback());
    let record = JobRecord::pending(durable).with_callback(Some(durable_cb.clone()));
    let job = DurableJob::new(sample_request(), fresh_queue("callback")).queued(true);
    store.create_durable(record, job, None).await.expect("create_durable");
    assert_eq!(callback_of(store, durable).await, durable_cb);

    let page = store.list(&owner, 10, None).await.expect("list");
    let listed: Vec<_> = page.jobs.iter().map(|r| (r.id, r.callback.clone())).collect();
    assert_eq!(listed, vec![(plain, Some(cb))], "list shows the callback");

    let none = super::pending(store).await;
    assert_eq!(found(store, none).await.callback, None);
}

/// A delivery is due once its job ended, at once, whether it finished or
/// was canceled, and not before: the claim carries the terminal record
/// with its callback and token 0. A job without a callback is never due.
pub async fn delivery_is_due_once_its_job_ends<St: JobStore>(store: &St) {
    let (finished, cb) = with_callback(store).await;
    let (canceled, _) = with_callback(store).await;
    let plain = super::pending(store).await;
    let all = [finished, canceled, plain];
    assert!(store.start(Claim::first(finished)).await.expect("start"));
    assert!(
        claim_of(store, &all, HOLD).await.is_empty(),
        "nothing is due before the jobs end"
    );

    let response = sample_response(StatusCode::OK);
    succeed(store, finished, &response).await;
    assert!(
        store
            .finish(Claim::first(plain), crate::store::Outcome::Response(response))
            .await
            .expect("finish")
    );
    let due = claim_one(store, finished, HOLD).await;
    assert_eq!(due.token, 0);
    assert_eq!(due.record.status, JobStatus::Succeeded);
    assert_eq!(due.record.callback.as_ref(), Some(&cb));
    assert_eq!(
        due.record,
        found(store, finished).await,
        "the claim gives the record as it is"
    );

    store.cancel(canceled).await.expect("cancel");
    let due = claim_one(store, canceled, HOLD).await;
    assert_eq!((due.record.status, due.token), (JobStatus::Canceled, 0));
    assert!(
        claim_of(store, &[plain], HOLD).await.is_empty(),
        "a job without a callback is never due"
    );
    delivered(store, [finished, canceled]).await;
}

/// A claimed delivery is held: a second claim meanwhile does not get it;
/// once the hold lapsed (by the store's clock) it is claimed again, with
/// the same token, since no attempt was recorded.
pub async fn delivery_claims_are_held<St: JobStore>(store: &St) {
    let (id, _) = with_callback(store).await;
    assert!(store.cancel(id).await.is_ok());
    let first = claim_one(store, id, HOLD).await;
    assert!(
        claim_of(store, &[id], HOLD).await.is_empty(),
        "a held delivery is not claimed again"
    );
    tokio::time::sleep(HOLD + HOLD / 2).await;
    let again = claim_one(store, id, HOLD).await;
    assert_eq!(again.token, first.token, "no attempt was recorded");
    assert!(
        store
            .record_delivery(id, again.token, DeliveryAttempt::Failed)
            .await
            .expect("record")
    );
}

/// [`record_delivery`](JobStore::record_delivery) records an attempt under
/// the current token only: a stale token, an ended delivery or a job gone
/// answer `false`; `RetryAt` in the past makes it due again with the next
/// token; `Delivered` ends it for good, as `get` shows; the record's
/// `updated_at_ms` never moves.
pub async fn record_delivery_is_fenced<St: JobStore>(store: &St) {
    let (id, _) = with_callback(store).await;
    store.cancel(id).await.expect("cancel");
    let ended = found(store, id).await;
    let due = claim_one(store, id, HOLD).await;
    assert!(
        !store
            .record_delivery(id, due.token + 1, DeliveryAttempt::Delivered)
            .await
            .expect("record")
    );
    let past = unix_ms().saturating_sub(60_000);
    assert!(
        store
            .record_delivery(id, due.token, DeliveryAttempt::RetryAt(past))
            .await
            .expect("record")
    );
    assert!(
        !store
            .record_delivery(id, due.token, DeliveryAttempt::Delivered)
            .await
            .expect("record"),
        "a token already recorded is stale"
    );
    let cb = callback_of(store, id).await;
    assert_eq!((cb.state, cb.attempts), (DeliveryState::Pending, 1));

    let again = claim_one(store, id, HOLD).await;
    assert_eq!(again.token, 1, "the next claim carries the attempts recorded");
    assert!(
        store
            .record_delivery(id, 1, DeliveryAttempt::Delivered)
            .await
            .expect("record")
    );
    let after = found(store, id).await;
    let cb = after.callback.clone().expect("callback");
    assert_eq!((cb.state, cb.attempts), (DeliveryState::Delivered, 2));
    assert_eq!(
        after.updated_at_ms, ended.updated_at_ms,
        "deliveries never touch the record"
    );
    assert_eq!(after.status, JobStatus::Canceled);
    assert!(
        !store
            .record_delivery(id, 2, DeliveryAttempt::Failed)
            .await
            .expect("record")
    );
    tokio::time::sleep(HOLD + HOLD / 2).await;
    assert!(
        claim_of(store, &[id], HOLD).await.is_empty(),
        "a delivered callback is never due"
    );

    assert!(
        !store
            .record_delivery(JobId::new(), 0, DeliveryAttempt::Delivered)
            .await
            .expect("record")
    );
}

/// A durable job that ends because it is out of attempts (claimed, handed
/// back, and claimed again past its attempts) has its delivery due, as
/// any other end.
pub async fn delivery_is_due_when_out_of_attempts<St: JobStore>(store: &St) {
    let (id, queue) = (JobId::new(), fresh_queue("callback-out"));
    let record = JobRecord::pending(id).with_callback(Some(callback()));
    let job = DurableJob::new(sample_request(), queue.clone())
        .with_max_attempts(1)
        .queued(true);
    store.create_durable(record, job, None).await.expect("create_durable");
    let claimed = store
        .claim_next(&queue)
        .await
        .expect("claim_next")
        .expect("a queued job");
    assert!(claim_of(store, &[id], HOLD).await.is_empty(), "not due while it runs");
    assert!(store.release(claimed.claim).await.expect("release"));
    assert!(store.claim_next(&queue).await.expect("claim_next").is_none());
    let due = claim_one(store, id, HOLD).await;
    assert_eq!(due.record.status, JobStatus::Failed);
    assert_eq!(due.record.error.map(|e| e.code), Some(ErrorCode::Lost));
    assert!(
        store
            .record_delivery(id, due.token, DeliveryAttempt::Delivered)
            .await
            .expect("record")
    );
}

/// Claims made at once take each due delivery exactly once: 20 ended jobs,
/// four concurrent claims, every delivery in exactly one of them.
pub async fn concurrent_claims_take_each_delivery_once<St: JobStore>(store: &St) {
    let mut ids = Vec::new();
    for _ in 0..20 {
        let (id, _) = with_callback(store).await;
        store.cancel(id).await.expect("cancel");
        ids.push(id);
    }
    let hold = Duration::from_secs(30);
    let (a, b, c, d) = tokio::join!(
        claim_of(store, &ids, hold),
        claim_of(store, &ids, hold),
        claim_of(store, &ids, hold),
        claim_of(store, &ids, hold),
    );
    let mut claimed: Vec<JobId> = [a, b, c, d].into_iter().flatten().map(|d| d.record.id).collect();
    claimed.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(claimed, expected, "each delivery is claimed exactly once");
    delivered(store, ids).await;
}

/// Deleting a job drops its delivery: it is never due, and recording an
/// attempt answers `false`.
pub async fn deleted_job_drops_its_delivery<St: JobStore>(store: &St) {
    let (id, _) = with_callback(store).await;
    store.cancel(id).await.expect("cancel");
    assert!(store.delete(id).await.expect("delete"));
    assert!(claim_of(store, &[id], HOLD).await.is_empty());
    assert!(
        !store
            .record_delivery(id, 0, DeliveryAttempt::Delivered)
            .await
            .expect("record")
    );
}

/// A pending delivery keeps its job: a claim and a `RetryAt` keep it at
/// least the store's time to live past them, where a job without a
/// callback, ended at the same time, expires; once delivered, it expires
/// as any other. The store must be built with `ttl`; waits are
/// `tokio::time::sleep`s (run it on a paused clock where the store's
/// clock is tokio's, as [`expiry`](super::expiry)).
pub async fn pending_delivery_keeps_its_job<St: JobStore>(store: &St, ttl: Duration) {
    let (id, _) = with_callback(store).await;
    let plain = super::pending(store).await;
    store.cancel(id).await.expect("cancel");
    store.cancel(plain).await.expect("cancel");
    let due = claim_one(store, id, ttl / 4).await;
    let retry_at = unix_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    assert!(
        store
            .record_delivery(id, due.token, DeliveryAttempt::RetryAt(retry_at))
            .await
            .expect("record")
    );

    tokio::time::sleep(ttl + ttl / 4 + Duration::from_millis(10)).await;
    assert_eq!(
        store.get(plain).await.expect("get"),
        Lookup::Expired,
        "a job without a callback expires"
    );
    let kept = found(store, id).await;
    assert_eq!(kept.callback.map(|c| c.state), Some(DeliveryState::Pending));

    tokio::time::sleep(ttl / 4).await;
    let again = claim_one(store, id, ttl / 4).await;
    assert!(
        store
            .record_delivery(id, again.token, DeliveryAttempt::Delivered)
            .await
            .expect("record")
    );
    assert_eq!(callback_of(store, id).await.state, DeliveryState::Delivered);

    tokio::time::sleep(2 * ttl + ttl / 2).await;
    assert_eq!(
        store.get(id).await.expect("get"),
        Lookup::Expired,
        "delivered, it expires"
    );
}

/// A job whose lease lapsed, ended `lost` by [`sweep`](JobStore::sweep),
/// has its delivery due. Run on a store whose [`lease`](JobStore::lease)
/// is short (it waits for one to lapse); on a store without leases, the
/// sweep finds nothing and the job stays running, its delivery not due.
pub async fn lost_job_delivery_is_due<St: JobStore>(store: &St) {
    let (id, _) = with_callback(store).await;
    assert!(store.start(Claim::first(id)).await.expect("start"));
    let Some(lease) = store.lease() else {
        assert_eq!(store.sweep().await.expect("sweep").lost, 0);
        assert_eq!(found(store, id).await.status, JobStatus::Running);
        assert!(claim_of(store, &[id], HOLD).await.is_empty());
        return;
    };
    tokio::time::sleep(lease + lease / 4 + Duration::from_millis(50)).await;
    assert!(
        store.sweep().await.expect("sweep").lost >= 1,
        "the lapsed lease is found"
    );
    let due = claim_one(store, id, HOLD).await;
    assert_eq!(due.record.status, JobStatus::Failed);
    assert_eq!(due.record.error.map(|e| e.code), Some(ErrorCode::Lost));
    assert!(
        store
            .record_delivery(id, due.token, DeliveryAttempt::Delivered)
            .await
            .expect("record")
    );
}

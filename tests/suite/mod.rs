//! The checks every `JobStore` must pass, generic over the store: the rules
//! of `src/store/mod.rs`, written once and run against every store
//! (`tests/store_suite.rs` for `MemoryStore`, `tests/redis_store.rs` for
//! `RedisStore`). Use it with `mod suite;` and `suite::run_all(make).await`.
#![allow(dead_code, unreachable_pub)]
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::task::JoinHandle;
use tower_accepted::{
    Cancel, JobError, JobId, JobRecord, JobStatus, JobStore, Lookup, Outcome, StoreError, StoredResponse,
};

/// How long a waiter is given to wake once its job ended: generous, as
/// a shared store may be a network hop away.
pub const WAKE_WITHIN: Duration = Duration::from_secs(5);
/// How long a waiter is watched to make sure it does not wake early.
pub const SETTLE: Duration = Duration::from_millis(100);

/// Runs every store-independent check, each on a fresh store from `make`.
pub async fn run_all<St: JobStore>(make: impl Fn() -> St) {
    create_get_round_trip(&make()).await;
    start_moves_pending_to_running_once(&make()).await;
    progress_is_visible_until_terminal(&make()).await;
    finish_stores_the_response_byte_for_byte(&make()).await;
    finish_with_error_status_is_failed(&make()).await;
    finish_without_response_is_failed(&make()).await;
    finish_twice_changes_nothing(&make()).await;
    cancel_answers_per_state(&make()).await;
    delete_removes_record_and_response(&make()).await;
    wait_terminal_resolves_at_once_when_ended_or_unknown(&make()).await;
    let store = Arc::new(make());
    wait_terminal_wakes_on_finish(&store).await;
    wait_terminal_wakes_on_cancel(&store).await;
    wait_terminal_wakes_on_delete(&store).await;
    many_waiters_all_wake(&store).await;
}

/// Runs every store-independent check on one store (for stores that are
/// costly to make, such as one connected to a server; each check uses
/// fresh ids).
pub async fn run_all_on<St: JobStore>(store: Arc<St>) {
    create_get_round_trip(&*store).await;
    start_moves_pending_to_running_once(&*store).await;
    progress_is_visible_until_terminal(&*store).await;
    finish_stores_the_response_byte_for_byte(&*store).await;
    finish_with_error_status_is_failed(&*store).await;
    finish_without_response_is_failed(&*store).await;
    finish_twice_changes_nothing(&*store).await;
    cancel_answers_per_state(&*store).await;
    delete_removes_record_and_response(&*store).await;
    wait_terminal_resolves_at_once_when_ended_or_unknown(&*store).await;
    wait_terminal_wakes_on_finish(&store).await;
    wait_terminal_wakes_on_cancel(&store).await;
    wait_terminal_wakes_on_delete(&store).await;
    many_waiters_all_wake(&store).await;
}

/// The record of `id`, which must be known.
pub async fn found<St: JobStore>(store: &St, id: JobId) -> JobRecord {
    match store.get(id).await.expect("get") {
        Lookup::Found(record) => record,
        other => panic!("job {id} should be known, the store says {other:?}"),
    }
}

/// A new pending job.
pub async fn pending<St: JobStore>(store: &St) -> JobId {
    let id = JobId::new();
    store.create(JobRecord::pending(id)).await.expect("create");
    id
}

/// A new running job.
pub async fn running<St: JobStore>(store: &St) -> JobId {
    let id = pending(store).await;
    assert!(store.start(id).await.expect("start"), "a pending job starts");
    id
}

/// A response with a status, repeated and binary-unsafe headers and a
/// body that is not UTF-8.
pub fn sample_response(status: StatusCode) -> StoredResponse {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/octet-stream"));
    headers.append("set-cookie", HeaderValue::from_static("a=1; Path=/"));
    headers.append("set-cookie", HeaderValue::from_static("b=2; HttpOnly"));
    headers.append("x-multi", HeaderValue::from_static("first"));
    headers.append("x-multi", HeaderValue::from_static("second"));
    headers.append("x-multi", HeaderValue::from_static("third"));
    headers.insert("x-opaque", HeaderValue::from_bytes(b"caf\xe9 \x80").unwrap());
    let mut body: Vec<u8> = (0..=255u8).collect();
    body.extend_from_slice(&[0, 0, 0xff, 0xfe, b'\r', b'\n', 0]);
    body.extend(std::iter::repeat_n(0xa5u8, 70_000));
    StoredResponse::new(status, headers, Bytes::from(body))
}

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a [u8]> {
    headers.get_all(name).iter().map(HeaderValue::as_bytes).collect()
}

/// Asserts that `actual` is `expected`: status, every header value in
/// order, every body byte.
pub fn assert_same_response(actual: &StoredResponse, expected: &StoredResponse) {
    assert_eq!(actual.status, expected.status);
    assert_eq!(actual.headers.len(), expected.headers.len(), "{:?}", actual.headers);
    for name in expected.headers.keys() {
        assert_eq!(
            values(&actual.headers, name.as_str()),
            values(&expected.headers, name.as_str()),
            "header {name}"
        );
    }
    assert_eq!(actual.body.len(), expected.body.len());
    assert!(actual.body == expected.body, "the body differs");
}

pub async fn create_get_round_trip<St: JobStore>(store: &St) {
    let id = JobId::new();
    let record = JobRecord::pending(id);
    store.create(record.clone()).await.expect("create");
    let got = found(store, id).await;
    assert_eq!(got, record);
    assert_eq!(got.status, JobStatus::Pending);
    assert_eq!(got.progress, None);
    assert_eq!(got.message, None);
    assert_eq!(got.result_status, None);
    assert_eq!(got.error, None);
    assert!(!got.has_response());

    // A record with everything filled in comes back as it went.
    let mut full = JobRecord::pending(JobId::new());
    full.status = JobStatus::Running;
    full.progress = Some(0.25);
    full.message = Some("rendering page 1 of 4 — ünïcödé".into());
    store.create(full.clone()).await.expect("create");
    assert_eq!(found(store, full.id).await, full);

    assert_eq!(store.get(JobId::new()).await.expect("get"), Lookup::Unknown);
    // Two jobs do not see each other.
    assert_eq!(found(store, id).await, record);
}

pub async fn start_moves_pending_to_running_once<St: JobStore>(store: &St) {
    let id = pending(store).await;
    let before = found(store, id).await;
    assert!(store.start(id).await.expect("start"));
    let after = found(store, id).await;
    assert_eq!(after.status, JobStatus::Running);
    assert_eq!(after.created_at_ms, before.created_at_ms);
    assert!(after.updated_at_ms >= before.updated_at_ms);

    assert!(
        !store.start(id).await.expect("start"),
        "a running job does not start again"
    );
    assert_eq!(found(store, id).await, after);

    let canceled = pending(store).await;
    assert_eq!(store.cancel(canceled).await.expect("cancel"), Cancel::Canceled);
    assert!(
        !store.start(canceled).await.expect("start"),
        "a canceled job does not start"
    );
    assert_eq!(found(store, canceled).await.status, JobStatus::Canceled);

    let finished = running(store).await;
    let outcome = Outcome::Response(StoredResponse::new(StatusCode::OK, HeaderMap::new(), Bytes::new()));
    assert!(store.finish(finished, outcome).await.expect("finish"));
    assert!(
        !store.start(finished).await.expect("start"),
        "a finished job does not start"
    );
    assert_eq!(found(store, finished).await.status, JobStatus::Succeeded);

    let unknown = JobId::new();
    assert!(
        !store.start(unknown).await.expect("start"),
        "an unknown job does not start"
    );
    assert_eq!(store.get(unknown).await.expect("get"), Lookup::Unknown);
}

pub async fn progress_is_visible_until_terminal<St: JobStore>(store: &St) {
    // While pending.
    let id = pending(store).await;
    store
        .set_progress(id, Some(0.0), Some("queued".into()))
        .await
        .expect("set_progress");
    let record = found(store, id).await;
    assert_eq!(record.status, JobStatus::Pending);
    assert_eq!(record.progress, Some(0.0));
    assert_eq!(record.message.as_deref(), Some("queued"));

    // While running, each report replaces the last.
    assert!(store.start(id).await.expect("start"));
    store
        .set_progress(id, Some(0.5), Some("page 2 of 4".into()))
        .await
        .expect("set_progress");
    let record = found(store, id).await;
    assert_eq!(record.status, JobStatus::Running);
    assert_eq!(record.progress, Some(0.5));
    assert_eq!(record.message.as_deref(), Some("page 2 of 4"));
    store
        .set_progress(id, Some(0.75), Some("page 3 of 4".into()))
        .await
        .expect("set_progress");
    let record = found(store, id).await;
    assert_eq!(record.progress, Some(0.75));
    assert_eq!(record.message.as_deref(), Some("page 3 of 4"));

    // Ended: reports are ignored, and progress and message stay.
    let outcome = Outcome::Response(StoredResponse::new(StatusCode::OK, HeaderMap::new(), Bytes::from("ok")));
    assert!(store.finish(id, outcome).await.expect("finish"));
    let ended = found(store, id).await;
    store
        .set_progress(id, Some(0.1), Some("late".into()))
        .await
        .expect("set_progress");
    let record = found(store, id).await;
    assert_eq!(record, ended);
    assert_eq!(record.status, JobStatus::Succeeded);
    assert_eq!(record.progress, Some(0.75));
    assert_eq!(record.message.as_deref(), Some("page 3 of 4"));

    // Canceled: ignored too.
    let canceled = running(store).await;
    assert_eq!(store.cancel(canceled).await.expect("cancel"), Cancel::Canceled);
    store
        .set_progress(canceled, Some(0.9), Some("late".into()))
        .await
        .expect("set_progress");
    let record = found(store, canceled).await;
    assert_eq!(record.status, JobStatus::Canceled);
    assert_eq!(record.progress, None);
    assert_eq!(record.message, None);

    // Unknown: nothing is created.
    let unknown = JobId::new();
    store
        .set_progress(unknown, Some(0.5), None)
        .await
        .expect("set_progress");
    assert_eq!(store.get(unknown).await.expect("get"), Lookup::Unknown);
}

pub async fn finish_stores_the_response_byte_for_byte<St: JobStore>(store: &St) {
    let id = running(store).await;
    assert_eq!(
        store.response(id).await.expect("response"),
        None,
        "no response while running"
    );
    let response = sample_response(StatusCode::CREATED);
    assert!(
        store
            .finish(id, Outcome::Response(response.clone()))
            .await
            .expect("finish")
    );

    let record = found(store, id).await;
    assert_eq!(record.status, JobStatus::Succeeded);
    assert_eq!(record.result_status, Some(201));
    assert_eq!(record.error, None);
    assert!(record.has_response());

    let stored = store.response(id).await.expect("response").expect("a stored response");
    assert_same_response(&stored, &response);
    // Reading it does not consume it.
    let again = store.response(id).await.expect("response").expect("a stored response");
    assert_same_response(&again, &response);

    // An empty body and no headers round-trip too.
    let empty_id = running(store).await;
    let empty = StoredResponse::new(StatusCode::NO_CONTENT, HeaderMap::new(), Bytes::new());
    assert!(
        store
            .finish(empty_id, Outcome::Response(empty.clone()))
            .await
            .expect("finish")
    );
    let stored = store
        .response(empty_id)
        .await
        .expect("response")
        .expect("a stored response");
    assert_same_response(&stored, &empty);
    assert_eq!(found(store, empty_id).await.result_status, Some(204));

    assert_eq!(store.response(JobId::new()).await.expect("response"), None);
}

pub async fn finish_with_error_status_is_failed<St: JobStore>(store: &St) {
    for status in [
        StatusCode::BAD_REQUEST,
        StatusCode::UNPROCESSABLE_ENTITY,
        StatusCode::INTERNAL_SERVER_ERROR,
    ] {
        let id = running(store).await;
        let response = sample_response(status);
        assert!(
            store
                .finish(id, Outcome::Response(response.clone()))
                .await
                .expect("finish")
        );
        let record = found(store, id).await;
        assert_eq!(record.status, JobStatus::Failed, "{status}");
        let error = record.error.as_ref().expect("an error");
        assert_eq!(error.code, JobError::HTTP_STATUS);
        assert_eq!(error.code, "http_status");
        assert_eq!(record.result_status, Some(status.as_u16()));
        assert!(record.has_response());
        let stored = store
            .response(id)
            .await
            .expect("response")
            .expect("the response is kept");
        assert_same_response(&stored, &response);
    }
    // 399 is still a success.
    let id = running(store).await;
    let status = StatusCode::from_u16(399).unwrap();
    let outcome = Outcome::Response(StoredResponse::new(status, HeaderMap::new(), Bytes::new()));
    assert!(store.finish(id, outcome).await.expect("finish"));
    let record = found(store, id).await;
    assert_eq!(record.status, JobStatus::Succeeded);
    assert_eq!(record.result_status, Some(399));
    assert_eq!(record.error, None);
}

pub async fn finish_without_response_is_failed<St: JobStore>(store: &St) {
    for code in [
        JobError::PANICKED,
        JobError::TIMEOUT,
        JobError::ERROR,
        JobError::LOST,
        "custom_code",
    ] {
        let id = running(store).await;
        let error = JobError::new(code, format!("it ended with {code}"));
        assert!(store.finish(id, Outcome::Failed(error.clone())).await.expect("finish"));
        let record = found(store, id).await;
        assert_eq!(record.status, JobStatus::Failed);
        assert_eq!(record.error, Some(error));
        assert_eq!(record.result_status, None);
        assert!(!record.has_response());
        assert_eq!(store.response(id).await.expect("response"), None);
    }
    // A pending job may end without running (a shutdown).
    let id = pending(store).await;
    let error = JobError::new(JobError::SHUTDOWN, "shut down");
    assert!(store.finish(id, Outcome::Failed(error.clone())).await.expect("finish"));
    assert_eq!(found(store, id).await.error, Some(error));
}

pub async fn finish_twice_changes_nothing<St: JobStore>(store: &St) {
    let id = running(store).await;
    let first = sample_response(StatusCode::OK);
    assert!(
        store
            .finish(id, Outcome::Response(first.clone()))
            .await
            .expect("finish")
    );
    let record = found(store, id).await;

    let second = StoredResponse::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        HeaderMap::new(),
        Bytes::from("second"),
    );
    assert!(!store.finish(id, Outcome::Response(second)).await.expect("finish"));
    let failed = JobError::new(JobError::TIMEOUT, "too late");
    assert!(!store.finish(id, Outcome::Failed(failed)).await.expect("finish"));
    assert_eq!(found(store, id).await, record);
    assert_eq!(found(store, id).await.status, JobStatus::Succeeded);
    let stored = store.response(id).await.expect("response").expect("the first response");
    assert_same_response(&stored, &first);

    // A failed job stays failed.
    let id = running(store).await;
    let error = JobError::new(JobError::PANICKED, "boom");
    assert!(store.finish(id, Outcome::Failed(error.clone())).await.expect("finish"));
    let record = found(store, id).await;
    let late = Outcome::Response(StoredResponse::new(
        StatusCode::OK,
        HeaderMap::new(),
        Bytes::from("late"),
    ));
    assert!(!store.finish(id, late).await.expect("finish"));
    assert_eq!(found(store, id).await, record);
    assert_eq!(store.response(id).await.expect("response"), None);

    // A canceled job stays canceled.
    let id = running(store).await;
    assert_eq!(store.cancel(id).await.expect("cancel"), Cancel::Canceled);
    let record = found(store, id).await;
    let late = Outcome::Response(StoredResponse::new(
        StatusCode::OK,
        HeaderMap::new(),
        Bytes::from("late"),
    ));
    assert!(!store.finish(id, late).await.expect("finish"));
    assert_eq!(found(store, id).await, record);
    assert_eq!(store.response(id).await.expect("response"), None);

    // An unknown job is not created by finishing it.
    let unknown = JobId::new();
    let outcome = Outcome::Response(StoredResponse::new(StatusCode::OK, HeaderMap::new(), Bytes::new()));
    assert!(!store.finish(unknown, outcome).await.expect("finish"));
    assert_eq!(store.get(unknown).await.expect("get"), Lookup::Unknown);
    assert_eq!(store.response(unknown).await.expect("response"), None);
}

pub async fn cancel_answers_per_state<St: JobStore>(store: &St) {
    let id = pending(store).await;
    assert_eq!(store.cancel(id).await.expect("cancel"), Cancel::Canceled);
    let record = found(store, id).await;
    assert_eq!(record.status, JobStatus::Canceled);
    assert_eq!(record.status.as_str(), "canceled");
    assert_eq!(record.result_status, None);
    assert_eq!(store.cancel(id).await.expect("cancel"), Cancel::AlreadyTerminal);
    assert_eq!(found(store, id).await, record);

    let id = running(store).await;
    assert_eq!(store.cancel(id).await.expect("cancel"), Cancel::Canceled);
    assert_eq!(found(store, id).await.status, JobStatus::Canceled);

    let id = running(store).await;
    let response = sample_response(StatusCode::OK);
    assert!(
        store
            .finish(id, Outcome::Response(response.clone()))
            .await
            .expect("finish")
    );
    let record = found(store, id).await;
    assert_eq!(store.cancel(id).await.expect("cancel"), Cancel::AlreadyTerminal);
    assert_eq!(found(store, id).await, record);
    assert_same_response(&store.response(id).await.expect("response").expect("kept"), &response);

    let id = running(store).await;
    let error = JobError::new(JobError::TIMEOUT, "slow");
    assert!(store.finish(id, Outcome::Failed(error)).await.expect("finish"));
    assert_eq!(store.cancel(id).await.expect("cancel"), Cancel::AlreadyTerminal);
    assert_eq!(found(store, id).await.status, JobStatus::Failed);

    let unknown = JobId::new();
    assert_eq!(store.cancel(unknown).await.expect("cancel"), Cancel::Unknown);
    assert_eq!(store.get(unknown).await.expect("get"), Lookup::Unknown);
}

pub async fn delete_removes_record_and_response<St: JobStore>(store: &St) {
    let id = running(store).await;
    assert!(
        store
            .finish(id, Outcome::Response(sample_response(StatusCode::OK)))
            .await
            .expect("finish")
    );
    assert!(store.delete(id).await.expect("delete"));
    assert_eq!(
        store.get(id).await.expect("get"),
        Lookup::Unknown,
        "a deleted job is unknown, not expired"
    );
    assert_eq!(store.response(id).await.expect("response"), None);
    assert_eq!(store.cancel(id).await.expect("cancel"), Cancel::Unknown);
    assert!(!store.delete(id).await.expect("delete"), "deleting twice finds nothing");

    let id = running(store).await;
    assert!(store.delete(id).await.expect("delete"));
    assert_eq!(store.get(id).await.expect("get"), Lookup::Unknown);
    // A late finish of a deleted job brings nothing back.
    let outcome = Outcome::Response(StoredResponse::new(
        StatusCode::OK,
        HeaderMap::new(),
        Bytes::from("late"),
    ));
    assert!(!store.finish(id, outcome).await.expect("finish"));
    assert_eq!(store.get(id).await.expect("get"), Lookup::Unknown);
    assert_eq!(store.response(id).await.expect("response"), None);

    let id = pending(store).await;
    let other = pending(store).await;
    assert!(store.delete(id).await.expect("delete"));
    assert_eq!(
        found(store, other).await.status,
        JobStatus::Pending,
        "only the one job goes"
    );

    assert!(!store.delete(JobId::new()).await.expect("delete"));
}

pub async fn wait_terminal_resolves_at_once_when_ended_or_unknown<St: JobStore>(store: &St) {
    let succeeded = running(store).await;
    let outcome = Outcome::Response(StoredResponse::new(StatusCode::OK, HeaderMap::new(), Bytes::new()));
    assert!(store.finish(succeeded, outcome).await.expect("finish"));
    let failed = running(store).await;
    let error = JobError::new(JobError::PANICKED, "boom");
    assert!(store.finish(failed, Outcome::Failed(error)).await.expect("finish"));
    let canceled = pending(store).await;
    assert_eq!(store.cancel(canceled).await.expect("cancel"), Cancel::Canceled);
    let deleted = pending(store).await;
    assert!(store.delete(deleted).await.expect("delete"));

    for id in [succeeded, failed, canceled, deleted, JobId::new()] {
        tokio::time::timeout(WAKE_WITHIN, store.wait_terminal(id))
            .await
            .unwrap_or_else(|_| panic!("wait_terminal({id}) did not resolve at once"))
            .expect("wait_terminal");
    }
}

/// A task waiting for `id` to end.
fn waiter<St: JobStore>(store: &Arc<St>, id: JobId) -> JoinHandle<Result<(), StoreError>> {
    let store = Arc::clone(store);
    tokio::spawn(async move { store.wait_terminal(id).await })
}

/// Asserts that `handle` has not resolved after a while.
async fn assert_still_waiting(handle: &JoinHandle<Result<(), StoreError>>, what: &str) {
    tokio::time::sleep(SETTLE).await;
    assert!(!handle.is_finished(), "the waiter resolved before {what}");
}

/// Asserts that `handle` resolves without error within `WAKE_WITHIN`.
async fn assert_wakes(handle: JoinHandle<Result<(), StoreError>>, what: &str) {
    tokio::time::timeout(WAKE_WITHIN, handle)
        .await
        .unwrap_or_else(|_| panic!("the waiter did not wake within {WAKE_WITHIN:?} of {what}"))
        .expect("the waiter task")
        .expect("wait_terminal");
}

pub async fn wait_terminal_wakes_on_finish<St: JobStore>(store: &Arc<St>) {
    // A pending job, then running, with progress on the way: only the
    // end wakes the waiter.
    let id = pending(&**store).await;
    let handle = waiter(store, id);
    assert_still_waiting(&handle, "the job started").await;
    assert!(store.start(id).await.expect("start"));
    store
        .set_progress(id, Some(0.5), Some("half".into()))
        .await
        .expect("set_progress");
    assert_still_waiting(&handle, "the job ended (start and progress do not wake it)").await;
    let outcome = Outcome::Response(StoredResponse::new(
        StatusCode::OK,
        HeaderMap::new(),
        Bytes::from("done"),
    ));
    assert!(store.finish(id, outcome).await.expect("finish"));
    assert_wakes(handle, "finish").await;

    // Finishing from another task.
    let id = running(&**store).await;
    let handle = waiter(store, id);
    assert_still_waiting(&handle, "the job ended").await;
    let other = Arc::clone(store);
    let finisher = tokio::spawn(async move {
        let error = JobError::new(JobError::ERROR, "failed");
        other.finish(id, Outcome::Failed(error)).await
    });
    assert!(finisher.await.expect("finisher").expect("finish"));
    assert_wakes(handle, "a failed finish").await;
}

pub async fn wait_terminal_wakes_on_cancel<St: JobStore>(store: &Arc<St>) {
    for start in [false, true] {
        let id = if start {
            running(&**store).await
        } else {
            pending(&**store).await
        };
        let handle = waiter(store, id);
        assert_still_waiting(&handle, "cancel").await;
        let other = Arc::clone(store);
        let canceler = tokio::spawn(async move { other.cancel(id).await });
        assert_eq!(canceler.await.expect("canceler").expect("cancel"), Cancel::Canceled);
        assert_wakes(handle, "cancel").await;
    }
}

pub async fn wait_terminal_wakes_on_delete<St: JobStore>(store: &Arc<St>) {
    let id = running(&**store).await;
    let handle = waiter(store, id);
    assert_still_waiting(&handle, "delete").await;
    let other = Arc::clone(store);
    let deleter = tokio::spawn(async move { other.delete(id).await });
    assert!(deleter.await.expect("deleter").expect("delete"));
    assert_wakes(handle, "delete").await;
}

pub async fn many_waiters_all_wake<St: JobStore>(store: &Arc<St>) {
    const WAITERS: usize = 200;
    let id = running(&**store).await;
    let other = running(&**store).await;
    let handles: Vec<_> = (0..WAITERS).map(|_| waiter(store, id)).collect();
    let bystander = waiter(store, other);
    tokio::time::sleep(SETTLE).await;
    let early = handles.iter().filter(|h| h.is_finished()).count();
    assert_eq!(early, 0, "waiters resolved before the job ended");

    let outcome = Outcome::Response(StoredResponse::new(StatusCode::OK, HeaderMap::new(), Bytes::new()));
    assert!(store.finish(id, outcome).await.expect("finish"));
    let all = futures_join(handles);
    let woken = tokio::time::timeout(WAKE_WITHIN, all)
        .await
        .unwrap_or_else(|_| panic!("not all {WAITERS} waiters woke within {WAKE_WITHIN:?}"));
    assert_eq!(woken, WAITERS);
    assert!(!bystander.is_finished(), "a waiter of another job woke");
    assert_eq!(store.cancel(other).await.expect("cancel"), Cancel::Canceled);
    assert_wakes(bystander, "cancel of its own job").await;
}

/// Awaits every handle; the number that resolved without error.
async fn futures_join(handles: Vec<JoinHandle<Result<(), StoreError>>>) -> usize {
    let mut ok = 0;
    for handle in handles {
        if matches!(handle.await, Ok(Ok(()))) {
            ok += 1;
        }
    }
    ok
}

/// Expiry as every store keeps it: a finished (or canceled) job is kept
/// for `ttl`, then reported `Expired` without its response, then,
/// `tombstone_ttl` later, `Unknown`; pending and running jobs stay.
/// The store must be built with these two durations; waits are
/// `tokio::time::sleep`s (instant under a paused clock).
pub async fn expiry<St: JobStore>(store: &St, ttl: Duration, tombstone_ttl: Duration) {
    let finished = running(store).await;
    let response = sample_response(StatusCode::OK);
    assert!(
        store
            .finish(finished, Outcome::Response(response.clone()))
            .await
            .expect("finish")
    );
    let canceled = running(store).await;
    assert_eq!(store.cancel(canceled).await.expect("cancel"), Cancel::Canceled);
    let still_pending = pending(store).await;
    let still_running = running(store).await;

    tokio::time::sleep(ttl / 2).await;
    assert_eq!(
        found(store, finished).await.status,
        JobStatus::Succeeded,
        "kept before its TTL"
    );
    assert_same_response(
        &store.response(finished).await.expect("response").expect("kept"),
        &response,
    );

    tokio::time::sleep(ttl / 2 + ttl / 4 + Duration::from_millis(10)).await;
    for id in [finished, canceled] {
        assert_eq!(
            store.get(id).await.expect("get"),
            Lookup::Expired,
            "expired after its TTL"
        );
        assert_eq!(store.response(id).await.expect("response"), None);
        assert_eq!(store.cancel(id).await.expect("cancel"), Cancel::Expired);
        assert!(!store.start(id).await.expect("start"));
        tokio::time::timeout(WAKE_WITHIN, store.wait_terminal(id))
            .await
            .expect("wait_terminal resolves at once for an expired job")
            .expect("wait_terminal");
    }
    assert_eq!(found(store, still_pending).await.status, JobStatus::Pending);
    assert_eq!(found(store, still_running).await.status, JobStatus::Running);

    tokio::time::sleep(tombstone_ttl + ttl).await;
    for id in [finished, canceled] {
        assert_eq!(
            store.get(id).await.expect("get"),
            Lookup::Unknown,
            "forgotten after the tombstone TTL"
        );
        assert_eq!(store.cancel(id).await.expect("cancel"), Cancel::Unknown);
    }
    assert_eq!(found(store, still_pending).await.status, JobStatus::Pending);
    assert_eq!(found(store, still_running).await.status, JobStatus::Running);
}

//! The checks of `wait_terminal`: at once for ended jobs, woken by every
//! way a job ends, and never before.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::task::JoinHandle;

use super::{SETTLE, WAKE_WITHIN, pending, running, stored_response};
use crate::store::{Cancel, ErrorCode, JobError, JobId, JobStore, Outcome, StoreError};

/// `wait_terminal` resolves at once for an ended, deleted or unknown job.
pub async fn wait_terminal_resolves_at_once_when_ended_or_unknown<St: JobStore>(store: &St) {
    let succeeded = running(store).await;
    let outcome = Outcome::Response(stored_response(StatusCode::OK, HeaderMap::new(), Bytes::new()));
    assert!(store.finish(succeeded, outcome).await.expect("finish"));
    let failed = running(store).await;
    let error = JobError::new(ErrorCode::Panicked, "boom");
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

/// A waiter is woken by `finish`, and not before (not by `start` or progress).
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
    let outcome = Outcome::Response(stored_response(StatusCode::OK, HeaderMap::new(), Bytes::from("done")));
    assert!(store.finish(id, outcome).await.expect("finish"));
    assert_wakes(handle, "finish").await;

    // Finishing from another task.
    let id = running(&**store).await;
    let handle = waiter(store, id);
    assert_still_waiting(&handle, "the job ended").await;
    let other = Arc::clone(store);
    let finisher = tokio::spawn(async move {
        let error = JobError::new(ErrorCode::Error, "failed");
        other.finish(id, Outcome::Failed(error)).await
    });
    assert!(finisher.await.expect("finisher").expect("finish"));
    assert_wakes(handle, "a failed finish").await;
}

/// A waiter is woken by `cancel`.
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

/// A waiter is woken by `delete`.
pub async fn wait_terminal_wakes_on_delete<St: JobStore>(store: &Arc<St>) {
    let id = running(&**store).await;
    let handle = waiter(store, id);
    assert_still_waiting(&handle, "delete").await;
    let other = Arc::clone(store);
    let deleter = tokio::spawn(async move { other.delete(id).await });
    assert!(deleter.await.expect("deleter").expect("delete"));
    assert_wakes(handle, "delete").await;
}

/// Many waiters of one job all wake when it ends.
pub async fn many_waiters_all_wake<St: JobStore>(store: &Arc<St>) {
    const WAITERS: usize = 200;
    let id = running(&**store).await;
    let other = running(&**store).await;
    let handles: Vec<_> = (0..WAITERS).map(|_| waiter(store, id)).collect();
    let bystander = waiter(store, other);
    tokio::time::sleep(SETTLE).await;
    let early = handles.iter().filter(|h| h.is_finished()).count();
    assert_eq!(early, 0, "waiters resolved before the job ended");

    let outcome = Outcome::Response(stored_response(StatusCode::OK, HeaderMap::new(), Bytes::new()));
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

//! The checks of `wait_terminal`: at once for ended jobs, woken by every
//! way a job ends, and never before.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::{AT_ONCE, SETTLE, WAKE_WITHIN, pending, running, stored_response};
use crate::store::{Cancel, Claim, ErrorCode, JobError, JobId, JobStore, Outcome, StoreError};

/// `wait_terminal` resolves at once for an ended, deleted or unknown job.
pub async fn wait_terminal_resolves_at_once_when_ended_or_unknown<St: JobStore>(store: &St) {
    let succeeded = running(store).await;
    let outcome = Outcome::Response(stored_response(StatusCode::OK, HeaderMap::new(), Bytes::new()));
    assert!(store.finish(Claim::first(succeeded), outcome).await.expect("finish"));
    let failed = running(store).await;
    let error = JobError::new(ErrorCode::Panicked, "boom");
    assert!(
        store
            .finish(Claim::first(failed), Outcome::Failed(error))
            .await
            .expect("finish")
    );
    let canceled = pending(store).await;
    assert_eq!(store.cancel(canceled).await.expect("cancel"), Cancel::Canceled);
    let deleted = pending(store).await;
    assert!(store.delete(deleted).await.expect("delete"));

    for id in [succeeded, failed, canceled, deleted, JobId::new()] {
        tokio::time::timeout(AT_ONCE, store.wait_terminal(id))
            .await
            .unwrap_or_else(|_| panic!("wait_terminal({id}) did not resolve at once"))
            .expect("wait_terminal");
    }
}

/// One `wait_terminal` future, polled by the check itself.
type Wait<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// How many times a waiter is polled, with a yield between, before it is
/// watched for [`SETTLE`].
const POLLS: usize = 8;

/// A waiter for `id`, not yet polled.
fn waiter<St: JobStore>(store: &St, id: JobId) -> Wait<'_> {
    Box::pin(store.wait_terminal(id))
}

/// Polls `wait` once, in the calling task.
async fn poll_once(wait: &mut Wait<'_>) -> Poll<Result<(), StoreError>> {
    std::future::poll_fn(|cx| Poll::Ready(wait.as_mut().poll(cx))).await
}

/// Asserts that `wait` is registered and still waiting for its open job.
///
/// The waiter is polled here, in the check's own task, not spawned: a
/// spawned waiter may first run after the job ended, resolve at once and
/// let a wake-up check pass that woke nothing. Both stores register on the
/// first poll (`MemoryStore` keeps the task's waker in the job's entry;
/// `RedisStore` enables its `Notify` before it reads the record, and its
/// listener is subscribed before `build` returns), so once this returned
/// the end of the job must wake the waiter. The further polls with yields,
/// then [`SETTLE`] of waiting, give a store that reads the record over the
/// network time to answer, so one that resolves for an open job fails here
/// rather than passing as "woken".
async fn assert_waiting(wait: &mut Wait<'_>, what: &str) {
    for _ in 0..POLLS {
        assert!(poll_once(wait).await.is_pending(), "the waiter resolved before {what}");
        tokio::task::yield_now().await;
    }
    assert!(
        tokio::time::timeout(SETTLE, wait.as_mut()).await.is_err(),
        "the waiter resolved before {what}"
    );
}

/// Asserts that `wait` resolves without error within `WAKE_WITHIN`: long,
/// so that only a waiter that is never woken fails, and it fails rather
/// than passing late.
async fn assert_wakes(wait: Wait<'_>, what: &str) {
    tokio::time::timeout(WAKE_WITHIN, wait)
        .await
        .unwrap_or_else(|_| panic!("the waiter was not woken within {WAKE_WITHIN:?} of {what}"))
        .expect("wait_terminal");
}

/// A waiter is woken by `finish`, and not before (not by `start` or progress).
pub async fn wait_terminal_wakes_on_finish<St: JobStore>(store: &Arc<St>) {
    // A pending job, then running, with progress on the way: only the
    // end wakes the waiter.
    let id = pending(&**store).await;
    let mut wait = waiter(&**store, id);
    assert_waiting(&mut wait, "the job started").await;
    assert!(store.start(Claim::first(id)).await.expect("start"));
    store
        .set_progress(Claim::first(id), Some(0.5), Some("half".into()))
        .await
        .expect("set_progress");
    assert_waiting(&mut wait, "the job ended (start and progress do not wake it)").await;
    let outcome = Outcome::Response(stored_response(StatusCode::OK, HeaderMap::new(), Bytes::from("done")));
    assert!(store.finish(Claim::first(id), outcome).await.expect("finish"));
    assert_wakes(wait, "finish").await;

    // Finishing from another task.
    let id = running(&**store).await;
    let mut wait = waiter(&**store, id);
    assert_waiting(&mut wait, "the job ended").await;
    let other = Arc::clone(store);
    let finisher = tokio::spawn(async move {
        let error = JobError::new(ErrorCode::Error, "failed");
        other.finish(Claim::first(id), Outcome::Failed(error)).await
    });
    assert!(finisher.await.expect("finisher").expect("finish"));
    assert_wakes(wait, "a failed finish").await;
}

/// A waiter is woken by `cancel`.
pub async fn wait_terminal_wakes_on_cancel<St: JobStore>(store: &Arc<St>) {
    for start in [false, true] {
        let id = if start {
            running(&**store).await
        } else {
            pending(&**store).await
        };
        let mut wait = waiter(&**store, id);
        assert_waiting(&mut wait, "cancel").await;
        let other = Arc::clone(store);
        let canceler = tokio::spawn(async move { other.cancel(id).await });
        assert_eq!(canceler.await.expect("canceler").expect("cancel"), Cancel::Canceled);
        assert_wakes(wait, "cancel").await;
    }
}

/// A waiter is woken by `delete`.
pub async fn wait_terminal_wakes_on_delete<St: JobStore>(store: &Arc<St>) {
    let id = running(&**store).await;
    let mut wait = waiter(&**store, id);
    assert_waiting(&mut wait, "delete").await;
    let other = Arc::clone(store);
    let deleter = tokio::spawn(async move { other.delete(id).await });
    assert!(deleter.await.expect("deleter").expect("delete"));
    assert_wakes(wait, "delete").await;
}

/// Many waiters of one job all wake when it ends, and a waiter of another
/// job does not.
pub async fn many_waiters_all_wake<St: JobStore>(store: &Arc<St>) {
    const WAITERS: usize = 200;
    let id = running(&**store).await;
    let other = running(&**store).await;
    // Each waiter is polled once here, so all are registered before the end
    // (see `assert_waiting`); then all are watched together for `SETTLE`.
    let mut waits: Vec<Option<Wait<'_>>> = Vec::with_capacity(WAITERS);
    for _ in 0..WAITERS {
        let mut wait = waiter(&**store, id);
        assert!(
            poll_once(&mut wait).await.is_pending(),
            "a waiter resolved before the job ended"
        );
        waits.push(Some(wait));
    }
    let mut bystander = waiter(&**store, other);
    assert_waiting(&mut bystander, "its job ended").await;
    let early = tokio::time::timeout(SETTLE, poll_all(&mut waits)).await;
    assert!(early.is_err(), "waiters resolved before the job ended");
    assert_eq!(waits.iter().filter(|w| w.is_none()).count(), 0);

    // The waiters are driven while the job is finished, as a server's
    // tasks are: a store whose connections are pooled (PostgreSQL) holds
    // one for each read in flight, and a waiter left unpolled in the
    // pool's queue would hold back the finish itself.
    let outcome = Outcome::Response(stored_response(StatusCode::OK, HeaderMap::new(), Bytes::new()));
    let (finished, woken) = tokio::join!(
        store.finish(Claim::first(id), outcome),
        tokio::time::timeout(WAKE_WITHIN, poll_all(&mut waits))
    );
    assert!(finished.expect("finish"));
    woken.unwrap_or_else(|_| {
        let left = waits.iter().filter(|w| w.is_some()).count();
        panic!("{left} of {WAITERS} waiters were not woken within {WAKE_WITHIN:?}")
    });
    assert_waiting(&mut bystander, "its own job ended (a waiter of another job woke)").await;
    assert_eq!(store.cancel(other).await.expect("cancel"), Cancel::Canceled);
    assert_wakes(bystander, "cancel of its own job").await;
}

/// Polls every waiter left in `waits` until all have resolved, each without
/// error; a resolved one is taken out, so an interrupted call can be
/// resumed.
async fn poll_all(waits: &mut [Option<Wait<'_>>]) {
    std::future::poll_fn(|cx| {
        for slot in waits.iter_mut() {
            if let Some(wait) = slot
                && let Poll::Ready(result) = wait.as_mut().poll(cx)
            {
                result.expect("wait_terminal");
                *slot = None;
            }
        }
        if waits.iter().all(Option::is_none) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

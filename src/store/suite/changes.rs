//! The checks of change tracking: every change raises `updated_at_ms`, and
//! `wait_change` wakes on every change and not before.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::{AT_ONCE, SETTLE, found, pending, stored_response};
use crate::store::{Cancel, Claim, JobId, JobStore, Outcome};

/// How long a change watcher is given to wake: far less than a stream's
/// patience, far more than an announcement takes (a store that re-reads
/// once a second, as the trait's default does, passes too).
pub const CHANGE_WITHIN: Duration = Duration::from_secs(3);

/// Every change of a job (start, progress, end) raises its
/// `updated_at_ms`, even several changes in one millisecond: streams name
/// their events by it.
pub async fn every_change_raises_updated_at<St: JobStore>(store: &St) {
    let id = pending(store).await;
    let mut last = found(store, id).await.updated_at_ms;
    let mut after = |what: &str, now: u64| {
        assert!(now > last, "{what} left updated_at_ms at {now} (was {last})");
        last = now;
    };
    let claim = Claim::first(id);
    assert!(store.start(claim).await.expect("start"));
    after("start", found(store, id).await.updated_at_ms);
    // Quicker than the clock's millisecond, as a busy handler reports.
    for step in 1..=5u8 {
        let progress = Some(f32::from(step) / 10.0);
        assert!(store.set_progress(claim, progress, None).await.expect("progress"));
        after("progress", found(store, id).await.updated_at_ms);
    }
    let outcome = Outcome::Response(stored_response(StatusCode::OK, HeaderMap::new(), Bytes::new()));
    assert!(store.finish(claim, outcome).await.expect("finish"));
    after("finish", found(store, id).await.updated_at_ms);
}

/// Watches `id` as last changed at `seen`, in a task of its own.
fn watch<St: JobStore>(store: &Arc<St>, id: JobId, seen: u64) -> tokio::task::JoinHandle<()> {
    let store = Arc::clone(store);
    tokio::spawn(async move { store.wait_change(id, seen).await.expect("wait_change") })
}

/// Asserts that `watcher` is still waiting after [`SETTLE`], then that it
/// wakes within [`CHANGE_WITHIN`] of `change`.
async fn wakes_on<F: Future<Output = ()>>(mut watcher: tokio::task::JoinHandle<()>, what: &str, change: F) {
    assert!(
        tokio::time::timeout(SETTLE, &mut watcher).await.is_err(),
        "wait_change resolved before the {what}"
    );
    change.await;
    tokio::time::timeout(CHANGE_WITHIN, watcher)
        .await
        .unwrap_or_else(|_| panic!("wait_change did not wake on the {what}"))
        .expect("watcher task");
}

/// `wait_change` waits while the job is as seen, wakes on its start, its
/// progress, its end and its removal, and resolves at once for a job
/// changed since, ended, or unknown.
pub async fn wait_change_wakes_on_every_change<St: JobStore>(store: &Arc<St>) {
    let id = pending(&**store).await;
    let claim = Claim::first(id);
    let seen = found(&**store, id).await.updated_at_ms;
    wakes_on(watch(store, id, seen), "start", async {
        assert!(store.start(claim).await.expect("start"));
    })
    .await;
    let seen = found(&**store, id).await.updated_at_ms;
    wakes_on(watch(store, id, seen), "progress", async {
        assert!(
            store
                .set_progress(claim, Some(0.5), Some("half".into()))
                .await
                .expect("progress")
        );
    })
    .await;
    // A watcher that comes late, with an old `seen`, finds the change.
    tokio::time::timeout(AT_ONCE, store.wait_change(id, seen - 1))
        .await
        .expect("wait_change of a changed job did not resolve at once")
        .expect("wait_change");
    let seen = found(&**store, id).await.updated_at_ms;
    wakes_on(watch(store, id, seen), "finish", async {
        let outcome = Outcome::Response(stored_response(StatusCode::OK, HeaderMap::new(), Bytes::new()));
        assert!(store.finish(claim, outcome).await.expect("finish"));
    })
    .await;
    let ended = found(&**store, id).await.updated_at_ms;
    for (what, id, seen) in [("ended", id, ended), ("unknown", JobId::new(), 0)] {
        tokio::time::timeout(AT_ONCE, store.wait_change(id, seen))
            .await
            .unwrap_or_else(|_| panic!("wait_change of an {what} job did not resolve at once"))
            .expect("wait_change");
    }

    let canceled = pending(&**store).await;
    let seen = found(&**store, canceled).await.updated_at_ms;
    wakes_on(watch(store, canceled, seen), "cancel", async {
        assert_eq!(store.cancel(canceled).await.expect("cancel"), Cancel::Canceled);
    })
    .await;
    let deleted = pending(&**store).await;
    let seen = found(&**store, deleted).await.updated_at_ms;
    wakes_on(watch(store, deleted, seen), "delete", async {
        assert!(store.delete(deleted).await.expect("delete"));
    })
    .await;
}

//! The check of a store's time to live and tombstones.

use std::time::Duration;

use http::StatusCode;

use super::{WAKE_WITHIN, assert_same_response, found, pending, running, sample_response, succeed};
use crate::store::{Cancel, Claim, JobStatus, JobStore, Lookup};

/// Expiry as every store keeps it: a finished (or canceled) job is kept
/// for `ttl`, then reported `Expired` without its response, then,
/// `tombstone_ttl` later, `Unknown`; pending and running jobs stay.
/// The store must be built with these two durations; waits are
/// `tokio::time::sleep`s (instant under a paused clock).
pub async fn expiry<St: JobStore>(store: &St, ttl: Duration, tombstone_ttl: Duration) {
    let finished = running(store).await;
    let response = sample_response(StatusCode::OK);
    succeed(store, finished, &response).await;
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
        assert!(store.response(id).await.expect("response").is_none());
        assert_eq!(store.cancel(id).await.expect("cancel"), Cancel::Expired);
        assert!(!store.start(Claim::first(id)).await.expect("start"));
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

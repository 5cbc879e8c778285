//! Two in-process apps sharing one store, as two replicas behind a load
//! balancer: the routes each serves and the flags its blocking handler sets.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Extension, Router};
use http::{Method, StatusCode};
use tower_accepted::store::JobStore;
use tower_accepted::{AcceptedLayer, Job};

use super::http::HttpClient;
use super::server::{Server, serve};
use super::wait::until;

/// Flags set by the blocking handler, to observe a cancel on the replica
/// running the job.
#[derive(Clone, Default)]
pub struct Flags {
    pub dropped: Arc<AtomicBool>,
    pub cancelled: Arc<AtomicBool>,
}

/// Sets its flag when dropped (the handler's future was dropped).
struct DropGuard(Arc<AtomicBool>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// One replica on `store`: `POST /work?ms=N` answers its body after N ms;
/// `POST /block` reports progress then waits until canceled.
pub async fn replica<St: JobStore + Clone>(store: St, flags: Flags) -> (Server, HttpClient) {
    let layer = AcceptedLayer::new().store(store);
    let app = Router::new()
        .route(
            "/work",
            post(|query: axum::extract::RawQuery, body: String| async move {
                let ms = query.0.and_then(|q| q.strip_prefix("ms=")?.parse().ok()).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                ([("x-replayed", "yes")], body)
            }),
        )
        .route(
            "/block",
            post(move |Extension(job): Extension<Job>| {
                let flags = flags.clone();
                async move {
                    let _guard = DropGuard(flags.dropped.clone());
                    let watcher = job.clone();
                    let cancelled = flags.cancelled.clone();
                    tokio::spawn(async move {
                        watcher.cancelled().await;
                        cancelled.store(true, Ordering::SeqCst);
                    });
                    job.set_progress(0.5);
                    job.set_message("half way");
                    std::future::pending::<()>().await;
                }
            }),
        )
        .layer(layer);
    let server = serve(app).await;
    let client = HttpClient::new(&server);
    (server, client)
}

/// A job submitted on `a` (`/work?ms=400`) is followed on `b`: polled
/// (pending or running, with `Retry-After`; no result yet), long-polled
/// until it ends (within `wake_within` of the poll's start, by the store's
/// wake-up on `b`), its result fetched and `HEAD`ed there, then deleted on
/// `b` and gone for `a`. Answers how soon the long poll woke.
pub async fn submit_on_one_follow_on_another(a: &HttpClient, b: &HttpClient, wake_within: Duration) -> Duration {
    let accepted = a.post("/work?ms=400", "hello from A").await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let monitor = accepted.location();
    let polled = b.get(&monitor).await;
    assert_eq!(polled.status, StatusCode::OK);
    assert!(matches!(polled.json()["status"].as_str(), Some("pending" | "running")));
    assert!(polled.header("retry-after").is_some());
    let not_ready = b.get(&format!("{monitor}/result")).await;
    not_ready.assert_problem(StatusCode::NOT_FOUND);

    // A long poll on B wakes when A finishes, not after its 20 s.
    let started = Instant::now();
    let done = b.get(&format!("{monitor}?wait=20")).await;
    let woke = started.elapsed();
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{:?}", done.body);
    assert!(woke < wake_within, "woke after {woke:?}");
    assert_eq!(done.json()["status"], "succeeded");

    let result = b.get(&done.location()).await;
    assert_eq!(result.status, StatusCode::OK);
    assert_eq!(result.body, "hello from A");
    assert_eq!(result.header("x-replayed"), Some("yes"));
    let head = b.send(Method::HEAD, &done.location(), &[], "").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some("12"));

    // Forget it on B: gone for A too.
    assert_eq!(b.delete(&monitor).await.status, StatusCode::NO_CONTENT);
    a.get(&monitor).await.assert_problem(StatusCode::NOT_FOUND);
    woke
}

/// A blocking job on `a` (whose handler sets `flags`) reports progress seen
/// on `b`; canceled on `b`, it stops on `a`: the handler's future dropped
/// (within `drop_within` of the cancel, when given) and `Job::cancelled`
/// fired; canceled on both, with no result.
pub async fn cancel_on_another_stops_the_job_where_it_runs(
    a: &HttpClient,
    b: &HttpClient,
    flags: &Flags,
    drop_within: Option<Duration>,
) {
    let accepted = a.post("/block", "").await;
    let monitor = accepted.location();
    // Progress reported on A is visible on B.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let doc = b.get(&monitor).await.json();
        if doc["progress"] == 0.5 {
            assert_eq!(doc["message"], "half way");
            assert_eq!(doc["status"], "running");
            break;
        }
        assert!(Instant::now() < deadline, "progress never reached B: {doc}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let canceled = Instant::now();
    assert_eq!(b.delete(&monitor).await.status, StatusCode::NO_CONTENT);
    until("the handler's future dropped on A", || {
        flags.dropped.load(Ordering::SeqCst)
    })
    .await;
    if let Some(bound) = drop_within {
        assert!(
            canceled.elapsed() < bound,
            "A dropped the handler {:?} after the cancel on B",
            canceled.elapsed()
        );
    }
    until("Job::cancelled fired on A", || flags.cancelled.load(Ordering::SeqCst)).await;
    assert_eq!(a.get(&monitor).await.json()["status"], "canceled");
    b.get(&format!("{monitor}/result"))
        .await
        .assert_problem(StatusCode::CONFLICT);
}

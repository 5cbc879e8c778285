//! Two in-process apps sharing one store, as two replicas behind a load
//! balancer: the routes each serves and the flags its blocking handler sets.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::routing::post;
use axum::{Extension, Router};
use tower_accepted::store::JobStore;
use tower_accepted::{AcceptedLayer, Job};

use super::http::HttpClient;
use super::server::{Server, serve};

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

//! Readiness: whether a replica should be sent traffic now
//! ([`AcceptedLayer::ready`], [`NotReady`]).

use std::fmt;

use crate::layer::AcceptedLayer;
use crate::store::{JobStore, StoreError};

/// Why [`AcceptedLayer::ready`] says a replica should not be sent traffic.
///
/// `#[non_exhaustive]`: reasons may be added, so a `match` outside this
/// crate needs a `_` arm.
///
/// ```
/// use std::time::Duration;
/// use tower_accepted::{AcceptedLayer, NotReady};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = AcceptedLayer::new();
/// assert!(layer.ready().await.is_ok());
/// layer.shutdown(Duration::from_secs(1)).await;
/// assert!(matches!(layer.ready().await, Err(NotReady::ShuttingDown)));
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum NotReady {
    /// A [`shutdown`](AcceptedLayer::shutdown) began: the replica admits no
    /// job any more (its job routes still answer while jobs drain).
    ShuttingDown,
    /// The job store failed its [`health`](JobStore::health) check: jobs
    /// can be neither submitted nor polled through this replica.
    Store(StoreError),
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The store's error is the `source`, not part of this text: a probe
        // endpoint can answer this text without showing a server's details.
        match self {
            Self::ShuttingDown => f.write_str("shutting down"),
            Self::Store(_) => f.write_str("the job store failed its health check"),
        }
    }
}

impl std::error::Error for NotReady {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::ShuttingDown => None,
            Self::Store(e) => Some(e),
        }
    }
}

impl<St: JobStore> AcceptedLayer<St> {
    /// Whether this replica should be sent traffic now: `Ok(())`, or why
    /// not. For a readiness probe (`/readyz`).
    ///
    /// - [`NotReady::ShuttingDown`] once a [`shutdown`](Self::shutdown) of
    ///   this layer (or of any clone) began: new submissions are refused
    ///   while jobs drain, so a load balancer should send them elsewhere.
    /// - [`NotReady::Store`] when the job store fails its
    ///   [`health`](JobStore::health) check (one round trip to Redis or
    ///   PostgreSQL, bounded by the store's command or statement timeout;
    ///   always healthy for a [`MemoryStore`](crate::store::MemoryStore)):
    ///   a replica cut off from its store can only answer `503`.
    ///
    /// A shutdown answers at once, without asking the store.
    ///
    /// Liveness needs nothing from this crate: `/healthz` (liveness) should
    /// answer `200` for as long as the process serves requests, whatever
    /// the store does, since restarting a replica does not bring its store
    /// back; `/readyz` (readiness) should answer with this method, so that
    /// the load balancer stops sending traffic to a replica that is draining
    /// or cut off from its store, and sends it again once it is back. Mount
    /// both outside the layer, or out of what it defers, so that a probe
    /// never becomes a job.
    ///
    /// ```
    /// use axum::{Router, http::StatusCode, routing::{get, post}};
    /// use tower_accepted::AcceptedLayer;
    ///
    /// async fn report() -> &'static str {
    ///     "a long report"
    /// }
    ///
    /// let layer = AcceptedLayer::new();
    /// let probes = layer.clone();
    /// let app: Router = Router::new()
    ///     .route("/reports", post(report))
    ///     .layer(layer)
    ///     // Added after `layer`: the layer does not wrap these routes.
    ///     .route("/healthz", get(|| async { "ok" }))
    ///     .route(
    ///         "/readyz",
    ///         get(move || async move {
    ///             match probes.ready().await {
    ///                 Ok(()) => (StatusCode::OK, "ready".to_owned()),
    ///                 Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
    ///             }
    ///         }),
    ///     );
    /// # let _ = app;
    /// ```
    pub async fn ready(&self) -> Result<(), NotReady> {
        let shared = self.shared();
        if !shared.admissions.accepting() {
            return Err(NotReady::ShuttingDown);
        }
        crate::telemetry::store(
            &shared.telemetry.meters,
            crate::telemetry::StoreOp::Health,
            shared.store.health(),
        )
        .await
        .map_err(NotReady::Store)?;
        // A shutdown may have begun while the store answered: a draining
        // replica is not ready, however healthy its store.
        if !shared.admissions.accepting() {
            return Err(NotReady::ShuttingDown);
        }
        Ok(())
    }
}

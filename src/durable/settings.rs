//! The durable settings of [`AcceptedLayer`].

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderName, Request, Response};
use http_body_util::Full;
use tower_service::Service;

use super::start_claiming;
use crate::AcceptedLayer;
use crate::durability::JobApp;
use crate::store::JobStore;

impl<St: JobStore> AcceptedLayer<St> {
    /// Makes every deferred request a durable job (see the
    /// [module docs](crate::durable) for what that guarantees and keeps):
    /// kept with its request, run again by another replica when the one
    /// running it stops. Give the replicas the application to run claimed
    /// jobs through with [`run_jobs_with`](Self::run_jobs_with).
    ///
    /// ```
    /// use tower_accepted::AcceptedLayer;
    ///
    /// let layer = AcceptedLayer::new().durable(true).max_attempts(5);
    /// # let _ = layer;
    /// ```
    pub fn durable(self, durable: bool) -> Self {
        self.configure(|c| c.durable = durable.then(|| Arc::new(|_: &Parts| true) as _))
    }

    /// Makes the deferred requests for which `predicate` is true durable
    /// jobs (see [`durable`](Self::durable)).
    ///
    /// ```
    /// use tower_accepted::AcceptedLayer;
    ///
    /// let layer = AcceptedLayer::new().durable_if(|parts| parts.uri.path() != "/fail");
    /// # let _ = layer;
    /// ```
    pub fn durable_if<F>(self, predicate: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        let predicate = Arc::new(predicate);
        self.configure(|c| c.durable = Some(predicate))
    }

    /// How many attempts a durable job may have (default 3, at least 1):
    /// when the lease of the last one lapses, the job ends `failed` with
    /// `error.code = "lost"`. A claim counts as an attempt, including one
    /// handed back at a shutdown.
    pub fn max_attempts(self, attempts: u32) -> Self {
        self.configure(|c| c.max_attempts = attempts.max(1))
    }

    /// The queue this layer's durable jobs wait in (default `"default"`).
    /// A replica claims only from the queues of the layers it has: give
    /// layers on different routes different queues when not every replica
    /// serves every route.
    ///
    /// ```
    /// use tower_accepted::AcceptedLayer;
    ///
    /// let layer = AcceptedLayer::new().durable(true).durable_queue("reports");
    /// # let _ = layer;
    /// ```
    pub fn durable_queue(self, queue: &str) -> Self {
        let queue: Arc<str> = Arc::from(queue);
        self.configure(|c| c.queue = queue)
    }

    /// Which headers a durable job's stored request keeps (by default every
    /// one but the hop-by-hop ones, credentials included): `keep` says yes
    /// or no to each name.
    ///
    /// ```
    /// use http::header;
    /// use tower_accepted::AcceptedLayer;
    ///
    /// // Keep no cookies in the store.
    /// let layer = AcceptedLayer::new().durable(true).stored_headers(|name| name != header::COOKIE);
    /// # let _ = layer;
    /// ```
    pub fn stored_headers<F>(self, keep: F) -> Self
    where
        F: Fn(&HeaderName) -> bool + Send + Sync + 'static,
    {
        let keep = Arc::new(keep);
        self.configure(|c| c.stored_headers = Some(keep))
    }

    /// Claims this layer's queued durable jobs while it has runners free,
    /// and runs each by sending its stored request through `app`, the
    /// application the layer is part of (an axum `Router` with the layer
    /// applied, say): the app's router takes the request to its route, and
    /// the layer of the job's queue there runs it as the claimed job (a
    /// layer of another queue answers `421` without calling its service,
    /// and the job goes back to its queue, its attempt spent; so does a job
    /// that a middleware in front of the layer answers, or that reaches no
    /// route). Call it on the layer value the app was built with, after the
    /// app, on a tokio runtime; the loop owns `app` and stops when the
    /// layer shuts down (a [`MemoryStore`](crate::store::MemoryStore),
    /// which no other process shares, then ends its queued jobs `failed`
    /// with `shutdown`). Without it, this replica runs only the durable
    /// jobs it accepted itself, never queueing them in the store.
    ///
    /// ```
    /// use axum::{Router, routing::post};
    /// use tower_accepted::AcceptedLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // With a `RedisStore`, every replica does this.
    /// let layer = AcceptedLayer::new().durable(true);
    /// let app = Router::new()
    ///     .route("/reports", post(|| async { "report" }))
    ///     .layer(layer.clone());
    /// layer.run_jobs_with(app.clone());
    /// # }
    /// ```
    pub fn run_jobs_with<A, B>(&self, app: A)
    where
        A: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
        A::Future: Send + 'static,
    {
        let app: JobApp = Arc::new(move |request| {
            let mut app = app.clone();
            Box::pin(async move {
                if std::future::poll_fn(|cx| app.poll_ready(cx)).await.is_ok() {
                    let _ = app.call(request).await;
                }
            }) as std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
        });
        start_claiming(self.shared(), app);
    }
}

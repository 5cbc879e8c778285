//! [`Accepted`]: answers the job routes and defers the selected requests;
//! [`JobRoutes`]: the job routes alone.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response, header};
use http_body::Body;
use tower_service::Service;

use crate::BoxError;
use crate::body::{RequestBody, ResponseBody};
use crate::claimed::run_claimed;
use crate::config::{Config, LayerState};
use crate::durable::JobMark;
use crate::future::{JobRoutesFuture, ResponseFuture};
use crate::headers::Preferences;
use crate::job_routes;
use crate::store::{JobStore, MemoryStore};
use crate::submit::submit;

/// Middleware that turns requests into background jobs answered with
/// `202 Accepted`; made by [`AcceptedLayer`](crate::AcceptedLayer).
///
/// For each request it:
/// - answers the job routes itself (monitor, result, cancel);
/// - defers the requests selected for deferral: reads the body, runs the
///   wrapped service on a background task and answers `202 Accepted`;
/// - hands every other request to the wrapped service unchanged (its body
///   streamed through as a [`RequestBody`]).
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use tower::{Layer, ServiceExt};
/// use tower_accepted::{AcceptedLayer, RequestBody};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let slow = tower::service_fn(|_: Request<RequestBody<Full<Bytes>>>| async {
///     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("done"))))
/// });
/// let service = AcceptedLayer::new().layer(slow);
/// let request = Request::post("/convert").body(Full::new(Bytes::from("input"))).unwrap();
/// let response = service.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), StatusCode::ACCEPTED);
/// assert!(response.headers()["location"].to_str().unwrap().starts_with("/jobs/"));
/// # }
/// ```
pub struct Accepted<S, St = MemoryStore> {
    inner: S,
    shared: Arc<LayerState<St>>,
}

impl<S, St> Accepted<S, St> {
    pub(crate) fn new(inner: S, shared: Arc<LayerState<St>>) -> Self {
        Self { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, taken out.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, St> Clone for Accepted<S, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: std::fmt::Debug, St> std::fmt::Debug for Accepted<S, St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// Whether the layer should turn this request into a job.
fn defers<B>(config: &Config, request: Request<B>, prefs: &Preferences) -> (bool, Request<B>) {
    if config.respond_async_only && !prefs.respond_async {
        return (false, request);
    }
    match &config.defer {
        None => (defers_by_default(&request), request),
        Some(predicate) => {
            let (parts, body) = request.into_parts();
            let defer = predicate(&parts);
            (defer, Request::from_parts(parts, body))
        }
    }
}

/// Without a predicate every request is deferred but those that must be
/// answered on their own connection at once: `OPTIONS` (CORS preflights),
/// `CONNECT` and protocol upgrades (WebSockets, `h2c`), whose answer hands
/// the connection over and so cannot wait in a store.
fn defers_by_default<B>(request: &Request<B>) -> bool {
    let method = request.method();
    method != Method::OPTIONS && method != Method::CONNECT && !request.headers().contains_key(header::UPGRADE)
}

impl<S, St, ReqBody, ResBody> Service<Request<ReqBody>> for Accepted<S, St>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    St: JobStore,
    ReqBody: Body + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<RequestBody<ReqBody>>>;

    /// Always ready: the job routes need nothing of the wrapped service, so
    /// they answer while it is busy (behind a saturated `ConcurrencyLimit`,
    /// say). A request for the wrapped service waits for it in its response
    /// future, and a job in its task.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        crate::durable::ensure_upkeep(&self.shared);
        // A job claimed from a queue, sent here by a claim loop: run by a
        // layer of its queue, and never accepted anew by another (its claim
        // loop hands it back to the queue when no layer took it).
        if let Some(mark) = request.extensions().get::<JobMark>() {
            let shared = Arc::clone(&self.shared);
            return match mark.take_for(&self.shared.config.queue) {
                Some(handoff) => {
                    let (parts, body) = request.into_parts();
                    let service = self.inner.clone();
                    ResponseFuture::layer(Box::pin(run_claimed(shared, service, parts, body, handoff)))
                }
                None => ResponseFuture::layer(Box::pin(async { crate::claimed::not_taken() })),
            };
        }
        let config = &self.shared.config;
        if let Some(route) = config
            .routes
            .classify(request.method(), request.uri().path(), config.claim_prefix)
        {
            let shared = Arc::clone(&self.shared);
            return ResponseFuture::routes(Box::pin(
                async move { job_routes::respond(&shared, route, request).await },
            ));
        }
        let prefs = crate::headers::preferences(request.headers());
        let (defer, request) = defers(config, request, &prefs);
        let service = self.inner.clone();
        if !defer {
            return ResponseFuture::inner(service, request.map(RequestBody::streaming));
        }
        let shared = Arc::clone(&self.shared);
        let (parts, body) = request.into_parts();
        ResponseFuture::layer(Box::pin(submit(shared, service, parts, body, prefs)))
    }
}

/// The job routes alone (monitor, result, cancel), for applications that
/// apply [`AcceptedLayer`](crate::AcceptedLayer) to some routes only (with
/// `route_layer` or `MethodRouter::layer`), where requests for the job routes
/// would never reach the layer. Made by
/// [`AcceptedLayer::job_routes`](crate::AcceptedLayer::job_routes).
///
/// Mount it with `Router::nest_service` at the monitor template's collection
/// path (`/jobs` for the default `/jobs/{id}`), or as a fallback service: it
/// understands both the full paths and the paths axum hands a nested service,
/// and its links always carry the full, external paths.
///
/// ```
/// use axum::{Router, routing::post};
/// use tower_accepted::AcceptedLayer;
///
/// let layer = AcceptedLayer::new();
/// let app: Router = Router::new()
///     .route("/reports", post(|| async { "report" }))
///     .route_layer(layer.clone())
///     .nest_service("/jobs", layer.job_routes());
/// # let _ = app;
/// ```
pub struct JobRoutes<St = MemoryStore> {
    shared: Arc<LayerState<St>>,
}

impl<St> JobRoutes<St> {
    pub(crate) fn new(shared: Arc<LayerState<St>>) -> Self {
        Self { shared }
    }
}

impl<St> Clone for JobRoutes<St> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<St> std::fmt::Debug for JobRoutes<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRoutes").finish_non_exhaustive()
    }
}

impl<St, B> Service<Request<B>> for JobRoutes<St>
where
    St: JobStore,
    B: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = JobRoutesFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        crate::durable::ensure_upkeep(&self.shared);
        let route = self
            .shared
            .config
            .routes
            .classify_nested(request.method(), request.uri().path());
        let shared = Arc::clone(&self.shared);
        JobRoutesFuture::new(Box::pin(
            async move { job_routes::respond(&shared, route, request).await },
        ))
    }
}

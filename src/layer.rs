//! [`AcceptedLayer`]: the configuration of the middleware.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderName;
use http::request::Parts;
use tower_layer::Layer;

use crate::config::{Completion, Config, LayerState, template};
use crate::problem::Problem;
use crate::service::{Accepted, JobRoutes};
use crate::store::{JobRecord, JobStore, MemoryStore};

mod drain;

/// Applies [`Accepted`] to a service: makes it answer slow requests with
/// `202 Accepted` and run them in the background.
///
/// Every clone of a layer, and every service it makes, shares one job store,
/// one set of limits and one shutdown. Builder methods take the layer by
/// value; configure it before cloning it or applying it.
///
/// Defaults: job routes `/jobs/{id}` and `/jobs/{id}/result` with relative
/// links; `303 See Other` on completion; every request that reaches the layer
/// is deferred but `OPTIONS` (CORS preflights); request bodies up to 2 MiB read within 30 s; results up to
/// 16 MiB; 64 jobs running and 1,024 queued; jobs time out after 15 minutes;
/// `Retry-After: 1`, up to 30 s as progress estimates allow; `Prefer: wait`
/// up to 10 s, no grace period; long polls up to 60 s; a [`MemoryStore`].
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::post};
/// use tower_accepted::{AcceptedLayer, Completion};
///
/// async fn report() -> &'static str {
///     tokio::time::sleep(Duration::from_secs(3)).await;
///     "a long report"
/// }
///
/// let layer = AcceptedLayer::new()
///     .max_running(16)
///     .max_queued(256)
///     .timeout(Duration::from_secs(60))
///     .completion(Completion::SeeOther);
/// let app: Router = Router::new().route("/reports", post(report)).layer(layer);
/// # let _ = app;
/// ```
pub struct AcceptedLayer<St = MemoryStore> {
    shared: Arc<LayerState<St>>,
}

impl<St> Clone for AcceptedLayer<St> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<St> std::fmt::Debug for AcceptedLayer<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.shared.config;
        f.debug_struct("AcceptedLayer")
            .field("completion", &c.completion)
            .field("max_body", &c.max_body)
            .field("max_result", &c.max_result)
            .field("max_running", &c.max_running)
            .field("max_queued", &c.max_queued)
            .field("timeout", &c.timeout)
            .finish_non_exhaustive()
    }
}

impl Default for AcceptedLayer<MemoryStore> {
    fn default() -> Self {
        Self::new()
    }
}

impl AcceptedLayer<MemoryStore> {
    /// A layer with the default configuration and a fresh [`MemoryStore`].
    pub fn new() -> Self {
        Self {
            shared: Arc::new(LayerState::new(Config::default(), Arc::new(MemoryStore::new()))),
        }
    }
}

impl<St: JobStore> AcceptedLayer<St> {
    /// The state every clone of this layer shares.
    pub(crate) fn shared(&self) -> &Arc<LayerState<St>> {
        &self.shared
    }

    pub(crate) fn configure(self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.shared.config.clone();
        change(&mut config);
        let store = Arc::clone(&self.shared.store);
        Self {
            shared: Arc::new(LayerState::derived(config, store, Some(&*self.shared))),
        }
    }

    /// Keeps jobs in `store` instead of a fresh [`MemoryStore`].
    ///
    /// ```
    /// use tower_accepted::{AcceptedLayer, store::MemoryStore};
    ///
    /// let store = MemoryStore::builder().capacity(1_000).build();
    /// let layer = AcceptedLayer::new().store(store.clone());
    /// assert!(layer.job_store().is_empty());
    /// ```
    pub fn store<T: JobStore>(self, store: T) -> AcceptedLayer<T> {
        AcceptedLayer {
            shared: Arc::new(LayerState::derived(
                self.shared.config.clone(),
                Arc::new(store),
                Some(&*self.shared),
            )),
        }
    }

    /// The job store.
    pub fn job_store(&self) -> &St {
        &self.shared.store
    }

    /// The path template of the status monitor (default `/jobs/{id}`).
    ///
    /// # Panics
    ///
    /// When the template does not start with `/` or does not have exactly
    /// one `{id}` segment.
    ///
    /// ```
    /// use tower_accepted::{AcceptedLayer, Completion};
    ///
    /// // The original two-oh-two layout.
    /// let layer = AcceptedLayer::new()
    ///     .monitor_path("/monitor/{id}")
    ///     .result_path("/result/{id}")
    ///     .completion(Completion::Created);
    /// # let _ = layer;
    /// ```
    pub fn monitor_path(self, path: &str) -> Self {
        let monitor = template(path);
        self.configure(|c| c.routes.monitor = monitor)
    }

    /// The path template of the result (default `/jobs/{id}/result`).
    ///
    /// # Panics
    ///
    /// As [`monitor_path`](Self::monitor_path).
    pub fn result_path(self, path: &str) -> Self {
        let result = template(path);
        self.configure(|c| c.routes.result = result)
    }

    /// Makes links absolute: `Location: https://api.example.com/jobs/{id}`.
    /// A trailing `/` is ignored.
    ///
    /// # Panics
    ///
    /// When `base` is not an absolute `http` or `https` URL without query or
    /// fragment.
    ///
    /// ```
    /// use tower_accepted::AcceptedLayer;
    ///
    /// let layer = AcceptedLayer::new().base_url("https://api.example.com/v1");
    /// # let _ = layer;
    /// ```
    pub fn base_url(self, base: &str) -> Self {
        let base = base.trim_end_matches('/');
        let valid = base
            .parse::<http::Uri>()
            .ok()
            .filter(|uri| matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some())
            .filter(|uri| uri.query().is_none() && !base.contains('#'));
        assert!(
            valid.is_some(),
            "invalid base URL {base:?}: an absolute http(s) URL without query"
        );
        let base: Box<str> = base.into();
        self.configure(|c| c.base_url = Some(base))
    }

    /// How the monitor answers once a job is done (default
    /// [`Completion::SeeOther`]).
    pub fn completion(self, completion: Completion) -> Self {
        self.configure(|c| c.completion = completion)
    }

    /// The largest request body accepted, in bytes (default 2 MiB); larger
    /// ones get `413`, and no job.
    pub fn max_body_size(self, bytes: usize) -> Self {
        self.configure(|c| c.max_body = bytes)
    }

    /// How long a client may take to send the request body (default 30 s);
    /// slower ones get `408`, and no job.
    pub fn body_timeout(self, timeout: Duration) -> Self {
        self.configure(|c| c.body_timeout = timeout)
    }

    /// The largest response body stored as a result, in bytes (default
    /// 16 MiB); a larger one ends the job `failed` with
    /// `result_too_large`.
    pub fn max_result_size(self, bytes: usize) -> Self {
        self.configure(|c| c.max_result = bytes)
    }

    /// How many jobs run at once (default 64, at least 1); more wait as
    /// `pending`.
    pub fn max_running(self, jobs: usize) -> Self {
        self.configure(|c| c.max_running = jobs.max(1))
    }

    /// How many jobs may wait for a runner (default 1,024); past that, new
    /// submissions get `503` with `Retry-After`.
    pub fn max_queued(self, jobs: usize) -> Self {
        self.configure(|c| c.max_queued = jobs)
    }

    /// How long a job may run (default 15 minutes); a job still running then
    /// is dropped and ends `failed` with `timeout`.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.configure(|c| c.timeout = timeout)
    }

    /// The polling interval sent in `Retry-After` (default 1 s; whole
    /// seconds, at least 1).
    pub fn retry_after(self, interval: Duration) -> Self {
        let secs = crate::headers::whole_seconds(interval).max(1);
        self.configure(|c| c.retry_after = secs)
    }

    /// The longest `Retry-After` sent when it is estimated from progress
    /// (default 30 s).
    pub fn max_retry_after(self, interval: Duration) -> Self {
        let secs = crate::headers::whole_seconds(interval).max(1);
        self.configure(|c| c.max_retry_after = secs)
    }

    /// The longest a submission waits for its job when the client sends
    /// `Prefer: wait=N` (default 10 s).
    pub fn max_wait(self, wait: Duration) -> Self {
        self.configure(|c| c.max_wait = wait)
    }

    /// How long a submission waits for its job before answering `202`
    /// when the client does not say (default 0). A job done within it is
    /// answered with its own response, as if the layer were not there.
    pub fn grace_period(self, grace: Duration) -> Self {
        self.configure(|c| c.grace = grace)
    }

    /// The longest a monitor request waits with `?wait=N` or
    /// `Prefer: wait=N` (default 60 s).
    pub fn max_long_poll(self, wait: Duration) -> Self {
        self.configure(|c| c.max_long_poll = wait)
    }

    /// Defers only the requests for which `predicate` is true; the others
    /// go to the wrapped service as they are. Without a predicate every
    /// request but `OPTIONS` is deferred.
    ///
    /// ```
    /// use http::Method;
    /// use tower_accepted::AcceptedLayer;
    ///
    /// let layer = AcceptedLayer::new().defer_if(|parts| parts.method == Method::POST);
    /// # let _ = layer;
    /// ```
    pub fn defer_if<F>(self, predicate: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        let predicate = Arc::new(predicate);
        self.configure(|c| c.defer = Some(predicate))
    }

    /// Defers only the requests whose client sends `Prefer: respond-async`
    /// (RFC 7240); the others are answered synchronously.
    pub fn respond_async_only(self) -> Self {
        self.configure(|c| c.respond_async_only = true)
    }

    /// A check run on the request head and whole body before a job is
    /// created: return a [`Problem`] (such as `400`) to refuse the request,
    /// so that only valid requests become jobs.
    ///
    /// ```
    /// use http::StatusCode;
    /// use tower_accepted::{AcceptedLayer, Problem};
    ///
    /// let layer = AcceptedLayer::new().check(|_parts, body| {
    ///     serde_json::from_slice::<serde_json::Value>(body)
    ///         .map(|_| ())
    ///         .map_err(|e| Problem::new(StatusCode::BAD_REQUEST).with_detail(format!("invalid JSON: {e}")))
    /// });
    /// # let _ = layer;
    /// ```
    pub fn check<F>(self, check: F) -> Self
    where
        F: Fn(&Parts, &Bytes) -> Result<(), Problem> + Send + Sync + 'static,
    {
        let check = Arc::new(check);
        self.configure(|c| c.check = Some(check))
    }

    /// Scopes jobs to their owner: `owner` names who a request comes from
    /// (for example a user id that an authentication layer put in the
    /// extensions), or `None` for anonymous requests. A job records its
    /// owner; its monitor, result and cancel answer anyone else exactly as
    /// for an unknown id (`404`), and `GET /jobs` lists the caller's own jobs.
    /// Anonymous jobs stay reachable by whoever holds their id.
    ///
    /// Without an owner function, job ids are capabilities: 122 random bits
    /// that whoever holds can use; `GET /jobs` answers `404`.
    ///
    /// Return an id, not a secret: the owner is stored with the job (and, in
    /// Redis, in key names).
    ///
    /// ```
    /// use tower_accepted::AcceptedLayer;
    ///
    /// #[derive(Clone)]
    /// struct UserId(String);
    ///
    /// let layer = AcceptedLayer::new()
    ///     .owner(|parts| parts.extensions.get::<UserId>().map(|user| user.0.clone()));
    /// # let _ = layer;
    /// ```
    pub fn owner<F>(self, owner: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        let owner = Arc::new(owner);
        self.configure(|c| c.owner = Some(owner))
    }

    /// The largest page of `GET /jobs` (default 100); larger `?limit=`
    /// values are clamped to it.
    pub fn max_list_limit(self, limit: usize) -> Self {
        self.configure(|c| c.max_list = limit.max(1))
    }

    /// Changes every status document (in `202` answers and from the
    /// monitor) before it is sent: add fields a client expects, rename or
    /// remove some. It costs a JSON tree per document, so it is off by
    /// default.
    ///
    /// ```
    /// use tower_accepted::AcceptedLayer;
    ///
    /// // Clients of the original two-oh-two example read `job_id`.
    /// let layer = AcceptedLayer::new().map_status_document(|record, document| {
    ///     document.insert("job_id".into(), record.id.to_string().into());
    /// });
    /// # let _ = layer;
    /// ```
    pub fn map_status_document<F>(self, map: F) -> Self
    where
        F: Fn(&JobRecord, &mut serde_json::Map<String, serde_json::Value>) + Send + Sync + 'static,
    {
        let map = Arc::new(map);
        self.configure(|c| c.map_document = Some(map))
    }

    /// Headers that tell callers apart for `Idempotency-Key`, besides
    /// `Authorization` and `Cookie` (say an `X-Api-Key`).
    ///
    /// A key is scoped by the request's [`owner`](Self::owner) when there is
    /// one; otherwise by a digest of these headers' values, so that the same
    /// key sent with other credentials never yields another caller's job.
    /// Requests with neither share one scope: use unguessable keys (UUIDs),
    /// as the IETF draft advises.
    ///
    /// ```
    /// use http::HeaderName;
    /// use tower_accepted::AcceptedLayer;
    ///
    /// let layer = AcceptedLayer::new().credential_headers([HeaderName::from_static("x-api-key")]);
    /// # let _ = layer;
    /// ```
    pub fn credential_headers<I>(self, names: I) -> Self
    where
        I: IntoIterator<Item = HeaderName>,
    {
        let mut all = self.shared.config.credentials.to_vec();
        for name in names {
            if !all.contains(&name) {
                all.push(name);
            }
        }
        let all: Arc<[HeaderName]> = all.into();
        self.configure(|c| c.credentials = all)
    }

    /// Claims every path under the job routes' prefix, not only the job
    /// routes themselves (default off).
    ///
    /// By default the layer answers the monitor and result of a well-formed
    /// id and `GET /jobs`; any other path under `/jobs/` (`/jobs/stats`, a
    /// malformed id) and `POST /jobs` reach the application, which answers
    /// its own routes there and its own `404` otherwise. With the prefix
    /// claimed, the layer answers them itself: `404` problem documents (and
    /// `405` for other methods on `/jobs`), as for an unknown id.
    ///
    /// ```
    /// use tower_accepted::AcceptedLayer;
    ///
    /// let layer = AcceptedLayer::new().claim_prefix(true);
    /// # let _ = layer;
    /// ```
    pub fn claim_prefix(self, claim: bool) -> Self {
        self.configure(|c| c.claim_prefix = claim)
    }

    /// Shows the text of service errors, panics and store errors in status
    /// and problem documents (default off: they may carry internals).
    pub fn expose_errors(self, expose: bool) -> Self {
        self.configure(|c| c.expose_errors = expose)
    }

    /// How long an event stream of a job (`Accept: text/event-stream`, or
    /// the monitor's path and `/events`) may stay silent before the layer
    /// sends a comment line, which keeps proxies from closing a quiet
    /// stream (default 15 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_accepted::AcceptedLayer;
    ///
    /// let layer = AcceptedLayer::new().event_heartbeat(Duration::from_secs(30));
    /// ```
    pub fn event_heartbeat(self, interval: Duration) -> Self {
        // A zero interval would send comment lines without end.
        self.configure(|c| c.event_heartbeat = interval.max(Duration::from_millis(100)))
    }

    /// How many event streams may be open at once in this process, across
    /// every layer made from this one (default 1024); beyond, a request for
    /// a stream gets `503` with `Retry-After`. Each open stream holds a
    /// connection; the layer's own cost per stream is a few hundred bytes.
    ///
    /// ```
    /// use tower_accepted::AcceptedLayer;
    ///
    /// let layer = AcceptedLayer::new().max_event_streams(10_000);
    /// ```
    pub fn max_event_streams(self, streams: usize) -> Self {
        self.configure(|c| c.max_event_streams = streams)
    }

    /// The job routes alone, as a service: see [`JobRoutes`].
    ///
    /// ```
    /// use axum::{Router, routing::post};
    /// use tower_accepted::AcceptedLayer;
    ///
    /// let layer = AcceptedLayer::new();
    /// let app: Router = Router::new()
    ///     .route("/reports", post(|| async { "done" }).layer(layer.clone()))
    ///     .nest_service("/jobs", layer.job_routes());
    /// # let _ = app;
    /// ```
    pub fn job_routes(&self) -> JobRoutes<St> {
        JobRoutes::new(Arc::clone(&self.shared))
    }
}

impl<S, St> Layer<S> for AcceptedLayer<St> {
    type Service = Accepted<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        Accepted::new(inner, Arc::clone(&self.shared))
    }
}

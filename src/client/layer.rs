//! [`FollowLayer`]: the configuration of the following client.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use tower_layer::Layer;

use super::config::{Config, OnStatus};
use super::document::StatusDocument;
use super::service::Follow;

/// Applies [`Follow`] to an HTTP client: a `202 Accepted` is followed to the
/// job's result, which is returned as if the call had been synchronous.
///
/// Defaults: polls paced by `Retry-After` within 100 ms to 30 s, otherwise
/// by exponential backoff with jitter from 500 ms; long polls
/// (`Prefer: wait=30`); a deadline of 10 minutes and at most 1,000 polls per
/// job; up to 10 monitor redirects in a row; status documents up to 1 MiB;
/// `Authorization` and `Cookie` forwarded to the polls of the same origin;
/// no `DELETE` when the caller gives up.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower::ServiceBuilder;
/// use tower_accepted::client::FollowLayer;
///
/// let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
/// let client = ServiceBuilder::new()
///     .layer(
///         FollowLayer::new()
///             .deadline(Duration::from_secs(120))
///             .max_interval(Duration::from_secs(10))
///             .on_status(|doc| eprintln!("{} {:?}", doc.status_word(), doc.progress())),
///     )
///     .service(client);
/// # let _ = client;
/// ```
#[derive(Clone, Debug, Default)]
pub struct FollowLayer {
    config: Config,
}

impl FollowLayer {
    /// A layer with the default configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shortest wait between two polls (default 100 ms): a smaller
    /// `Retry-After` (such as `0`) is raised to it.
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.config.min_interval = interval;
        self
    }

    /// The longest wait between two polls (default 30 s): a larger
    /// `Retry-After` is lowered to it, and backoff stops growing there.
    pub fn max_interval(mut self, interval: Duration) -> Self {
        self.config.max_interval = interval;
        self
    }

    /// The first wait of the exponential backoff used when the server sends
    /// no `Retry-After` (default 500 ms); it doubles at each poll up to
    /// [`max_interval`](Self::max_interval), each wait drawn at random from
    /// its upper half.
    pub fn initial_interval(mut self, interval: Duration) -> Self {
        self.config.initial_interval = interval;
        self
    }

    /// How long to follow a job, from its `202` (default 10 minutes): then
    /// [`FollowError::DeadlineExceeded`](super::FollowError::DeadlineExceeded).
    /// Polls in flight are cut short by it, and long polls ask no more than
    /// what is left of it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_accepted::client::FollowLayer;
    ///
    /// let layer = FollowLayer::new().deadline(Duration::from_secs(30)).max_polls(100);
    /// # let _ = layer;
    /// ```
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.deadline = deadline;
        self
    }

    /// The most polls of one job, redirects included (default 1,000): then
    /// [`FollowError::TooManyPolls`](super::FollowError::TooManyPolls).
    pub fn max_polls(mut self, polls: u32) -> Self {
        self.config.max_polls = polls;
        self
    }

    /// Long polling (default 30 s): every poll carries `Prefer: wait=N`
    /// (RFC 7240), so a server that supports it (as this crate's does) holds
    /// the poll until the job ends or N seconds pass, and a finished job is
    /// seen at once rather than one interval later. When the server says it
    /// waited (`Preference-Applied`), the next poll goes out after
    /// [`min_interval`](Self::min_interval) only; otherwise polls are paced by
    /// `Retry-After`. `Duration::ZERO` turns long polling off.
    ///
    /// Status documents arrive once per long poll: to draw progress, use a
    /// short one (1 or 2 s).
    pub fn long_poll(mut self, wait: Duration) -> Self {
        self.config.long_poll = wait;
        self
    }

    /// The most redirects of a monitor (`301`, `302`, `307`, `308`) followed
    /// in a row (default 10): then
    /// [`FollowError::RedirectLoop`](super::FollowError::RedirectLoop), as
    /// when a redirect comes back to a URL already visited.
    pub fn max_redirects(mut self, redirects: u32) -> Self {
        self.config.max_redirects = redirects;
        self
    }

    /// The largest status document read (default 1 MiB). A larger JSON
    /// answer of a `Location` monitor is taken for the result and streamed
    /// through; a larger `Operation-Location` document is
    /// [`Malformed`](super::FollowError::Malformed).
    pub fn max_document_size(mut self, bytes: usize) -> Self {
        self.config.max_document_size = bytes;
        self
    }

    /// Sends `DELETE` to the status monitor when the caller gives up on a
    /// job that has not ended: when the response future is dropped (a
    /// timeout around the call, a canceled task), and when following stops
    /// at the deadline, the poll limit or a monitor answer it cannot follow.
    /// The `DELETE` is sent on a task of its own (within 10 s, its answer
    /// ignored). Off by default: dropping the future only stops polling.
    ///
    /// ```
    /// use tower_accepted::client::FollowLayer;
    ///
    /// // A CLI whose Ctrl-C should stop the server's work too.
    /// let layer = FollowLayer::new().cancel_on_drop(true);
    /// # let _ = layer;
    /// ```
    pub fn cancel_on_drop(mut self, cancel: bool) -> Self {
        self.config.cancel_on_drop = cancel;
        self
    }

    /// More request headers to send with the polls, the final `GET` and the
    /// `DELETE`, besides `Authorization` and `Cookie` (which always go).
    ///
    /// ```
    /// use tower_accepted::client::FollowLayer;
    ///
    /// let layer = FollowLayer::new().forward_headers(|name| name.as_str().starts_with("x-tenant"));
    /// # let _ = layer;
    /// ```
    pub fn forward_headers(mut self, predicate: impl Fn(&HeaderName) -> bool + Send + Sync + 'static) -> Self {
        self.config.forward = Some(Arc::new(predicate));
        self
    }

    /// Forwards the headers to monitors and results on other origins (scheme
    /// and authority) than the original request's too. Off by default, so
    /// that credentials do not leak to a host a `Location` names.
    pub fn forward_cross_origin(mut self, forward: bool) -> Self {
        self.config.forward_cross_origin = forward;
        self
    }

    /// Calls `callback` with every status document received, in order: the
    /// `202`'s and each poll's. A request can carry its own callback instead,
    /// as an [`OnStatus`] in its extensions.
    pub fn on_status(mut self, callback: impl Fn(&StatusDocument) + Send + Sync + 'static) -> Self {
        self.config.on_status = Some(OnStatus::new(callback));
        self
    }
}

impl<S> Layer<S> for FollowLayer {
    type Service = Follow<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Follow::new(inner, Arc::new(self.config.clone()))
    }
}

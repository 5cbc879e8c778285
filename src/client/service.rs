//! [`Follow`]: the following client middleware.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::config::Config;
use super::error::FollowError;
use super::future::ResponseFuture;
use super::poll::Start;
use crate::BoxError;

/// Middleware that follows `202 Accepted` answers of an HTTP client to the
/// job's final response; made by [`FollowLayer`](super::FollowLayer).
///
/// Every answer but a `202` is returned as it is. A `202` with a monitor link
/// is followed (see the [module docs](super) for the styles understood):
/// what the caller receives is the final response, as if the call had been
/// synchronous, or a [`FollowError`].
///
/// It wraps any `Service<Request<B>>` whose request body `B` has a
/// `Default` (the empty body of the polls), such as
/// `hyper_util::client::legacy::Client` with `Full<Bytes>` bodies, or, in
/// process, an [`Accepted`](crate::Accepted) service:
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use bytes::Bytes;
/// use http::{Request, Response, StatusCode};
/// use http_body_util::{BodyExt, Full};
/// use tower::{Layer, ServiceExt};
/// use tower_accepted::{AcceptedLayer, RequestBody, client::FollowLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let slow = tower::service_fn(|_: Request<RequestBody<Full<Bytes>>>| async {
///     tokio::time::sleep(Duration::from_millis(200)).await;
///     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("converted"))))
/// });
/// let server = AcceptedLayer::new().layer(slow);
/// let client = FollowLayer::new().layer(server);
///
/// let request = Request::post("/convert").body(Full::new(Bytes::from("input"))).unwrap();
/// let response = client.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), StatusCode::OK);
/// assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "converted");
/// # }
/// ```
pub struct Follow<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Follow<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    /// The wrapped client.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped client, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped client, taken out.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for Follow<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Follow<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follow")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Follow<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Default + Send + 'static,
    ResBody: Body + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<super::FollowBody<ResBody>>;
    type Error = FollowError<S::Error>;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(FollowError::Service)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The ready service takes this request; a clone sends the polls.
        let start = Start::new(&request, self.inner.clone(), Arc::clone(&self.config));
        ResponseFuture::new(self.inner.call(request), start)
    }
}

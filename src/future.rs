//! Response futures of [`Accepted`](crate::Accepted) and
//! [`JobRoutes`](crate::JobRoutes).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::body::{Reply, ResponseBody};

/// A response the layer makes itself (`202`, errors).
pub(crate) type LayerResponse = Pin<Box<dyn Future<Output = Response<Bytes>> + Send>>;

/// An answer of the job routes, which may stream events.
pub(crate) type RoutesResponse = Pin<Box<dyn Future<Output = Response<Reply>> + Send>>;

pin_project! {
    /// Response future of [`Accepted`](crate::Accepted): the layer's own
    /// answer, or the wrapped service's, which it waits to be ready for
    /// first (the layer itself is always ready, so that its job routes
    /// answer while the wrapped service is busy).
    pub struct ResponseFuture<S, R>
    where
        S: Service<R>,
    {
        #[pin]
        kind: Kind<S, R, S::Future>,
    }
}

pin_project! {
    #[project = KindProj]
    #[project_replace = KindTaken]
    enum Kind<S, R, F> {
        Ready { service: S, request: R },
        Inner { #[pin] future: F },
        Layer { future: LayerResponse },
        Routes { future: RoutesResponse },
        Called,
    }
}

impl<S: Service<R>, R> ResponseFuture<S, R> {
    /// `request` for `service`, once it is ready.
    pub(crate) fn inner(service: S, request: R) -> Self {
        Self {
            kind: Kind::Ready { service, request },
        }
    }

    pub(crate) fn layer(future: LayerResponse) -> Self {
        Self {
            kind: Kind::Layer { future },
        }
    }

    pub(crate) fn routes(future: RoutesResponse) -> Self {
        Self {
            kind: Kind::Routes { future },
        }
    }
}

impl<S: Service<R>, R> std::fmt::Debug for ResponseFuture<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<S, R, B> Future for ResponseFuture<S, R>
where
    S: Service<R, Response = Response<B>>,
{
    type Output = Result<Response<ResponseBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            match kind.as_mut().project() {
                KindProj::Ready { service, .. } => {
                    ready!(service.poll_ready(cx))?;
                    if let KindTaken::Ready { mut service, request } = kind.as_mut().project_replace(Kind::Called) {
                        let future = service.call(request);
                        kind.set(Kind::Inner { future });
                    }
                }
                KindProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    kind.set(Kind::Called);
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                KindProj::Layer { future } => {
                    let response = ready!(future.as_mut().poll(cx));
                    kind.set(Kind::Called);
                    return Poll::Ready(Ok(response.map(ResponseBody::full)));
                }
                KindProj::Routes { future } => {
                    let response = ready!(future.as_mut().poll(cx));
                    kind.set(Kind::Called);
                    return Poll::Ready(Ok(response.map(ResponseBody::reply)));
                }
                // Polled after it answered: a caller's bug, as for any future.
                KindProj::Called => panic!("`ResponseFuture` polled after completion"),
            }
        }
    }
}

/// Response future of [`JobRoutes`](crate::JobRoutes).
pub struct JobRoutesFuture {
    future: RoutesResponse,
}

impl JobRoutesFuture {
    pub(crate) fn new(future: RoutesResponse) -> Self {
        Self { future }
    }
}

impl std::fmt::Debug for JobRoutesFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobRoutesFuture")
    }
}

impl Future for JobRoutesFuture {
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = ready!(self.future.as_mut().poll(cx));
        Poll::Ready(Ok(response.map(ResponseBody::reply)))
    }
}

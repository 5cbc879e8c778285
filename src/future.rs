//! Response futures of [`Accepted`](crate::Accepted) and
//! [`JobRoutes`](crate::JobRoutes).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;

use crate::body::ResponseBody;

/// A response the layer makes itself (job routes, `202`, errors).
pub(crate) type Answer = Pin<Box<dyn Future<Output = Response<Bytes>> + Send>>;

pin_project! {
    /// Response future of [`Accepted`](crate::Accepted).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Answer { future: Answer },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn answer(future: Answer) -> Self {
        Self {
            kind: Kind::Answer { future },
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::inner)))
            }
            KindProj::Answer { future } => {
                let response = ready!(future.as_mut().poll(cx));
                Poll::Ready(Ok(response.map(ResponseBody::full)))
            }
        }
    }
}

/// Response future of [`JobRoutes`](crate::JobRoutes).
pub struct JobRoutesFuture {
    future: Answer,
}

impl JobRoutesFuture {
    pub(crate) fn new(future: Answer) -> Self {
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
        Poll::Ready(Ok(response.map(ResponseBody::full)))
    }
}

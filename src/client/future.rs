//! [`ResponseFuture`] of [`Follow`](super::Follow).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::FollowBody;
use super::error::FollowError;
use super::poll::{Start, follow};
use crate::BoxError;

type Following<B, E> = Pin<Box<dyn Future<Output = Result<Response<FollowBody<B>>, FollowError<E>>> + Send>>;

pin_project! {
    /// Response future of [`Follow`](super::Follow): the original call, then,
    /// after a `202`, the polls. Dropping it stops them (and, with
    /// [`cancel_on_drop`](super::FollowLayer::cancel_on_drop), cancels the job).
    pub struct ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S::Future, Start<S>, Following<ResBody, S::Error>>,
        _body: PhantomData<fn(ReqBody)>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, St, Fo> {
        Call { #[pin] future: F, start: Option<St> },
        Following { future: Fo },
    }
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn new(future: S::Future, start: Start<S>) -> Self {
        Self {
            state: State::Call {
                future,
                start: Some(start),
            },
            _body: PhantomData,
        }
    }
}

impl<S, ReqBody, ResBody> std::fmt::Debug for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Call { .. } => "call",
            State::Following { .. } => "following",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Default + Send + 'static,
    ResBody: Body + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response<FollowBody<ResBody>>, FollowError<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Call { future, start } => {
                    let response = ready!(future.poll(cx)).map_err(FollowError::Service)?;
                    let start = match start.take() {
                        Some(start) if response.status() == StatusCode::ACCEPTED => start,
                        _ => return Poll::Ready(Ok(response.map(FollowBody::new))),
                    };
                    let future: Following<ResBody, S::Error> = Box::pin(follow(start, response));
                    this.state.set(State::Following { future });
                }
                StateProj::Following { future } => return future.as_mut().poll(cx),
            }
        }
    }
}

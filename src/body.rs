//! The body types the layer hands on: [`RequestBody`] to the wrapped
//! service and [`ResponseBody`] to the server.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Empty;
use pin_project_lite::pin_project;

use crate::BoxError;
use crate::events::stream::EventBody;

/// `Debug` and `Body` for a public body type whose `kind` field is a
/// [`BytesOrBody`]: the public types differ in name only.
macro_rules! body_over_kind {
    ($name:ident, $bytes:literal, $body:literal) => {
        impl<B> std::fmt::Debug for $name<B> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.kind.fmt_as(f, $bytes, $body)
            }
        }

        impl<B> Body for $name<B>
        where
            B: Body,
            B::Error: Into<BoxError>,
        {
            type Data = Bytes;
            type Error = BoxError;

            fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
                self.project().kind.poll_frame(cx)
            }

            fn is_end_stream(&self) -> bool {
                self.kind.is_end_stream()
            }

            fn size_hint(&self) -> SizeHint {
                self.kind.size_hint()
            }
        }
    };
}

pin_project! {
    /// The request body the wrapped service receives: the whole body, read
    /// before the job was accepted, or, for requests the layer lets through,
    /// the original body streamed as it comes.
    ///
    /// In axum nothing changes for handlers (axum converts any body). A plain
    /// hyper service behind the layer takes `Request<RequestBody<Incoming>>`.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::BodyExt;
    /// use tower_accepted::RequestBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let body: RequestBody<http_body_util::Empty<Bytes>> = RequestBody::buffered(Bytes::from("hello"));
    /// let bytes = body.collect().await.unwrap().to_bytes();
    /// assert_eq!(bytes, "hello");
    /// # }
    /// ```
    pub struct RequestBody<B> {
        #[pin]
        kind: BytesOrBody<B>,
    }
}

impl<B> RequestBody<B> {
    /// A body that is already whole.
    pub fn buffered(data: Bytes) -> Self {
        Self {
            kind: BytesOrBody::bytes(data),
        }
    }

    /// The original body, streamed through.
    pub fn streaming(body: B) -> Self {
        Self {
            kind: BytesOrBody::Body { body },
        }
    }
}

body_over_kind!(RequestBody, "RequestBody::Buffered", "RequestBody::Streaming");

pin_project! {
    /// The response body of [`Accepted`](crate::Accepted): the wrapped
    /// service's own body for requests the layer lets through, or a whole
    /// body (status documents, problem documents, stored results) for the
    /// rest.
    ///
    /// Without a type parameter it is the body of
    /// [`JobRoutes`](crate::JobRoutes), which never streams.
    ///
    /// ```
    /// use http::Request;
    /// use http_body_util::BodyExt;
    /// use tower::ServiceExt;
    /// use tower_accepted::AcceptedLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let routes = AcceptedLayer::new().job_routes();
    /// let request = Request::get("/jobs/not-an-id").body(()).unwrap();
    /// let response = routes.oneshot(request).await.unwrap();
    /// let body = response.into_body().collect().await.unwrap().to_bytes();
    /// assert!(body.starts_with(b"{"));
    /// # }
    /// ```
    pub struct ResponseBody<B = Empty<Bytes>> {
        #[pin]
        kind: BytesOrBody<B>,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: BytesOrBody::Body { body },
        }
    }

    pub(crate) fn full(data: Bytes) -> Self {
        Self {
            kind: BytesOrBody::bytes(data),
        }
    }

    /// The body of an answer of the job routes.
    pub(crate) fn reply(reply: Reply) -> Self {
        match reply {
            Reply::Whole(data) => Self::full(data),
            Reply::Events(events) => Self {
                kind: BytesOrBody::Events { events },
            },
        }
    }
}

/// The body of an answer of the job routes: whole, or an event stream.
#[derive(Debug)]
pub(crate) enum Reply {
    Whole(Bytes),
    Events(EventBody),
}

body_over_kind!(ResponseBody, "ResponseBody::Full", "ResponseBody::Inner");

pin_project! {
    /// Whole bytes, or a body streamed through: what each public body type
    /// of the crate holds behind its own name, so that they share one
    /// implementation.
    #[project = BytesOrBodyProj]
    pub(crate) enum BytesOrBody<B> {
        Bytes { data: Option<Bytes> },
        Body { #[pin] body: B },
        // Only ever in a `ResponseBody`.
        Events { events: EventBody },
    }
}

impl<B> BytesOrBody<B> {
    /// Whole bytes; an empty body ends at once.
    pub(crate) fn bytes(data: Bytes) -> Self {
        Self::Bytes {
            data: (!data.is_empty()).then_some(data),
        }
    }

    /// `Debug` for the public type that holds it, under the names of its
    /// two kinds.
    pub(crate) fn fmt_as(&self, f: &mut std::fmt::Formatter<'_>, bytes: &str, body: &str) -> std::fmt::Result {
        match self {
            Self::Bytes { data } => f
                .debug_struct(bytes)
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .finish(),
            Self::Body { .. } => f.write_str(body),
            Self::Events { .. } => f.write_str("ResponseBody::Events"),
        }
    }
}

impl<B> Body for BytesOrBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            BytesOrBodyProj::Bytes { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            BytesOrBodyProj::Body { body } => poll_bytes(body, cx),
            BytesOrBodyProj::Events { events } => Pin::new(events).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Bytes { data } => data.is_none(),
            Self::Body { body } => body.is_end_stream(),
            Self::Events { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Bytes { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Self::Body { body } => body.size_hint(),
            Self::Events { events } => events.size_hint(),
        }
    }
}

/// Polls a frame of `body`, turning its data into `Bytes` (free when it
/// already is).
pub(crate) fn poll_bytes<B>(body: Pin<&mut B>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    match body.poll_frame(cx) {
        Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(
            frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
        ))),
        Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
        Poll::Ready(None) => Poll::Ready(None),
        Poll::Pending => Poll::Pending,
    }
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// It is longer than the limit.
    TooLarge,
    /// The body failed (the peer went away, the stream broke).
    Body(BoxError),
}

/// Reads `body` whole, refusing to hold more than `limit` bytes. Trailers
/// are not kept.
pub(crate) fn read_limited<B>(body: B, limit: usize) -> ReadLimited<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let too_large = body.size_hint().lower() > limit as u64;
    ReadLimited {
        body,
        limit,
        len: 0,
        first: None,
        rest: BytesMut::new(),
        too_large,
    }
}

pin_project! {
    /// The future of [`read_limited`]: small, since it sits in every job.
    pub(crate) struct ReadLimited<B> {
        #[pin]
        body: B,
        limit: usize,
        len: usize,
        // One chunk (the common case) is kept as it is, without a copy.
        first: Option<Bytes>,
        rest: BytesMut,
        too_large: bool,
    }
}

impl<B> Future for ReadLimited<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Bytes, ReadError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if *this.too_large {
            return Poll::Ready(Err(ReadError::TooLarge));
        }
        loop {
            let frame = match ready!(this.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Poll::Ready(Err(ReadError::Body(e.into()))),
                None => break,
            };
            let Ok(mut data) = frame.into_data() else { continue };
            *this.len = this.len.saturating_add(data.remaining());
            if *this.len > *this.limit {
                return Poll::Ready(Err(ReadError::TooLarge));
            }
            match &this.first {
                None if this.rest.is_empty() => *this.first = Some(data.copy_to_bytes(data.remaining())),
                _ => {
                    if let Some(first) = this.first.take() {
                        this.rest.reserve(*this.len);
                        this.rest.extend_from_slice(&first);
                    }
                    this.rest.extend_from_slice(&data.copy_to_bytes(data.remaining()));
                }
            }
        }
        Poll::Ready(Ok(match this.first.take() {
            Some(first) => first,
            None => std::mem::take(this.rest).freeze(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use std::collections::VecDeque;

    /// A body that yields its chunks one frame at a time.
    struct Chunks(VecDeque<&'static str>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|s| Ok(Frame::data(Bytes::from(s)))))
        }
    }

    #[tokio::test]
    async fn reads_one_and_many_chunks() {
        let one = read_limited(Full::new(Bytes::from("abc")), 10).await.unwrap();
        assert_eq!(one, "abc");
        let many = Chunks(["ab", "cd", "e"].into());
        assert_eq!(read_limited(many, 5).await.unwrap(), "abcde");
        let many = Chunks(["ab", "cd", "ef"].into());
        assert!(matches!(read_limited(many, 5).await, Err(ReadError::TooLarge)));
        assert!(matches!(
            read_limited(Full::new(Bytes::from("abcdef")), 5).await,
            Err(ReadError::TooLarge)
        ));
        assert_eq!(read_limited(Chunks(VecDeque::new()), 5).await.unwrap(), "");
    }
}

//! [`FollowBody`]: the final response's body, and bounded reading of
//! monitor answers.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::BoxError;
use crate::body::{BytesOrBody, poll_bytes};

pin_project! {
    /// The body of the response [`Follow`](super::Follow) returns: the
    /// wrapped client's body streamed through, or, when the client had to
    /// read the answer to know it was the result (a `Location` monitor that
    /// answers `200` with the result), the bytes it read followed by the rest.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use tower_accepted::client::FollowBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let body = FollowBody::new(Full::new(Bytes::from("report")));
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "report");
    /// # }
    /// ```
    pub struct FollowBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        // The wrapped client's body, or bytes already read whole.
        Plain { #[pin] body: BytesOrBody<B> },
        Prefixed { prefix: Option<Bytes>, rest: Pin<Box<B>> },
    }
}

impl<B> FollowBody<B> {
    /// The wrapped client's body, streamed through.
    pub fn new(body: B) -> Self {
        Self {
            kind: Kind::Plain {
                body: BytesOrBody::Body { body },
            },
        }
    }

    pub(crate) fn buffered(data: Bytes) -> Self {
        Self {
            kind: Kind::Plain {
                body: BytesOrBody::bytes(data),
            },
        }
    }

    pub(crate) fn prefixed(prefix: Bytes, rest: Pin<Box<B>>) -> Self {
        Self {
            kind: Kind::Prefixed {
                prefix: Some(prefix),
                rest,
            },
        }
    }
}

impl<B> std::fmt::Debug for FollowBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Plain { body } => body.fmt_as(f, "FollowBody::Buffered", "FollowBody::Inner"),
            Kind::Prefixed { .. } => f.write_str("FollowBody::Prefixed"),
        }
    }
}

impl<B> Body for FollowBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Plain { body } => body.poll_frame(cx),
            KindProj::Prefixed { prefix, rest } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                poll_bytes(rest.as_mut(), cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Plain { body } => body.is_end_stream(),
            Kind::Prefixed { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Plain { body } => body.size_hint(),
            Kind::Prefixed { prefix, rest } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower().saturating_add(extra));
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper.saturating_add(extra));
                }
                hint
            }
        }
    }
}

/// A body read up to a limit.
pub(crate) enum Read<B> {
    /// The whole body (trailers dropped).
    Whole(Bytes),
    /// The first bytes, past the limit, and the rest of the body.
    Partial(Bytes, Pin<Box<B>>),
}

/// Reads `body` whole if it is at most `limit` bytes long.
pub(crate) async fn read_bounded<B>(body: B, limit: usize) -> Result<Read<B>, BoxError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut body = Box::pin(body);
    let mut buf = BytesMut::new();
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(Into::into)?;
        if let Ok(mut data) = frame.into_data() {
            while data.has_remaining() {
                let chunk = data.chunk();
                buf.extend_from_slice(chunk);
                let n = chunk.len();
                data.advance(n);
            }
            if buf.len() > limit {
                return Ok(Read::Partial(buf.freeze(), body));
            }
        }
    }
    Ok(Read::Whole(buf.freeze()))
}

/// Reads and drops an answer's body, so that its connection can be used
/// again; stops at `limit` bytes.
pub(crate) async fn drain<B>(body: B, limit: usize)
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let _ = read_bounded(body, limit).await;
}

//! A response body that breaks half way.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tower_accepted::BoxError;

/// A response body that yields `partial`, then fails with `error`.
pub struct Broken {
    sent: bool,
    error: &'static str,
}

impl Broken {
    pub fn new(error: &'static str) -> Self {
        Self { sent: false, error }
    }
}

impl http_body::Body for Broken {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        if std::mem::replace(&mut self.sent, true) {
            Poll::Ready(Some(Err(self.error.into())))
        } else {
            Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(b"partial")))))
        }
    }
}

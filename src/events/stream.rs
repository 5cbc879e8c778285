//! The body of one event stream: the job's changes as its feed hands them
//! on, a comment line when nothing was sent for a while, and its end.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, watch};

use super::hub::{Change, Latest};
use crate::BoxError;
use crate::admission::Family;

/// A comment line: ignored by clients, it keeps proxies from closing a
/// quiet stream.
const HEARTBEAT: &[u8] = b":\n\n";

/// How long a stream waits, once a shutdown's drain has ended, for the end
/// of its job that the drain may just have recorded.
const CLOSING_GRACE: Duration = Duration::from_millis(200);

/// The body of an event stream. Polling it costs nothing while its job
/// does not change: it waits on its job's channel and on one timer.
pub(crate) struct EventBody {
    stream: Pin<Box<dyn Stream<Item = Bytes> + Send>>,
}

impl std::fmt::Debug for EventBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventBody")
    }
}

/// What a stream keeps between its events.
pub(crate) struct Watching {
    /// The job's changes, from its feed.
    pub(crate) changes: watch::Receiver<Latest>,
    /// The id of the last event sent (or the client's `Last-Event-ID`).
    pub(crate) last: u64,
    /// Sent before anything else: the job as the request found it.
    pub(crate) first: Option<Bytes>,
    /// How long the stream may stay silent.
    pub(crate) heartbeat: Duration,
    /// Fired when a shutdown's drain ends: the stream ends, so that the
    /// server can close its connection.
    pub(crate) family: Arc<Family>,
    /// Its place among the open streams, given back when it ends.
    pub(crate) _permit: OwnedSemaphorePermit,
    /// Whether the job's last event was sent.
    pub(crate) done: bool,
}

/// What a stream does next.
enum Next {
    Send(Bytes),
    End,
    Wait,
}

impl Watching {
    /// The latest change, if the client has not seen it.
    fn take_latest(&mut self) -> Next {
        if self.done {
            return Next::End;
        }
        let latest = self.changes.borrow_and_update().clone();
        match latest.as_deref() {
            Some(Change::Event(frame)) if frame.id > self.last => {
                self.last = frame.id;
                self.done = frame.terminal;
                Next::Send(frame.bytes.clone())
            }
            Some(Change::Gone) => Next::End,
            _ => Next::Wait,
        }
    }

    /// The next piece of the body, `None` at its end.
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            match self.take_latest() {
                Next::Send(bytes) => return Some(bytes),
                Next::End => return None,
                Next::Wait => {}
            }
            tokio::select! {
                biased;
                changed = self.changes.changed() => {
                    // The feed went without a last word (its task was
                    // dropped with the runtime): the client reconnects.
                    if changed.is_err() {
                        return None;
                    }
                }
                () = self.family.closing.fired() => {
                    // The drain's last ends (jobs it stopped) are being
                    // read: a moment for them, then the stream ends.
                    let _ = tokio::time::timeout(CLOSING_GRACE, self.changes.changed()).await;
                    return match self.take_latest() {
                        Next::Send(bytes) => {
                            self.done = true;
                            Some(bytes)
                        }
                        Next::End | Next::Wait => None,
                    };
                }
                () = tokio::time::sleep(self.heartbeat) => return Some(Bytes::from_static(HEARTBEAT)),
            }
        }
    }
}

impl EventBody {
    /// The body of a stream in the state `watching`.
    pub(crate) fn new(watching: Watching) -> Self {
        let stream = futures_util::stream::unfold(watching, |mut watching| async move {
            let bytes = watching.next().await?;
            Some((bytes, watching))
        });
        Self {
            stream: Box::pin(stream),
        }
    }
}

impl Body for EventBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.stream
            .poll_next_unpin(cx)
            .map(|bytes| bytes.map(|bytes| Ok(Frame::data(bytes))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

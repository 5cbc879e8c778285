//! Server-Sent Events on the monitor: `GET /jobs/{id}` with
//! `Accept: text/event-stream`, or `GET /jobs/{id}/events`, answers a
//! stream of the job's changes.
//!
//! Each event is named by the status word, carries the status document (the
//! monitor's, links included, in the completion style) as its data, and has
//! the record's `updated_at_ms` as its `id:`, which rises with every change
//! of the job. The stream ends after the terminal event. A client that
//! reconnects with `Last-Event-ID` gets what it has not seen: the job's
//! current state when it changed since (or the id is not one the server
//! gave), nothing until the next change when it did not, and `204 No
//! Content` (which tells a browser's `EventSource` to stop) when the
//! terminal event was its last. Intermediate changes may be coalesced; the
//! terminal event never is.
//!
//! Every stream of a job in one process shares one reader of the job
//! ([`feed`]), woken by the store's announcements
//! ([`JobStore::wait_change`]), and one formatted event per change, so a
//! thousand streams of one job cost what one does: a store read or two
//! (the wait's own, on a shared store) and one encoding per change, and nothing while the job does not change but a comment line
//! per heartbeat interval.
//!
//! ```
//! use axum::{Router, routing::post};
//! use std::time::Duration;
//! use tower_accepted::AcceptedLayer;
//!
//! let layer = AcceptedLayer::new()
//!     .event_heartbeat(Duration::from_secs(15))
//!     .max_event_streams(1_000);
//! let app: Router = Router::new()
//!     .route("/reports", post(|| async { "done" }))
//!     .layer(layer);
//! // curl -N -H 'Accept: text/event-stream' http://…/jobs/<id>
//! ```

mod feed;
mod frame;
pub(crate) mod hub;
pub(crate) mod stream;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::body::Reply;
use crate::config::LayerState;
use crate::response::busy;
use crate::store::{JobRecord, JobStore};
use stream::{EventBody, Watching};

/// The media type of an event stream.
const EVENT_STREAM: &str = "text/event-stream";

/// Whether a request's `Accept` asks for an event stream: a media range
/// `text/event-stream` (any case, any parameters) not weighted `q=0`.
pub(crate) fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let is_events = parts.next().is_some_and(|t| t.eq_ignore_ascii_case(EVENT_STREAM));
            is_events && !parts.any(|p| matches!(p.split_once('='), Some((q, w)) if q.trim().eq_ignore_ascii_case("q") && w.trim().parse::<f32>().is_ok_and(|w| w <= 0.0)))
        })
}

/// The client's `Last-Event-ID` when it is one of ours (a number); any
/// other value is an id the server does not know.
fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers.get("last-event-id")?.to_str().ok()?.trim().parse().ok()
}

/// The answer to a request for the event stream of `record`'s job, which
/// the caller may see.
pub(crate) fn open<St: JobStore>(
    shared: &Arc<LayerState<St>>,
    record: &JobRecord,
    headers: &HeaderMap,
) -> Response<Reply> {
    let config = &shared.config;
    let last = last_event_id(headers);
    let seen = last == Some(record.updated_at_ms);
    let terminal = record.status.is_terminal();
    if terminal && seen {
        let mut response = Response::new(Reply::Whole(Bytes::new()));
        *response.status_mut() = StatusCode::NO_CONTENT;
        return response;
    }
    // Once a shutdown's drain has ended, a stream would end at once, and
    // its client come back every `retry:`: `503` tells it to stop (an
    // `EventSource` does) and when to try again.
    if shared.family.closing.is_fired() {
        return busy(config, "the server is shutting down; try again later").map(Reply::Whole);
    }
    let Ok(permit) = Arc::clone(&shared.streams).try_acquire_owned() else {
        return busy(config, "too many event streams are open; try again later").map(Reply::Whole);
    };
    // How long a browser waits before it reconnects, as for a poll.
    let mut first = format!("retry: {}\n", config.retry_after.saturating_mul(1000)).into_bytes();
    if seen {
        // The id again, without an event: a client's last event id is the
        // last one its stream named, and this stream named none yet.
        first.extend_from_slice(format!("id: {}\n\n", record.updated_at_ms).as_bytes());
    } else {
        first.extend_from_slice(&frame::frame_of(config, record).bytes);
    }
    let changes = if terminal {
        tokio::sync::watch::channel(None).1
    } else {
        let (changes, started) = shared.events.subscribe(record.id);
        if let Some(started) = started {
            tokio::spawn(feed::feed(Arc::clone(shared), record.id, started));
        }
        changes
    };
    let body = EventBody::new(Watching {
        changes,
        last: record.updated_at_ms,
        first: Some(Bytes::from(first)),
        heartbeat: config.event_heartbeat,
        family: Arc::clone(&shared.family),
        _permit: permit,
        done: terminal,
    });
    with_stream_headers(Response::new(Reply::Events(body)))
}

/// The answer to `HEAD` of a stream the caller may see: its headers, no
/// body (and no place among the open streams).
pub(crate) fn head() -> Response<Reply> {
    with_stream_headers(Response::new(Reply::Whole(Bytes::new())))
}

fn with_stream_headers(mut response: Response<Reply>) -> Response<Reply> {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(EVENT_STREAM));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Tells nginx not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn accept_asks_for_events() {
        assert!(wants_events(&accept("text/event-stream")));
        assert!(wants_events(&accept("application/json, Text/Event-Stream;q=0.5")));
        assert!(!wants_events(&accept("text/event-stream;q=0")));
        assert!(!wants_events(&accept("application/json")));
        assert!(!wants_events(&accept("*/*")));
        assert!(!wants_events(&HeaderMap::new()));
    }

    #[test]
    fn last_event_id_is_a_number() {
        let mut headers = HeaderMap::new();
        headers.insert("last-event-id", HeaderValue::from_static(" 1234 "));
        assert_eq!(last_event_id(&headers), Some(1234));
        headers.insert("last-event-id", HeaderValue::from_static("abc"));
        assert_eq!(last_event_id(&headers), None);
    }
}

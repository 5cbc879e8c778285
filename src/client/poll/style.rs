//! What a monitor's answer means, in each style a server may follow.
//!
//! | style | the `202` names | running | done |
//! |---|---|---|---|
//! | this crate, two-oh-two | `Location` (and `Operation-Location`) | `200` + status document | `303` or `201` + `Location` of the result |
//! | Microsoft REST guidelines | `Operation-Location` | `200` + `status` | `200` + terminal `status`, result at `resourceLocation` |
//! | Azure "Location" | `Location` | `202` | `200` with the result itself |
//! | result polled directly | `Location` of the result | `404` | `200` with the result; `410` once expired |

use std::time::{Duration, SystemTime};

use http::header::{CONTENT_TYPE, LOCATION};
use http::response::Parts;
use http::{HeaderMap, Method, Response, StatusCode, Uri};
use http_body::Body;

use super::timing;
use crate::BoxError;
use crate::client::body::{FollowBody, Read, drain, read_bounded};
use crate::client::config::{Config, OnStatus};
use crate::client::document::{Status, StatusDocument};
use crate::client::error::FollowError;
use crate::client::link::resolve;

/// `Operation-Location`.
pub(crate) const OPERATION_LOCATION: &str = "operation-location";

/// How the monitor was named, which decides how its answers are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `Operation-Location`: every `2xx` answer is a status document.
    Operation,
    /// `Location` alone: a status monitor, or the result itself.
    Location,
}

/// What the client knows of the job and its monitor so far.
#[derive(Debug)]
pub(crate) struct Watch {
    pub(crate) mode: Mode,
    /// The method of the original request (PUT and PATCH fetch their own URL
    /// at the end, as Microsoft's guidelines say).
    pub(crate) method: Method,
    /// The original request's URL.
    pub(crate) origin: Uri,
    /// The `202`'s `Location`, when `Operation-Location` named another URL:
    /// where a POST's result is, if the final document names none.
    pub(crate) location: Option<Uri>,
    /// The `Location` answered `202` (the Azure "Location" style) or `404`
    /// (the result polled directly) while the job ran: its `200` is the
    /// result.
    pub(crate) not_ready_seen: bool,
    /// The `Location` answered as a status monitor does (a status document,
    /// or a `200` while running): it is a monitor, not the result.
    pub(crate) monitor_seen: bool,
}

/// How soon to poll again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    pub(crate) retry_after: Option<Duration>,
    /// The server held the poll as `Prefer: wait` asked.
    pub(crate) long_polled: bool,
}

/// What to do after one answer of the monitor.
pub(crate) enum Step<B, E> {
    /// Still running: poll again.
    Wait(Pace),
    /// The monitor moved: poll there, at once.
    Redirect(Uri),
    /// Done: the result is at this URL.
    Fetch(Uri),
    /// Done: this is the result.
    Done(Response<FollowBody<B>>),
    /// Done without a result, or not understood.
    Fail(FollowError<E>),
}

impl Pace {
    fn of(headers: &HeaderMap) -> Self {
        let long_polled = headers
            .get_all("preference-applied")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|p| p.trim().to_ascii_lowercase().starts_with("wait")));
        Self {
            retry_after: timing::retry_after(headers, SystemTime::now()),
            long_polled,
        }
    }
}

/// Reads the status document of an answer's body, if it is one.
pub(crate) async fn document<B>(body: B, limit: usize) -> Option<StatusDocument>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    match read_bounded(body, limit).await {
        Ok(Read::Whole(bytes)) => StatusDocument::parse(&bytes),
        _ => None,
    }
}

fn is_json(headers: &HeaderMap) -> Option<bool> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    Some(essence == "application/json" || essence.ends_with("+json"))
}

/// The meaning of the monitor's answer at `url`.
pub(crate) async fn step<B, E>(
    watch: &mut Watch,
    config: &Config,
    on_status: Option<&OnStatus>,
    url: &Uri,
    response: Response<B>,
) -> Step<B, E>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    let status = parts.status;
    let limit = config.max_document_size;
    let report = |doc: &StatusDocument| {
        if let Some(on_status) = on_status {
            on_status.call(doc);
        }
    };
    let link = |parts: &Parts| {
        parts
            .headers
            .get(LOCATION)
            .map(|v| v.to_str().ok().and_then(|l| resolve(url, l)))
    };
    match status {
        // Done: the result is elsewhere (`303`, or `201` + `Location`).
        StatusCode::SEE_OTHER | StatusCode::CREATED if parts.headers.contains_key(LOCATION) => {
            let target = link(&parts).flatten();
            if let Some(doc) = document(body, limit).await {
                report(&doc);
            }
            match target {
                Some(target) => Step::Fetch(target),
                None => Step::Fail(FollowError::malformed(url, "its Location is no URL")),
            }
        }
        StatusCode::SEE_OTHER => {
            drain(body, limit).await;
            Step::Fail(FollowError::malformed(url, "303 See Other without Location"))
        }
        StatusCode::MOVED_PERMANENTLY
        | StatusCode::FOUND
        | StatusCode::TEMPORARY_REDIRECT
        | StatusCode::PERMANENT_REDIRECT => {
            drain(body, limit).await;
            match link(&parts) {
                Some(Some(target)) => Step::Redirect(target),
                Some(None) => Step::Fail(FollowError::malformed(url, "its Location is no URL")),
                None => Step::Fail(FollowError::malformed(url, format!("{status} without Location"))),
            }
        }
        StatusCode::GONE => {
            drain(body, limit).await;
            Step::Fail(FollowError::Expired { url: url.clone() })
        }
        // The result polled directly is not there yet; a monitor does not know the job.
        StatusCode::NOT_FOUND => {
            drain(body, limit).await;
            if watch.mode == Mode::Location && !watch.monitor_seen {
                watch.not_ready_seen = true;
                Step::Wait(Pace::of(&parts.headers))
            } else {
                Step::Fail(FollowError::NotFound { url: url.clone() })
            }
        }
        // Busy: try again as asked.
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            drain(body, limit).await;
            Step::Wait(Pace::of(&parts.headers))
        }
        StatusCode::ACCEPTED if watch.mode == Mode::Location => {
            watch.not_ready_seen = true;
            if let Some(doc) = document(body, limit).await {
                report(&doc);
            }
            Step::Wait(Pace::of(&parts.headers))
        }
        s if s.is_success() => match watch.mode {
            Mode::Operation => operation_answer(watch, config, url, parts, body, &report).await,
            Mode::Location => location_answer(watch, config, url, parts, body, &report).await,
        },
        s if watch.mode == Mode::Operation || watch.monitor_seen => {
            drain(body, limit).await;
            Step::Fail(FollowError::malformed(url, format!("unexpected status {s}")))
        }
        // The result polled directly is an error response: that is the result.
        _ => Step::Done(Response::from_parts(parts, FollowBody::new(body))),
    }
}

/// A `2xx` answer of an `Operation-Location` monitor: a status document.
async fn operation_answer<B, E>(
    watch: &mut Watch,
    config: &Config,
    url: &Uri,
    parts: Parts,
    body: B,
    report: &impl Fn(&StatusDocument),
) -> Step<B, E>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let bytes = match read_bounded(body, config.max_document_size).await {
        Ok(Read::Whole(bytes)) => bytes,
        Ok(Read::Partial(..)) => return Step::Fail(FollowError::malformed(url, "the status document is too large")),
        Err(e) => return Step::Fail(FollowError::Body(e)),
    };
    let Some(doc) = StatusDocument::parse(&bytes) else {
        if parts.status == StatusCode::ACCEPTED {
            // Still accepted, nothing more said.
            return Step::Wait(Pace::of(&parts.headers));
        }
        return Step::Fail(FollowError::malformed(
            url,
            "no status document (a JSON object with a known `status`)",
        ));
    };
    watch.monitor_seen = true;
    report(&doc);
    verdict(watch, url, doc, parts, bytes)
}

/// A `2xx` answer of a `Location` URL: the result once the URL has
/// answered "not ready" (`202`, `404`) and for `204`; otherwise a status
/// document, or else the monitor's "still running" (RFC 9110 and
/// two-oh-two: the monitor answers `200` until a `303` or `201` names the
/// result).
async fn location_answer<B, E>(
    watch: &mut Watch,
    config: &Config,
    url: &Uri,
    parts: Parts,
    body: B,
    report: &impl Fn(&StatusDocument),
) -> Step<B, E>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    if parts.status == StatusCode::NO_CONTENT || watch.not_ready_seen {
        return Step::Done(Response::from_parts(parts, FollowBody::new(body)));
    }
    if is_json(&parts.headers) == Some(false) {
        drain(body, config.max_document_size).await;
        watch.monitor_seen = true;
        return Step::Wait(Pace::of(&parts.headers));
    }
    let bytes = match read_bounded(body, config.max_document_size).await {
        Ok(Read::Whole(bytes)) => bytes,
        Ok(Read::Partial(prefix, rest)) => {
            return Step::Done(Response::from_parts(parts, FollowBody::prefixed(prefix, rest)));
        }
        Err(e) => return Step::Fail(FollowError::Body(e)),
    };
    match StatusDocument::parse(&bytes) {
        Some(doc) => {
            watch.monitor_seen = true;
            report(&doc);
            verdict(watch, url, doc, parts, bytes)
        }
        None => {
            watch.monitor_seen = true;
            Step::Wait(Pace::of(&parts.headers))
        }
    }
}

/// What a status document from `url` says to do.
fn verdict<B, E>(watch: &Watch, url: &Uri, doc: StatusDocument, parts: Parts, bytes: bytes::Bytes) -> Step<B, E> {
    let result = doc.result_link().map(|link| resolve(url, link));
    match (doc.status(), result) {
        (Status::NotStarted | Status::Running, _) => Step::Wait(Pace::of(&parts.headers)),
        (Status::Succeeded | Status::Failed, Some(None)) => {
            Step::Fail(FollowError::malformed(url, "the result link is no URL"))
        }
        (Status::Succeeded, Some(Some(result))) => Step::Fetch(result),
        (Status::Succeeded, None) => {
            if watch.mode == Mode::Operation {
                if matches!(watch.method, Method::PUT | Method::PATCH) {
                    return Step::Fetch(watch.origin.clone());
                }
                if let Some(location) = &watch.location {
                    return Step::Fetch(location.clone());
                }
            }
            // The document is all there is (or, for a `Location` monitor, the result itself).
            Step::Done(Response::from_parts(parts, FollowBody::buffered(bytes)))
        }
        // A handler's error response, stored by this crate's servers: the result.
        (Status::Failed, Some(Some(result))) if doc.has_stored_response() => Step::Fetch(result),
        (Status::Failed, _) => Step::Fail(FollowError::Failed(Box::new(doc))),
        (Status::Canceled, _) => Step::Fail(FollowError::Canceled(Box::new(doc))),
    }
}

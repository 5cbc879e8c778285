//! Every response the layer builds itself, for the submit path and the job
//! routes alike: `202`s, monitors, replays, and problem documents.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::config::{Completion, Config};
use crate::document::{result_link_shown, status_document};
use crate::headers::{
    JSON, NO_STORE, OPERATION_LOCATION, PREFERENCE_APPLIED, Preferences, jittered_retry_after, retry_after_secs,
    seconds_value,
};
use crate::problem::Problem;
use crate::store::{ErrorCode, JobError, JobRecord, StoreError, unix_ms};

/// A `HEAD` answer: the headers of the `GET` answer, no body.
pub(crate) fn strip_body(response: &mut Response<Bytes>) {
    let len = response.body().len();
    if !response.headers().contains_key(header::CONTENT_LENGTH) {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    *response.body_mut() = Bytes::new();
}

pub(crate) fn not_found() -> Response<Bytes> {
    Problem::new(StatusCode::NOT_FOUND)
        .with_detail("no job has this id")
        .into_response()
}

pub(crate) fn gone() -> Response<Bytes> {
    Problem::new(StatusCode::GONE)
        .with_detail("the job expired and its result was removed")
        .into_response()
}

pub(crate) fn method_not_allowed(allow: &'static str) -> Response<Bytes> {
    let mut response = Problem::new(StatusCode::METHOD_NOT_ALLOWED)
        .with_detail(format!("this job route allows {allow}"))
        .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// The answer while the store cannot be reached.
pub(crate) fn unavailable(config: &Config, error: &StoreError) -> Response<Bytes> {
    let detail = if config.expose_errors {
        error.to_string()
    } else {
        "the job store is unavailable; try again later".to_owned()
    };
    Problem::new(StatusCode::SERVICE_UNAVAILABLE)
        .with_detail(detail)
        .with_retry_after(jittered_retry_after(config.retry_after, config.max_retry_after))
        .into_response()
}

/// The status document a monitor answers for `record`, with the result's
/// link when the completion style shows it (returned too, for `Location`);
/// an event stream's events carry the same document.
pub(crate) fn monitor_document(config: &Config, record: &JobRecord) -> (Bytes, Option<String>) {
    let every_terminal_result = config.completion == Completion::Ok;
    let result =
        result_link_shown(record, every_terminal_result).then(|| config.link(&config.routes.result, record.id));
    let body = status_document(
        record,
        result.as_deref(),
        every_terminal_result,
        config.map_document.as_ref(),
    );
    (body, result)
}

/// The status monitor's answer for `record`, per the completion style.
pub(crate) fn monitor_response(config: &Config, record: &JobRecord) -> Response<Bytes> {
    let (body, result) = monitor_document(config, record);
    let mut response = Response::new(body);
    // Room for every header a monitor or a `202` carries, at once.
    *response.headers_mut() = http::HeaderMap::with_capacity(6);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, JSON);
    headers.insert(header::CACHE_CONTROL, NO_STORE);
    if !record.status.is_terminal() {
        let seconds = retry_after_secs(record, config.retry_after, config.max_retry_after, unix_ms);
        headers.insert(header::RETRY_AFTER, seconds_value(seconds));
    } else if record.has_response() {
        let status = match config.completion {
            Completion::SeeOther => Some(StatusCode::SEE_OTHER),
            Completion::Created => Some(StatusCode::CREATED),
            Completion::Ok => None,
        };
        if let Some(status) = status {
            if let Some(Ok(location)) = result.map(HeaderValue::try_from) {
                headers.insert(header::LOCATION, location);
            }
            *response.status_mut() = status;
        }
    }
    response
}

pub(crate) fn canceled() -> Response<Bytes> {
    Problem::new(StatusCode::CONFLICT)
        .with_detail("the job was canceled; it has no result")
        .into_response()
}

/// The result route's answer for a job that failed without a response.
pub(crate) fn failure(error: &JobError) -> Response<Bytes> {
    let status = if error.code == ErrorCode::Timeout {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    Problem::new(status)
        .with_detail(error.message.clone())
        .with_code(error.code.as_str())
        .into_response()
}

/// The stored response, as the handler gave it, with a `Content-Length`
/// of the body as stored (the handler's own may not be: the answer to a
/// deferred `HEAD` names the length of a body it does not have).
pub(crate) fn replay(mut response: Response<Bytes>) -> Response<Bytes> {
    // A stored response is status, headers and body; whatever else a store
    // hands back is not replayed.
    *response.version_mut() = http::Version::default();
    response.extensions_mut().clear();
    let len = response.body().len();
    let status = response.status();
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_LENGTH);
    // RFC 9110 §8.6: none on a `1xx` or `204`, nor on a `304`.
    if !(status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED) {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    response
}

/// `202 Accepted` for a new job: its status document, `Location`,
/// `Operation-Location` and `Retry-After`.
pub(crate) fn accepted_response(config: &Config, record: &JobRecord, prefs: Preferences) -> Response<Bytes> {
    let mut response = monitor_response(config, record);
    *response.status_mut() = StatusCode::ACCEPTED;
    let monitor = config.link(&config.routes.monitor, record.id);
    if let Ok(location) = HeaderValue::from_maybe_shared(Bytes::from(monitor)) {
        let headers = response.headers_mut();
        headers.insert(OPERATION_LOCATION, location.clone());
        headers.insert(header::LOCATION, location);
    }
    if prefs.respond_async {
        response
            .headers_mut()
            .insert(PREFERENCE_APPLIED, HeaderValue::from_static("respond-async"));
    }
    response
}

/// `503` with a `Retry-After` drawn at random, so that refused clients do
/// not all come back at once.
pub(crate) fn busy(config: &Config, detail: &'static str) -> Response<Bytes> {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE)
        .with_detail(detail)
        .with_retry_after(jittered_retry_after(config.retry_after, config.max_retry_after))
        .into_response()
}

pub(crate) fn key_mismatch() -> Response<Bytes> {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
        .with_detail("this Idempotency-Key was used for a different request")
        .into_response()
}

//! Answers of the job routes: monitor, result, cancel, and their errors.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::config::{Completion, Config, Shared};
use crate::protocol::{
    self, JSON, NO_STORE, PREFERENCE_APPLIED, Preferences, Problem, jittered_retry_after, result_link_shown,
    retry_after_secs, seconds_value, status_document, whole_seconds,
};
use crate::routes::JobRoute;
use crate::store::{
    Cancel, JobError, JobId, JobRecord, JobStatus, JobStore, Lookup, StoreError, StoredResponse, unix_ms,
};

/// The answer to a request for one of the job routes.
pub(crate) async fn job_route<St: JobStore, B>(
    shared: &Shared<St>,
    route: JobRoute,
    request: Request<B>,
) -> Response<Bytes> {
    let (parts, body) = request.into_parts();
    // Job routes take no body; let it go before any wait.
    drop(body);
    let head = parts.method == Method::HEAD;
    let caller = shared.config.owner_of(&parts);
    let caller = caller.as_deref();
    let mut response = match (route, &parts.method) {
        (JobRoute::Monitor(id), &Method::GET | &Method::HEAD) => {
            let prefs = protocol::preferences(&parts.headers);
            match protocol::query_wait(parts.uri.query()) {
                Ok(wait) => monitor(shared, id, caller, wait, prefs).await,
                Err(_) => Problem::new(StatusCode::BAD_REQUEST)
                    .with_detail("`wait` is a non-negative number of seconds")
                    .into_response(),
            }
        }
        (JobRoute::Monitor(id), &Method::DELETE) => cancel(shared, id, caller).await,
        (JobRoute::Result(id), &Method::GET | &Method::HEAD) => result(shared, id, caller).await,
        (JobRoute::Collection, &Method::GET | &Method::HEAD) => crate::list::list(shared, caller, &parts.uri).await,
        (JobRoute::NotFound, _) => not_found(),
        (JobRoute::Monitor(_), _) => method_not_allowed("GET, HEAD, DELETE"),
        (JobRoute::Result(_) | JobRoute::Collection, _) => method_not_allowed("GET, HEAD"),
    };
    if head {
        strip_body(&mut response);
    }
    response
}

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

fn gone() -> Response<Bytes> {
    Problem::new(StatusCode::GONE)
        .with_detail("the job expired and its result was removed")
        .into_response()
}

fn method_not_allowed(allow: &'static str) -> Response<Bytes> {
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

/// What `caller` may know of `id`: another owner's job is unknown to it.
async fn lookup<St: JobStore>(shared: &Shared<St>, id: JobId, caller: Option<&str>) -> Result<Lookup, StoreError> {
    Ok(match shared.store.get(id).await? {
        Lookup::Found(record) if !record.visible_to(caller) => Lookup::Unknown,
        other => other,
    })
}

async fn monitor<St: JobStore>(
    shared: &Shared<St>,
    id: JobId,
    caller: Option<&str>,
    query_wait: Option<Duration>,
    prefs: Preferences,
) -> Response<Bytes> {
    let config = &shared.config;
    let wait = query_wait.or(prefs.wait).map(|w| w.min(config.max_long_poll));
    let mut found = lookup(shared, id, caller).await;
    let mut waited = None;
    if let Ok(Lookup::Found(record)) = &found
        && !record.status.is_terminal()
        && let Some(wait) = wait.filter(|w| !w.is_zero())
    {
        // A store error is answered by the lookup after it.
        let _ = tokio::time::timeout(wait, shared.store.wait_terminal(id)).await;
        found = lookup(shared, id, caller).await;
        waited = Some(wait);
    }
    let mut response = match found {
        Ok(Lookup::Found(record)) => monitor_response(config, &record),
        Ok(Lookup::Expired) => gone(),
        Ok(Lookup::Unknown) => not_found(),
        Err(e) => unavailable(config, &e),
    };
    // Applied only when it was: a job that had already ended, or a wait of
    // zero, waited for nothing.
    if query_wait.is_none()
        && let Some(wait) = waited
    {
        let applied = format!("wait={}", whole_seconds(wait));
        if let Ok(value) = HeaderValue::from_str(&applied) {
            response.headers_mut().insert(PREFERENCE_APPLIED, value);
        }
    }
    response
}

/// The status monitor's answer for `record`, per the completion style.
pub(crate) fn monitor_response(config: &Config, record: &JobRecord) -> Response<Bytes> {
    let every_terminal_result = config.completion == Completion::Ok;
    let result =
        result_link_shown(record, every_terminal_result).then(|| config.link(&config.routes.result, record.id));
    let body = status_document(
        record,
        result.as_deref(),
        every_terminal_result,
        config.map_document.as_ref(),
    );
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

async fn result<St: JobStore>(shared: &Shared<St>, id: JobId, caller: Option<&str>) -> Response<Bytes> {
    let config = &shared.config;
    let record = match lookup(shared, id, caller).await {
        Ok(Lookup::Found(record)) => record,
        Ok(Lookup::Expired) => return gone(),
        Ok(Lookup::Unknown) => return not_found(),
        Err(e) => return unavailable(config, &e),
    };
    match record.status {
        JobStatus::Pending | JobStatus::Running => {
            let monitor = config.link(&config.routes.monitor, id);
            let seconds = retry_after_secs(&record, config.retry_after, config.max_retry_after, unix_ms);
            let mut response = Problem::new(StatusCode::NOT_FOUND)
                .with_detail(format!(
                    "the job is {}; its result is not ready",
                    record.status.as_str()
                ))
                .with_retry_after(seconds)
                .into_response();
            if let Ok(link) = HeaderValue::try_from(format!("<{monitor}>; rel=\"monitor\"")) {
                response.headers_mut().insert(header::LINK, link);
            }
            response
        }
        JobStatus::Canceled => canceled(),
        JobStatus::Succeeded | JobStatus::Failed if record.has_response() => match shared.store.response(id).await {
            Ok(Some(stored)) => replay(stored),
            // Removed (`404`) or expired (`410`) between the two reads.
            Ok(None) => match lookup(shared, id, caller).await {
                Ok(Lookup::Expired) => gone(),
                Ok(_) => not_found(),
                Err(e) => unavailable(config, &e),
            },
            Err(e) => unavailable(config, &e),
        },
        JobStatus::Succeeded | JobStatus::Failed => {
            let error = record
                .error
                .unwrap_or_else(|| JobError::new(JobError::ERROR, "the job failed"));
            failure(&error)
        }
    }
}

fn canceled() -> Response<Bytes> {
    Problem::new(StatusCode::CONFLICT)
        .with_detail("the job was canceled; it has no result")
        .into_response()
}

/// The result route's answer for a job that failed without a response.
pub(crate) fn failure(error: &JobError) -> Response<Bytes> {
    let status = if error.code == JobError::TIMEOUT {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    Problem::new(status)
        .with_detail(error.message.clone())
        .with_code(error.code.clone())
        .into_response()
}

/// The stored response, as the handler gave it, with a `Content-Length`
/// of the body as stored (the handler's own may not be: the answer to a
/// deferred `HEAD` names the length of a body it does not have).
pub(crate) fn replay(stored: StoredResponse) -> Response<Bytes> {
    let len = stored.body.len();
    let mut response = Response::new(stored.body);
    *response.status_mut() = stored.status;
    *response.headers_mut() = stored.headers;
    let status = response.status();
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_LENGTH);
    // RFC 9110 §8.6: none on a `1xx` or `204`, nor on a `304`.
    if !(status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED) {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    response
}

async fn cancel<St: JobStore>(shared: &Shared<St>, id: JobId, caller: Option<&str>) -> Response<Bytes> {
    let config = &shared.config;
    if config.owner.is_some() {
        match lookup(shared, id, caller).await {
            Ok(Lookup::Unknown) => return not_found(),
            Err(e) => return unavailable(config, &e),
            Ok(_) => {}
        }
    }
    let answer = match shared.store.cancel(id).await {
        Ok(Cancel::Canceled) => Ok(true),
        // A canceled job keeps its record until it expires, whatever DELETEs
        // follow (two clients may cancel it at once); a finished one is
        // forgotten.
        Ok(Cancel::AlreadyTerminal) => match shared.store.get(id).await {
            Ok(Lookup::Found(record)) if record.status == JobStatus::Canceled => Ok(true),
            Ok(_) => shared.store.delete(id).await,
            Err(e) => Err(e),
        },
        Ok(Cancel::Expired) => return gone(),
        Ok(Cancel::Unknown) => Ok(false),
        Err(e) => Err(e),
    };
    match answer {
        Ok(true) => {
            let mut response = Response::new(Bytes::new());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        Ok(false) => not_found(),
        Err(e) => unavailable(config, &e),
    }
}

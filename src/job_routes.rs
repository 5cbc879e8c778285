//! Answers of the job routes: monitor, result, cancel, and their errors.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::body::Reply;
use crate::config::LayerState;
use crate::headers::{PREFERENCE_APPLIED, Preferences, retry_after_secs, whole_seconds};
use crate::problem::Problem;
use crate::response::{
    canceled, failure, gone, method_not_allowed, monitor_response, not_found, replay, strip_body, unavailable,
};
use crate::routes::JobRoute;
use crate::store::{Cancel, ErrorCode, JobError, JobId, JobStatus, JobStore, Lookup, StoreError, unix_ms};
use crate::telemetry::{StoreOp, store};

/// The answer to a request for one of the job routes.
pub(crate) async fn respond<St: JobStore, B>(
    shared: &Arc<LayerState<St>>,
    route: JobRoute,
    request: Request<B>,
) -> Response<Reply> {
    let (parts, body) = request.into_parts();
    // Job routes take no body; let it go before any wait.
    drop(body);
    let head = parts.method == Method::HEAD;
    let caller = shared.config.owner_of(&parts);
    let caller = caller.as_deref();
    let mut response = match (route, &parts.method) {
        (JobRoute::Monitor(id), &Method::GET) if crate::events::wants_events(&parts.headers) => {
            return events(shared, id, caller, &parts.headers).await;
        }
        (JobRoute::Events(id), &Method::GET) => return events(shared, id, caller, &parts.headers).await,
        (JobRoute::Events(id), &Method::HEAD) => match lookup(shared, id, caller).await {
            Ok(Lookup::Found(_)) => return crate::events::head(),
            Ok(Lookup::Expired) => gone(),
            Ok(Lookup::Unknown) => not_found(),
            Err(e) => unavailable(&shared.config, &e),
        },
        (JobRoute::Monitor(id), &Method::GET | &Method::HEAD) => {
            let prefs = crate::headers::preferences(&parts.headers);
            match crate::query::query_wait(parts.uri.query()) {
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
        (JobRoute::Events(_), _) => method_not_allowed("GET, HEAD"),
    };
    if head {
        strip_body(&mut response);
    }
    response.map(Reply::Whole)
}

/// The event stream of `id`, for a caller who may see it.
async fn events<St: JobStore>(
    shared: &Arc<LayerState<St>>,
    id: JobId,
    caller: Option<&str>,
    headers: &http::HeaderMap,
) -> Response<Reply> {
    let response = match lookup(shared, id, caller).await {
        Ok(Lookup::Found(record)) => return crate::events::open(shared, &record, headers),
        Ok(Lookup::Expired) => gone(),
        Ok(Lookup::Unknown) => not_found(),
        Err(e) => unavailable(&shared.config, &e),
    };
    response.map(Reply::Whole)
}

/// What `caller` may know of `id`: another owner's job is unknown to it.
async fn lookup<St: JobStore>(shared: &LayerState<St>, id: JobId, caller: Option<&str>) -> Result<Lookup, StoreError> {
    Ok(
        match store(&shared.telemetry.meters, StoreOp::Get, shared.store.get(id)).await? {
            Lookup::Found(record) if !record.visible_to(caller) => Lookup::Unknown,
            other => other,
        },
    )
}

async fn monitor<St: JobStore>(
    shared: &LayerState<St>,
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
        // A store error is answered by the lookup after it. Once a
        // shutdown's drain has ended, the server is closing its connections
        // and waits for answers under way: the job's state now, at once.
        let _waiting = shared.telemetry.meters.long_poll();
        let waiting = tokio::time::timeout(wait, shared.store.wait_terminal(id));
        tokio::select! {
            biased;
            () = shared.family.closing.fired() => {}
            _ = waiting => {}
        }
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

async fn result<St: JobStore>(shared: &LayerState<St>, id: JobId, caller: Option<&str>) -> Response<Bytes> {
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
        JobStatus::Succeeded | JobStatus::Failed if record.has_response() => {
            match store(&shared.telemetry.meters, StoreOp::Response, shared.store.response(id)).await {
                Ok(Some(stored)) => replay(stored),
                // Removed (`404`) or expired (`410`) between the two reads.
                Ok(None) => match lookup(shared, id, caller).await {
                    Ok(Lookup::Expired) => gone(),
                    Ok(_) => not_found(),
                    Err(e) => unavailable(config, &e),
                },
                Err(e) => unavailable(config, &e),
            }
        }
        JobStatus::Succeeded | JobStatus::Failed => {
            let error = record
                .error
                .unwrap_or_else(|| JobError::new(ErrorCode::Error, "the job failed"));
            failure(&error)
        }
    }
}

async fn cancel<St: JobStore>(shared: &LayerState<St>, id: JobId, caller: Option<&str>) -> Response<Bytes> {
    let config = &shared.config;
    if config.owner.is_some() {
        match lookup(shared, id, caller).await {
            Ok(Lookup::Unknown) => return not_found(),
            Err(e) => return unavailable(config, &e),
            Ok(_) => {}
        }
    }
    let answer = match store(&shared.telemetry.meters, StoreOp::Cancel, shared.store.cancel(id)).await {
        Ok(Cancel::Canceled) => {
            crate::telemetry::canceled(&shared.telemetry.meters, id);
            Ok(true)
        }
        // A canceled job keeps its record until it expires, whatever DELETEs
        // follow (two clients may cancel it at once); a finished one is
        // forgotten.
        Ok(Cancel::AlreadyTerminal) => {
            match store(&shared.telemetry.meters, StoreOp::Get, shared.store.get(id)).await {
                Ok(Lookup::Found(record)) if record.status == JobStatus::Canceled => Ok(true),
                Ok(_) => store(&shared.telemetry.meters, StoreOp::Delete, shared.store.delete(id)).await,
                Err(e) => Err(e),
            }
        }
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

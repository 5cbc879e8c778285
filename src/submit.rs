//! The deferral path: read the request, check it, accept it as a job and
//! answer `202 Accepted` (or the response itself, for `Prefer: wait`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tokio::sync::oneshot;
use tower_service::Service;

use crate::BoxError;
use crate::answer::{failure, monitor_response, replay, strip_body, unavailable};
use crate::body::{ReadError, RequestBody, read_limited};
use crate::config::Shared;
use crate::job::Job;
use crate::protocol::{self, OPERATION_LOCATION, PREFERENCE_APPLIED, Preferences, Problem, whole_seconds};
use crate::runner::{self, Work};
use crate::store::{Created, IdempotencyKey, JobId, JobRecord, JobStore, Outcome, StoreError};

/// Accepts `request` as a job for `service` (already ready) and answers;
/// a `HEAD` submission gets the answer's headers without its body.
pub(crate) async fn submit<S, St, B, ResBody>(
    shared: Arc<Shared<St>>,
    service: S,
    request: Request<B>,
    prefs: Preferences,
) -> Response<Bytes>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    St: JobStore,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    let head = request.method() == Method::HEAD;
    let mut response = accept(shared, service, request, prefs).await;
    if head {
        strip_body(&mut response);
    }
    response
}

async fn accept<S, St, B, ResBody>(
    shared: Arc<Shared<St>>,
    service: S,
    request: Request<B>,
    prefs: Preferences,
) -> Response<Bytes>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    St: JobStore,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    let config = &shared.config;
    // Refuse before reading a body that could not be taken anyway.
    if !shared.runtime.accepting() {
        return busy(config.retry_after, "the server is shutting down");
    }
    if !shared.runtime.has_room() {
        return busy(config.retry_after, "too many jobs are under way; try again later");
    }
    let (parts, body) = request.into_parts();
    // A malformed key is refused before the body is read.
    let key = match protocol::idempotency_key(&parts.headers) {
        Ok(key) => key,
        Err(problem) => return problem.into_response(),
    };
    let body = match tokio::time::timeout(config.body_timeout, read_limited(body, config.max_body)).await {
        Ok(Ok(body)) => body,
        Ok(Err(ReadError::TooLarge)) => {
            return Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
                .with_detail(format!("the request body is larger than {} bytes", config.max_body))
                .into_response();
        }
        Ok(Err(ReadError::Body(_))) => {
            return Problem::new(StatusCode::BAD_REQUEST)
                .with_detail("the request body could not be read")
                .into_response();
        }
        Err(_) => {
            return Problem::new(StatusCode::REQUEST_TIMEOUT)
                .with_detail(format!(
                    "the request body did not arrive within {:?}",
                    config.body_timeout
                ))
                .into_response();
        }
    };
    if let Some(check) = &config.check
        && let Err(problem) = check(&parts, &body)
    {
        return problem.into_response();
    }
    let Some(admission) = shared.runtime.admit() else {
        return busy(config.retry_after, "too many jobs are under way; try again later");
    };
    let id = JobId::new();
    let owner = config.owner_of(&parts);
    let record = JobRecord::pending(id).with_owner(owner.clone());
    let created = match key {
        None => shared.store.create(record.clone()).await.map(|()| Created::New),
        Some(key) => {
            let fingerprint = protocol::fingerprint(&parts.method, &parts.uri, &body);
            let key = IdempotencyKey::new(owner.as_deref(), &key, fingerprint);
            shared.store.create_once(record.clone(), key).await
        }
    };
    match created {
        Ok(Created::New) => {}
        // A retry: the original job's 202, and nothing started.
        Ok(Created::Existing(original)) => return accepted(&shared, &original, prefs),
        Ok(Created::Mismatch) => {
            return Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
                .with_detail("this Idempotency-Key was used for a different request")
                .into_response();
        }
        Err(StoreError::Full) => return busy(config.retry_after, "the job store is full; try again later"),
        Err(e) => return unavailable(config, &e),
    }

    let job = Job::new(id);
    let mut request = Request::from_parts(parts, RequestBody::buffered(body));
    request.extensions_mut().insert(job.clone());
    let wait = match prefs.wait {
        Some(wait) => wait.min(config.max_wait),
        None if prefs.respond_async => Duration::ZERO,
        None => config.grace,
    };
    let (waiter, outcome) = if wait.is_zero() {
        (None, None)
    } else {
        let (tx, rx) = oneshot::channel();
        (Some(tx), Some(rx))
    };
    runner::spawn(
        Arc::clone(&shared),
        Work {
            service,
            request,
            job,
            admission,
            waiter,
        },
    );

    if let Some(outcome) = outcome
        && let Ok(Ok(outcome)) = tokio::time::timeout(wait, outcome).await
    {
        let mut response = match outcome {
            Outcome::Response(stored) => replay(stored),
            Outcome::Failed(error) => failure(&error),
        };
        if let Some(asked) = prefs.wait {
            let applied = format!("wait={}", whole_seconds(asked.min(config.max_wait)));
            if let Ok(value) = HeaderValue::from_str(&applied) {
                response.headers_mut().insert(PREFERENCE_APPLIED, value);
            }
        }
        return response;
    }
    accepted(&shared, &record, prefs)
}

/// `202 Accepted` for a new job: its status document, `Location`,
/// `Operation-Location` and `Retry-After`.
fn accepted<St>(shared: &Shared<St>, record: &JobRecord, prefs: Preferences) -> Response<Bytes> {
    let config = &shared.config;
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

fn busy(retry_after: u64, detail: &'static str) -> Response<Bytes> {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE)
        .with_detail(detail)
        .with_retry_after(retry_after)
        .into_response()
}

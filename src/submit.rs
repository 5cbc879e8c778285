//! The deferral path: read the request, check it, accept it as a job and
//! answer `202 Accepted` (or the response itself, for `Prefer: wait`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tokio::sync::oneshot;

use crate::BoxError;
use crate::body::{ReadError, RequestBody, read_limited};
use crate::config::{Config, LayerState};
use crate::headers::{PREFERENCE_APPLIED, Preferences, whole_seconds};
use crate::job::Job;
use crate::problem::Problem;
use crate::response::{accepted_response, busy, failure, key_mismatch, replay, strip_body, unavailable};
use crate::runner::{self, JobService, Work};
use crate::store::{Claim, CreatedOnce, IdempotencyKey, JobId, JobRecord, JobStore, KeyLookup, Outcome, StoreError};
use crate::telemetry::{self, Refusal, StoreOp, store};

/// Request bodies up to this size are copied when a job keeps them.
const SMALL_BODY: usize = 4096;

/// Accepts the request (`parts`, `body`) as a job for `service` and
/// answers; a `HEAD` submission gets the answer's headers without its body.
///
/// The future is boxed for every submission, so it is kept small: the caller
/// splits the request, rare paths (idempotency keys, `Prefer: wait`) are
/// boxed apart, and it is a function returning an `async` block rather than
/// an `async fn`, so that its arguments are held once.
#[allow(clippy::manual_async_fn, reason = "an `async fn` holds its arguments twice")]
pub(crate) fn submit<S, St, B>(
    shared: Arc<LayerState<St>>,
    service: S,
    parts: Parts,
    body: B,
    prefs: Preferences,
) -> impl Future<Output = Response<Bytes>> + Send
where
    S: JobService<B>,
    St: JobStore,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    async move {
        // The job's clock starts when its submission arrives.
        let accepted_at = tokio::time::Instant::now();
        let head = parts.method == Method::HEAD;
        let shared = &shared;
        let mut response = 'answer: {
            let config = &shared.config;
            // A malformed key is refused before the body is read.
            let key = match crate::idempotency::idempotency_key(&parts.headers) {
                Ok(key) => key,
                Err(problem) => break 'answer problem.into_response(),
            };
            // Refuse before reading a body that could not be taken anyway;
            // but a keyed request may be the retry of a kept job, which gets
            // its original `202` however full the server is.
            if key.is_none() {
                if !shared.admissions.accepting() {
                    break 'answer refused(shared, Refusal::ShuttingDown);
                }
                if !shared.admissions.has_room() {
                    break 'answer refused(shared, Refusal::Capacity);
                }
            }
            let body = match tokio::time::timeout(config.body_timeout, read_limited(body, config.max_body)).await {
                Ok(Ok(body)) => body,
                Ok(Err(ReadError::TooLarge)) => {
                    break 'answer Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
                        .with_detail(format!("the request body is larger than {} bytes", config.max_body))
                        .into_response();
                }
                Ok(Err(ReadError::Body(_))) => {
                    break 'answer Problem::new(StatusCode::BAD_REQUEST)
                        .with_detail("the request body could not be read")
                        .into_response();
                }
                Err(_) => {
                    break 'answer Problem::new(StatusCode::REQUEST_TIMEOUT)
                        .with_detail(format!(
                            "the request body did not arrive within {:?}",
                            config.body_timeout
                        ))
                        .into_response();
                }
            };
            // A small body is copied out of the connection's read buffer (a
            // hyper body is a slice of it), which the job would otherwise keep
            // alive for as long as it waits and runs.
            let body = if body.len() <= SMALL_BODY {
                Bytes::copy_from_slice(&body)
            } else {
                body
            };
            if let Some(check) = &config.check
                && let Err(problem) = check(&parts, &body)
            {
                break 'answer problem.into_response();
            }
            // A `Callback-Url` is checked (DNS included) before the job
            // takes a place; a submission without one pays one lookup.
            #[cfg(feature = "callbacks")]
            let callback = if parts.headers.contains_key(crate::callback::CALLBACK_URL) {
                match Box::pin(crate::callback::requested(config, &parts.headers)).await {
                    Ok(callback) => Some(callback),
                    Err(response) => break 'answer response,
                }
            } else {
                None
            };
            let owner = config.owner_of(&parts);
            let key = key.map(|key| {
                let scope = config.key_scope(&parts, owner.as_deref());
                let fingerprint = crate::idempotency::fingerprint(&parts.method, &parts.uri, &body);
                IdempotencyKey::new(Some(&scope), &key, fingerprint)
            });
            let admission = if shared.admissions.accepting() {
                shared.admissions.admit().ok_or(Refusal::Capacity)
            } else {
                Err(Refusal::ShuttingDown)
            };
            let admission = match admission {
                Ok(admission) => admission,
                Err(reason) => break 'answer Box::pin(refuse(shared, key.as_ref(), prefs, reason)).await,
            };
            let id = JobId::new();
            let record = JobRecord::pending(id);
            #[cfg(feature = "callbacks")]
            let has_callback = callback.is_some();
            #[cfg(feature = "callbacks")]
            let record = record.with_callback(callback);
            // What the `202` needs of the record, kept rather than a copy of it.
            let created_at_ms = record.created_at_ms;
            // A durable job runs here at once when a runner is free;
            // otherwise, on a replica that claims jobs, it waits in the
            // store's queue for the first replica with room.
            let (durable, permit) = match crate::durable::durable_job(config, &parts, &body) {
                None => (None, None),
                Some(durable) => {
                    let permit = Arc::clone(&shared.admissions.running).try_acquire_owned().ok();
                    let queued = permit.is_none() && shared.durability.claims_jobs();
                    (Some(durable.queued(queued)), permit)
                }
            };
            let is_durable = durable.is_some();
            let queued = durable.as_ref().is_some_and(|d| d.queued);
            let created = match (durable, &key) {
                (Some(durable), key) => {
                    let create = shared
                        .store
                        .create_durable(record.with_owner(owner), durable, key.clone());
                    Box::pin(store(&shared.telemetry.meters, StoreOp::CreateDurable, create)).await
                }
                (None, None) => store(
                    &shared.telemetry.meters,
                    StoreOp::Create,
                    shared.store.create(record.with_owner(owner)),
                )
                .await
                .map(|()| CreatedOnce::New),
                (None, Some(key)) => {
                    let create = shared.store.create_once(record.with_owner(owner), key.clone());
                    Box::pin(store(&shared.telemetry.meters, StoreOp::CreateOnce, create)).await
                }
            };
            match created {
                Ok(CreatedOnce::New) => telemetry::accepted(&shared.telemetry.meters, id),
                // A retry: the original job's 202, and nothing started.
                Ok(CreatedOnce::Existing(original)) => {
                    telemetry::replayed(original.id);
                    break 'answer accepted_response(&shared.config, &original, prefs);
                }
                Ok(CreatedOnce::Mismatch) => {
                    telemetry::key_reused(&shared.telemetry);
                    break 'answer key_mismatch();
                }
                Err(StoreError::Full) => {
                    drop(admission);
                    break 'answer Box::pin(refuse(shared, key.as_ref(), prefs, Refusal::StoreFull)).await;
                }
                Err(e) => {
                    telemetry::refused(&shared.telemetry, Refusal::StoreUnavailable);
                    break 'answer unavailable(config, &e);
                }
            }

            if queued {
                drop(admission);
                shared.durability.nudge.notify_one();
                let mut record = JobRecord::pending(id).with_attempt(0);
                record.created_at_ms = created_at_ms;
                record.updated_at_ms = created_at_ms;
                #[cfg(feature = "callbacks")]
                shown_callback(&mut record, has_callback);
                break 'answer accepted_response(&shared.config, &record, prefs);
            }
            let job = Job::of_claim(Claim::first(id), is_durable, accepted_at);
            #[cfg(feature = "callbacks")]
            if has_callback {
                job.expect_callback();
            }
            if shared.store.lease().is_some() {
                // Renewed from now on; the runner's task lets it go.
                shared.durability.leases.hold(&job);
            }
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
                Arc::clone(shared),
                Work {
                    service,
                    request,
                    job,
                    admission,
                    waiter,
                    permit,
                },
            );
            if let Some(outcome) = outcome
                && let Some(response) = Box::pin(wait_for(config, outcome, wait, prefs)).await
            {
                // Nobody knows this job's id: it is kept only for a key,
                // whose retries must find it, or a callback, whose delivery
                // reads it.
                #[cfg(feature = "callbacks")]
                let keep = key.is_some() || has_callback;
                #[cfg(not(feature = "callbacks"))]
                let keep = key.is_some();
                if !keep {
                    let _ = store(&shared.telemetry.meters, StoreOp::Delete, shared.store.delete(id)).await;
                }
                break 'answer response;
            }
            let mut record = JobRecord::pending(id);
            record.created_at_ms = created_at_ms;
            record.updated_at_ms = created_at_ms;
            #[cfg(feature = "callbacks")]
            shown_callback(&mut record, has_callback);
            accepted_response(&shared.config, &record, prefs)
        };
        if head {
            strip_body(&mut response);
        }
        response
    }
}

/// Gives the `202`'s `record` the pending callback the stored job has, for
/// its document (which shows the state, never the URL).
#[cfg(feature = "callbacks")]
fn shown_callback(record: &mut JobRecord, has_callback: bool) {
    if has_callback {
        record.callback = Some(crate::store::JobCallback::new(""));
    }
}

/// `Prefer: wait` (or a grace period): the handler's own answer if the job
/// ends within `wait`.
async fn wait_for(
    config: &Config,
    outcome: oneshot::Receiver<Outcome>,
    wait: Duration,
    prefs: Preferences,
) -> Option<Response<Bytes>> {
    let Ok(Ok(outcome)) = tokio::time::timeout(wait, outcome).await else {
        return None;
    };
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
    Some(response)
}

/// `503` for a submission that cannot be taken now, said in the log (at a
/// limited rate) and counted.
fn refused<St>(shared: &LayerState<St>, reason: Refusal) -> Response<Bytes> {
    telemetry::refused(&shared.telemetry, reason);
    let detail = match reason {
        Refusal::ShuttingDown => "the server is shutting down",
        Refusal::Capacity => "too many jobs are under way; try again later",
        Refusal::StoreFull => "the job store is full; try again later",
        Refusal::StoreUnavailable => "the job store is unavailable; try again later",
    };
    busy(&shared.config, detail)
}

/// A submission that cannot be taken now: the original job's `202` if it
/// is a keyed retry of a kept job, else `503`.
async fn refuse<St: JobStore>(
    shared: &LayerState<St>,
    key: Option<&IdempotencyKey>,
    prefs: Preferences,
    reason: Refusal,
) -> Response<Bytes> {
    if let Some(key) = key {
        match store(&shared.telemetry.meters, StoreOp::FindKey, shared.store.find_key(key)).await {
            Ok(KeyLookup::Existing(original)) => {
                telemetry::replayed(original.id);
                return accepted_response(&shared.config, &original, prefs);
            }
            Ok(KeyLookup::Mismatch) => {
                telemetry::key_reused(&shared.telemetry);
                return key_mismatch();
            }
            // A free key, or a store that cannot tell: the refusal stands.
            Ok(KeyLookup::Free) | Err(_) => {}
        }
    }
    refused(shared, reason)
}

//! The layer's side of a claimed job: a request marked by the claim loop
//! (see `durable::mark`) reaches the layer on its route, which runs the
//! job's handler there, under the claim, instead of accepting it anew.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body::Body;

use crate::BoxError;
use crate::body::{RequestBody, read_limited};
use crate::config::LayerState;
use crate::durable::{Handoff, JobMark};
use crate::job::Job;
use crate::runner::{self, JobService, Work};
use crate::store::{ErrorCode, JobError, JobStore, Outcome};

/// Runs the claimed job of `handoff` with `service`, on a task of its own,
/// and answers the claim loop at once (it only looks at whether a layer
/// took the job).
pub(crate) async fn run_claimed<S, St, B>(
    shared: Arc<LayerState<St>>,
    service: S,
    mut parts: Parts,
    body: B,
    handoff: Handoff,
) -> Response<Bytes>
where
    S: JobService<B>,
    St: JobStore,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    parts.extensions.remove::<JobMark>();
    let Handoff {
        claim,
        claimed_at,
        admission,
        permit,
    } = handoff;
    let job = Job::of_claim(claim, true, claimed_at);
    // Whether it has a callback is in its record, which the claim loop did
    // not read: with callbacks on, its end wakes the delivery loop anyway.
    #[cfg(feature = "callbacks")]
    if shared.config.callbacks.is_some() {
        job.expect_callback();
    }
    // The stored body is whole and within the limit it was accepted with.
    let body = match read_limited(body, usize::MAX).await {
        Ok(body) => body,
        Err(_) => {
            // Tried once: if the store does not take it, the lease lapses
            // and the job runs again (or ends `lost` out of attempts).
            let error = JobError::new(ErrorCode::Error, "the job's stored request could not be read");
            let outcome = Outcome::Failed(error);
            let ending = crate::telemetry::Ended::of(&outcome, None);
            let finish = shared.store.finish(claim, outcome);
            let meters = &shared.telemetry.meters;
            let recorded = crate::telemetry::store(meters, crate::telemetry::StoreOp::Finish, finish).await;
            ending.say(meters, claim.id(), matches!(recorded, Ok(true)));
            return accepted();
        }
    };
    if shared.store.lease().is_some() {
        // Renewed from now on, this very handle (a lost claim cancels what
        // the handler watches); the runner's task lets it go.
        shared.durability.leases.hold(&job);
    }
    let mut request = Request::from_parts(parts, RequestBody::buffered(body));
    request.extensions_mut().insert(job.clone());
    runner::spawn(
        Arc::clone(&shared),
        Work {
            service,
            request,
            job,
            admission,
            waiter: None,
            permit: Some(permit),
        },
    );
    accepted()
}

/// What a layer of another queue answers a claimed job's request with,
/// without calling its service: the claim loop, finding the job not taken,
/// hands it back to its queue.
pub(crate) fn not_taken() -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::MISDIRECTED_REQUEST;
    response
}

/// What the claim loop gets back: the job was taken.
fn accepted() -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

//! Runs accepted jobs in the background: concurrency and queue limits,
//! timeout, panic capture, result capture, cancellation and shutdown.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::FutureExt as _;
use futures_util::future::CatchUnwind;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tower_service::Service;
use tracing::Instrument as _;

use crate::BoxError;
use crate::admission::Admission;
use crate::body::{ReadError, ReadLimited, RequestBody, read_limited};
use crate::config::LayerState;
use crate::durability::LetGo;
use crate::headers::strip_hop_by_hop;
use crate::job::Job;
use crate::store::{ErrorCode, JobError, JobStore, Outcome};
use crate::telemetry::{self, StoreOp};

mod outcome;

use outcome::{Unrecorded, record_outcome};

mod drive;

use drive::Drive;

/// An accepted job, ready to run.
pub(crate) struct Work<S, B> {
    pub(crate) service: S,
    pub(crate) request: Request<RequestBody<B>>,
    pub(crate) job: Job,
    pub(crate) admission: Admission,
    /// Who waits for the outcome in-process (`Prefer: wait`), if anyone.
    pub(crate) waiter: Option<oneshot::Sender<Outcome>>,
    /// A runner taken for the job already (a durable job run at once, or
    /// claimed from its queue), if any.
    pub(crate) permit: Option<OwnedSemaphorePermit>,
}

/// A service the layer can run as a job for requests with bodies of type
/// `B`: what the submission path and the runner both need of it, said once.
pub(crate) trait JobService<B>:
    Service<Request<RequestBody<B>>, Response = Response<Self::ResBody>, Error: Into<BoxError>, Future: Send + 'static>
    + Send
    + 'static
{
    /// The body of the service's responses.
    type ResBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B, ResBody> JobService<B> for S
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    type ResBody = ResBody;
}

/// The handler's work as the task polls it: the service called, its
/// response read whole, a panic caught (so that a panicking handler ends its
/// job as `failed` and the server goes on). Boxed, so that a job's task
/// stays small whatever the service's future weighs, and is cheap to move.
type HandlerWork<S, R, B> = Pin<Box<CatchUnwind<AssertUnwindSafe<Capture<S, R, <S as Service<R>>::Future, B>>>>>;

/// Runs `work` on a task of its own (it has been counted as under way since
/// its admission).
pub(crate) fn spawn<S, St, B>(shared: Arc<LayerState<St>>, work: Work<S, B>)
where
    S: JobService<B>,
    St: JobStore,
    B: Send + 'static,
{
    let Work {
        service,
        request,
        job,
        admission,
        waiter,
        permit,
    } = work;
    // Made here, where the submitting request's span is still current.
    let span = telemetry::job_span(&request, &job);
    let capture = Capture {
        limit: shared.config.max_result,
        expose: shared.config.expose_errors,
        state: CaptureState::Call { service, request },
    };
    // Unwind safe as far as the job goes: a panic drops the handler's
    // state whole, and nothing it touched is looked at again.
    let handler: HandlerWork<S, _, S::ResBody> = Box::pin(AssertUnwindSafe(capture).catch_unwind());
    // Boxed too: tokio moves a task's future several times while it spawns
    // and ends it, and a pointer is cheaper to move than the state.
    tokio::spawn(Box::pin(
        run(shared, job, admission, waiter, permit, handler).instrument(span),
    ));
}

/// The job's task. (A function returning an `async` block rather than an
/// `async fn`, so that its arguments are held once in the task's state.)
#[allow(clippy::manual_async_fn, reason = "an `async fn` holds its arguments twice")]
fn run<St, W>(
    shared: Arc<LayerState<St>>,
    job: Job,
    admission: Admission,
    waiter: Option<oneshot::Sender<Outcome>>,
    permit: Option<OwnedSemaphorePermit>,
    handler: W,
) -> impl Future<Output = ()>
where
    St: JobStore,
    W: Future<Output = Result<Result<Response<Bytes>, JobError>, Box<dyn Any + Send>>> + Unpin,
{
    async move {
        let unrecorded = Unrecorded::new(Arc::clone(&shared), job.claim(), admission);
        let shared = &*shared;
        // The job's lease is renewed for as long as this task holds it (a
        // store without leases holds no claims: nothing to let go).
        let _held = shared
            .store
            .lease()
            .is_some()
            .then(|| LetGo::new(&shared.durability.leases, job.claim()));
        let admissions = &shared.admissions;
        // A runner at once (the common case, without a wait), or a place in
        // the queue, waited for apart so that its state does not weigh on
        // every job's task.
        let running = match permit.map_or_else(|| Arc::clone(&admissions.running).try_acquire_owned(), Ok) {
            Ok(permit) => (!admissions.force.is_fired()).then_some(permit),
            Err(_) => {
                let _queued = shared.telemetry.meters.gauge_up(false);
                match Box::pin(queue(shared, &job)).await {
                    Queued::Run(permit) => Some(permit),
                    Queued::Forced => None,
                    Queued::Ended => {
                        telemetry::stopped(job.id());
                        return unrecorded.disarm();
                    }
                }
            }
        };
        // The runner is held until the outcome is recorded, retries of a
        // failing store included: while the store is down, queued jobs wait
        // rather than pile up outcomes it cannot take (back-pressure).
        let (outcome, timing, _running) = match running {
            None => (Outcome::Failed(shutdown_error()), None, None),
            Some(running) => {
                if let Ok(false) = telemetry::store(
                    &shared.telemetry.meters,
                    StoreOp::Start,
                    shared.store.start(job.claim()),
                )
                .await
                {
                    // Canceled or deleted just before it could start.
                    job.cancel();
                    telemetry::stopped(job.id());
                    return unrecorded.disarm();
                }
                let started_at = tokio::time::Instant::now();
                let waited = started_at.saturating_duration_since(job.accepted_at());
                telemetry::started(&shared.telemetry.meters, waited);
                let _running = shared.telemetry.meters.gauge_up(true);
                // `Drive` polls the handler's future, which is dropped just
                // after it, before anyone can see the job ended, so that its
                // drop guards ran; inside a catcher, so that a `Drop` that
                // panics (a guard of a job cut short, say) ends the job
                // `failed` with `panicked` rather than unwinding the task. A
                // job that ends elsewhere (a client's DELETE) is seen by
                // `wait_terminal`; one that ended since `start`, at once.
                let mut handler = handler;
                let work = tokio::time::timeout(shared.config.timeout, &mut handler);
                let outcome = Drive::new(shared, &job, work, |store, id| store.wait_terminal(id)).await;
                let ran = started_at.elapsed();
                admissions.observe_run(ran);
                let dropped = std::panic::catch_unwind(AssertUnwindSafe(|| drop(handler)));
                let Some(mut outcome) = outcome else {
                    job.cancel();
                    telemetry::stopped(job.id());
                    return unrecorded.disarm();
                };
                let cut_short = matches!(&outcome, Outcome::Failed(e) if matches!(e.code, ErrorCode::Timeout | ErrorCode::Shutdown));
                if let Err(payload) = dropped {
                    outcome = Outcome::Failed(panicked(job.id(), shared.config.expose_errors, &*payload));
                }
                // The last report (often `1.0` just before returning)
                // belongs in the record too.
                if let Some((progress, message)) = job.take_report() {
                    let report = shared.store.set_progress(job.claim(), progress, message);
                    let _ = telemetry::store(&shared.telemetry.meters, StoreOp::SetProgress, report).await;
                }
                if cut_short {
                    job.cancel();
                }
                (outcome, Some(telemetry::Timing { waited, ran }), Some(running))
            }
        };
        record_outcome(shared, &job, outcome, timing, waiter).await;
        unrecorded.disarm();
    }
}

/// How a wait in the queue ended.
enum Queued {
    Run(OwnedSemaphorePermit),
    Forced,
    /// The job was canceled or deleted meanwhile; its handle is canceled.
    Ended,
}

/// Waits for a runner, unless the job ends elsewhere meanwhile (a client's
/// `DELETE`) or a shutdown ends it: when it gives up waiting, or at once
/// when its drain begins if the job would not start before its deadline (by
/// its place in the queue and the mean run time), rather than at the
/// deadline.
async fn queue<St: JobStore>(shared: &LayerState<St>, job: &Job) -> Queued {
    let admissions = &shared.admissions;
    let ended = shared.store.wait_terminal(job.id());
    tokio::pin!(ended);
    // Taken before the semaphore's own FIFO queue is joined, given up when
    // this wait ends, however it ends.
    let ticket = admissions.join_queue();
    let hopeless = async {
        admissions.draining.fired().await;
        if !admissions.starts_too_late(&ticket) {
            // It may start in time: only the deadline ends it.
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(hopeless);
    // Made once, so that the job keeps its place in the semaphore's queue.
    let acquire = Arc::clone(&admissions.running).acquire_owned();
    tokio::pin!(acquire);
    // Whether the store can still tell of the job's end elsewhere.
    let mut watching = true;
    let permit = loop {
        break tokio::select! {
            biased;
            _ = admissions.force.fired() => None,
            result = &mut ended, if watching => {
                if result.is_ok() {
                    job.cancel();
                    return Queued::Ended;
                }
                // The store could not tell: wait for a runner as usual,
                // the shutdown's deadline and estimate included.
                watching = false;
                continue;
            }
            permit = &mut acquire => permit.ok(),
            // Last: a runner free at the same moment wins over the estimate.
            () = &mut hopeless => None,
        };
    };
    permit.map_or(Queued::Forced, Queued::Run)
}

fn shutdown_error() -> JobError {
    JobError::new(ErrorCode::Shutdown, "the server shut down before the job finished")
}

/// The message of a job's error: the error's own text only when errors are
/// exposed; otherwise the operator still gets it, in the log (in the job's
/// span).
fn detail(expose: bool, generic: &str, error: &(dyn std::error::Error + Send + Sync)) -> String {
    if expose {
        format!("{generic}: {error}")
    } else {
        tracing::warn!(error = %error, "{generic}");
        generic.to_owned()
    }
}

/// The job's error for a panic with `payload`; the payload itself goes to
/// the log (one `ERROR` event), and to the client only when errors are
/// exposed.
fn panicked(id: crate::store::JobId, expose: bool, payload: &(dyn Any + Send)) -> JobError {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned());
    tracing::error!(
        job.id = %id,
        error.code = "panicked",
        panic = text.as_deref().unwrap_or("(a payload that is not a string)"),
        "job failed: the handler panicked"
    );
    let message = match (expose, text) {
        (true, Some(text)) => format!("the handler panicked: {text}"),
        _ => "the handler panicked".to_owned(),
    };
    JobError::new(ErrorCode::Panicked, message)
}

pin_project! {
    /// The handler's work: calls the service, then reads its response
    /// whole into a `Response<Bytes>` to store, without its hop-by-hop
    /// headers. One state at a time, so that a job's task stays small.
    struct Capture<S, R, F, B> {
        limit: usize,
        expose: bool,
        #[pin]
        state: CaptureState<S, R, F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateTaken]
    enum CaptureState<S, R, F, B> {
        Call { service: S, request: R },
        Respond { #[pin] future: F },
        Read { #[pin] body: ReadLimited<B>, parts: http::response::Parts },
        Done,
    }
}

impl<S, R, B> Future for Capture<S, R, S::Future, B>
where
    S: Service<R, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<Bytes>, JobError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Call { service, .. } => {
                    // The layer is always ready; the wrapped service may not
                    // be (a concurrency limit): the job waits for it here.
                    if let Err(e) = ready!(service.poll_ready(cx)) {
                        this.state.set(CaptureState::Done);
                        let e: BoxError = e.into();
                        let message = detail(*this.expose, "the service failed", &*e);
                        return Poll::Ready(Err(JobError::new(ErrorCode::Error, message)));
                    }
                    if let StateTaken::Call { mut service, request } =
                        this.state.as_mut().project_replace(CaptureState::Done)
                    {
                        let future = service.call(request);
                        this.state.set(CaptureState::Respond { future });
                    }
                }
                StateProj::Respond { future } => {
                    let response = match ready!(future.poll(cx)) {
                        Ok(response) => response,
                        Err(e) => {
                            this.state.set(CaptureState::Done);
                            let e: BoxError = e.into();
                            let message = detail(*this.expose, "the service failed", &*e);
                            return Poll::Ready(Err(JobError::new(ErrorCode::Error, message)));
                        }
                    };
                    let (parts, body) = response.into_parts();
                    let body = read_limited(body, *this.limit);
                    this.state.set(CaptureState::Read { body, parts });
                }
                StateProj::Read { body, .. } => {
                    let result = ready!(body.poll(cx));
                    let StateTaken::Read { mut parts, .. } = this.state.as_mut().project_replace(CaptureState::Done)
                    else {
                        continue;
                    };
                    let limit = *this.limit;
                    let body = result.map_err(|e| match e {
                        ReadError::TooLarge => JobError::new(
                            ErrorCode::ResultTooLarge,
                            format!("the response body is larger than {limit} bytes"),
                        ),
                        ReadError::Body(e) => {
                            JobError::new(ErrorCode::Error, detail(*this.expose, "the response body failed", &*e))
                        }
                    })?;
                    strip_hop_by_hop(&mut parts.headers);
                    // What a store keeps: status, headers and body (the
                    // version and extensions are neither stored nor
                    // replayed, so they are not carried).
                    let mut stored = Response::new(body);
                    *stored.status_mut() = parts.status;
                    *stored.headers_mut() = parts.headers;
                    return Poll::Ready(Ok(stored));
                }
                StateProj::Done => {
                    return Poll::Ready(Err(JobError::new(
                        ErrorCode::Error,
                        "the job was polled after it ended",
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn catch_unwind_reports_panics() {
        let ok = AssertUnwindSafe(async { 1 }).catch_unwind().await;
        assert_eq!(ok.ok(), Some(1));
        let caught = AssertUnwindSafe(async { panic!("boom") }).catch_unwind().await;
        let payload = caught.err().unwrap();
        let id = crate::store::JobId::new();
        assert_eq!(panicked(id, true, &*payload).message, "the handler panicked: boom");
        assert_eq!(panicked(id, false, &*payload).message, "the handler panicked");
    }
}

//! Runs accepted jobs in the background: concurrency and queue limits,
//! timeout, panic capture, result capture, cancellation and shutdown.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tower_service::Service;

use crate::BoxError;
use crate::body::{ReadError, RequestBody, read_limited};
use crate::config::Shared;
use crate::job::{Job, Signal};
use crate::protocol::strip_hop_by_hop;
use crate::store::{JobError, JobId, JobStore, Outcome, StoredResponse};

/// The runner's state, shared by every clone of a layer.
pub(crate) struct Runtime {
    /// Jobs accepted and not yet ended (running and queued): the capacity.
    admission: Arc<Semaphore>,
    /// Jobs running at once.
    running: Arc<Semaphore>,
    accepting: AtomicBool,
    /// Jobs admitted and not yet over, from admission on, so that a
    /// shutdown also waits for submissions still being recorded.
    active: Arc<Active>,
    force: Signal,
    forced: AtomicUsize,
}

impl Runtime {
    pub(crate) fn new(max_running: usize, max_queued: usize) -> Self {
        let max_running = max_running.clamp(1, Semaphore::MAX_PERMITS);
        let admitted = max_running.saturating_add(max_queued).min(Semaphore::MAX_PERMITS);
        Self {
            admission: Arc::new(Semaphore::new(admitted)),
            running: Arc::new(Semaphore::new(max_running)),
            accepting: AtomicBool::new(true),
            active: Arc::new(Active::default()),
            force: Signal::default(),
            forced: AtomicUsize::new(0),
        }
    }

    /// A place for one more job, or `None` when running and queued jobs are
    /// at their limits or the runner is shutting down.
    pub(crate) fn admit(&self) -> Option<Admission> {
        if !self.accepting() {
            return None;
        }
        let permit = Arc::clone(&self.admission).try_acquire_owned().ok()?;
        // SeqCst with `shutdown`: either it sees this count, or this sees
        // that it stopped accepting.
        self.active.count.fetch_add(1, Ordering::SeqCst);
        let admission = Admission {
            _permit: permit,
            active: Arc::clone(&self.active),
        };
        // A shutdown that began meanwhile may have seen no job under way.
        self.accepting().then_some(admission)
    }

    /// Whether a job could be admitted now (checked before reading a body).
    pub(crate) fn has_room(&self) -> bool {
        self.admission.available_permits() > 0
    }

    pub(crate) fn accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    /// Stops accepting, waits up to `deadline` for the jobs under way, then
    /// ends the rest as failed with `shutdown`; returns how many were.
    pub(crate) async fn shutdown(&self, deadline: Duration) -> usize {
        self.accepting.store(false, Ordering::SeqCst);
        if tokio::time::timeout(deadline, self.idle()).await.is_err() {
            self.force.fire();
            self.idle().await;
        }
        self.forced.load(Ordering::Acquire)
    }

    async fn idle(&self) {
        loop {
            let notified = self.active.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// How many jobs are under way, and a wake-up for when none is.
#[derive(Default)]
struct Active {
    count: AtomicUsize,
    idle: Notify,
}

/// A job's place: in the capacity, and among the jobs a shutdown waits for.
/// Given back when dropped, whether the job ran or its submission failed.
pub(crate) struct Admission {
    _permit: OwnedSemaphorePermit,
    active: Arc<Active>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.active.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.active.idle.notify_waiters();
        }
    }
}

/// An accepted job, ready to run.
pub(crate) struct Work<S, B> {
    pub(crate) service: S,
    pub(crate) request: Request<RequestBody<B>>,
    pub(crate) job: Job,
    pub(crate) admission: Admission,
    /// Who waits for the outcome in-process (`Prefer: wait`), if anyone.
    pub(crate) waiter: Option<oneshot::Sender<Outcome>>,
}

/// Runs `work` on a task of its own (it has been counted as under way since
/// its admission).
pub(crate) fn spawn<S, St, B, ResBody>(shared: Arc<Shared<St>>, work: Work<S, B>)
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    St: JobStore,
    B: Send + 'static,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    tokio::spawn(async move { run(&shared, work).await });
}

async fn run<S, St, B, ResBody>(shared: &Shared<St>, work: Work<S, B>)
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    St: JobStore,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    let Work {
        mut service,
        request,
        job,
        admission,
        waiter,
    } = work;
    let id = job.id();
    let store = &*shared.store;
    let runtime = &shared.runtime;
    let config = &shared.config;

    // A job that ends elsewhere (a client's DELETE) while it waits or runs.
    let ended = store.wait_terminal(id);
    tokio::pin!(ended);

    let running = tokio::select! {
        biased;
        _ = runtime.force.fired() => None,
        result = &mut ended => {
            if result.is_ok() {
                job.cancel();
                return;
            }
            // The store could not tell; wait for a runner as usual.
            Arc::clone(&runtime.running).acquire_owned().await.ok()
        }
        permit = Arc::clone(&runtime.running).acquire_owned() => permit.ok(),
    };
    let Some(running) = running else {
        end(shared, &job, Outcome::Failed(shutdown_error()), waiter).await;
        return;
    };
    if let Ok(false) = store.start(id).await {
        // Canceled or deleted just before it could start.
        job.cancel();
        return;
    }

    let expose = config.expose_errors;
    let max_result = config.max_result;
    let work = CatchUnwind {
        future: async move {
            let response = service.call(request).await.map_err(|e| {
                let e: BoxError = e.into();
                JobError::new(JobError::ERROR, detail(expose, "the service failed", &*e))
            })?;
            capture(response, max_result, expose).await
        },
    };
    // `drive` owns the handler's future, so it is dropped when `drive`
    // returns: before anyone can see the job ended, its drop guards ran.
    let outcome = drive(shared, &job, tokio::time::timeout(config.timeout, work), ended).await;
    drop(running);
    match outcome {
        None => job.cancel(),
        Some(outcome) => {
            // The last report (often `1.0` just before returning) belongs in
            // the record too.
            if let Some((progress, message)) = job.take_report() {
                let _ = store.set_progress(id, progress, message).await;
            }
            if matches!(&outcome, Outcome::Failed(e) if e.code == JobError::TIMEOUT || e.code == JobError::SHUTDOWN) {
                job.cancel();
            }
            end(shared, &job, outcome, waiter).await;
        }
    }
    drop(admission);
}

/// Polls the job's work until it ends, is canceled through the store, or
/// is ended by a shutdown, and writes the handler's reports meanwhile.
/// `None` means the job was canceled (or deleted) elsewhere.
async fn drive<St, W>(
    shared: &Shared<St>,
    job: &Job,
    work: tokio::time::Timeout<CatchUnwind<W>>,
    mut ended: Pin<&mut impl Future<Output = Result<(), crate::store::StoreError>>>,
) -> Option<Outcome>
where
    St: JobStore,
    W: Future<Output = Result<StoredResponse, JobError>>,
{
    let id = job.id();
    let store = &*shared.store;
    let config = &shared.config;
    let expose = config.expose_errors;
    tokio::pin!(work);
    let mut watch_store = true;
    loop {
        tokio::select! {
            biased;
            result = &mut work => return Some(match result {
                Ok(Ok(Ok(stored))) => Outcome::Response(stored),
                Ok(Ok(Err(error))) => Outcome::Failed(error),
                Ok(Err(payload)) => Outcome::Failed(panicked(expose, &*payload)),
                Err(_elapsed) => Outcome::Failed(JobError::new(
                    JobError::TIMEOUT,
                    format!("the job ran longer than {:?}", config.timeout),
                )),
            }),
            result = &mut ended, if watch_store => {
                if result.is_ok() {
                    return None;
                }
                watch_store = false;
            }
            _ = shared.runtime.force.fired() => return Some(Outcome::Failed(shutdown_error())),
            _ = job.reported() => {
                if let Some((progress, message)) = job.take_report() {
                    let _ = store.set_progress(id, progress, message).await;
                }
            }
        }
    }
}

/// Records `outcome` (retrying a store that fails for a moment) and hands it
/// to the in-process waiter.
async fn end<St: JobStore>(shared: &Shared<St>, job: &Job, outcome: Outcome, waiter: Option<oneshot::Sender<Outcome>>) {
    let id: JobId = job.id();
    if matches!(&outcome, Outcome::Failed(e) if e.code == JobError::SHUTDOWN) {
        shared.runtime.forced.fetch_add(1, Ordering::AcqRel);
        job.cancel();
    }
    let mut delay = Duration::from_millis(50);
    for _ in 0..5 {
        match shared.store.finish(id, outcome.clone()).await {
            Ok(_) => break,
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    if let Some(waiter) = waiter {
        let _ = waiter.send(outcome);
    }
}

fn shutdown_error() -> JobError {
    JobError::new(JobError::SHUTDOWN, "the server shut down before the job finished")
}

fn detail(expose: bool, generic: &str, error: &(dyn std::error::Error + Send + Sync)) -> String {
    if expose {
        format!("{generic}: {error}")
    } else {
        generic.to_owned()
    }
}

fn panicked(expose: bool, payload: &(dyn Any + Send)) -> JobError {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned());
    let message = match (expose, text) {
        (true, Some(text)) => format!("the handler panicked: {text}"),
        _ => "the handler panicked".to_owned(),
    };
    JobError::new(JobError::PANICKED, message)
}

/// Reads a response whole into a [`StoredResponse`], without its hop-by-hop
/// headers.
async fn capture<B>(response: Response<B>, limit: usize, expose: bool) -> Result<StoredResponse, JobError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = response.into_parts();
    let body: Bytes = read_limited(body, limit).await.map_err(|e| match e {
        ReadError::TooLarge => JobError::new(
            JobError::RESULT_TOO_LARGE,
            format!("the response body is larger than {limit} bytes"),
        ),
        ReadError::Body(e) => JobError::new(JobError::ERROR, detail(expose, "the response body failed", &*e)),
    })?;
    strip_hop_by_hop(&mut parts.headers);
    Ok(StoredResponse::new(parts.status, parts.headers, body))
}

pin_project! {
    /// Turns a panic while polling `future` into `Err(payload)`, so that a
    /// panicking handler ends its job as `failed` and the server goes on.
    struct CatchUnwind<F> {
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = self.project().future;
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn catch_unwind_reports_panics() {
        let ok = CatchUnwind { future: async { 1 } }.await;
        assert_eq!(ok.ok(), Some(1));
        let caught = CatchUnwind {
            future: async { panic!("boom") },
        }
        .await;
        let payload = caught.err().unwrap();
        assert_eq!(panicked(true, &*payload).message, "the handler panicked: boom");
        assert_eq!(panicked(false, &*payload).message, "the handler panicked");
    }

    #[tokio::test]
    async fn admission_is_bounded() {
        let runtime = Runtime::new(1, 1);
        let a = runtime.admit();
        let b = runtime.admit();
        assert!(a.is_some() && b.is_some());
        assert!(runtime.admit().is_none());
        drop(a);
        assert!(runtime.admit().is_some());
    }
}

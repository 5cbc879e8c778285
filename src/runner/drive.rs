//! [`Drive`]: a running job's work, polled together with what can end it
//! early (a cancel elsewhere, a shutdown) and with the writes of its
//! progress reports.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;
use tokio::sync::futures::Notified;
use tokio::time::Sleep;

use super::{panicked, shutdown_error};
use crate::config::LayerState;
use crate::job::Job;
use crate::store::{ErrorCode, JobError, JobId, JobStore, Outcome, StoreError};

/// A progress report being written to the store.
type Report<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The first wait before the store's watch is made again after it failed;
/// it doubles with each failure, up to [`REWATCH_MAX`].
const REWATCH_FIRST: Duration = Duration::from_millis(100);
const REWATCH_MAX: Duration = Duration::from_secs(5);

pin_project! {
    /// Polls the job's work until it ends, is canceled through the store, or
    /// is ended by a shutdown, and writes the handler's reports meanwhile;
    /// `None` means the job was canceled (or deleted) elsewhere. A future of
    /// its own rather than a `select!` in a loop, so that each source is
    /// registered once and a job's task stays small.
    pub(super) struct Drive<'a, St, W, E, R> {
        shared: &'a LayerState<St>,
        job: &'a Job,
        #[pin]
        work: tokio::time::Timeout<W>,
        // The store's watch for the job's end elsewhere (a `DELETE` on
        // another replica), and how to make it again after it failed.
        #[pin]
        ended: E,
        watch: R,
        // The wait before the watch is made again after a store error.
        // Boxed: allocated on a first error only (and reset on later ones),
        // so that the job's task does not carry a timer it rarely needs.
        rewatch: Option<Pin<Box<Sleep>>>,
        rewatching: bool,
        rewatch_delay: Duration,
        // Woken by a shutdown that gives up waiting.
        #[pin]
        forced: Notified<'a>,
        // Woken by the handler's reports.
        #[pin]
        reported: Notified<'a>,
        // The one report being written. The work is polled meanwhile (a
        // handler never waits for the store); reports made meanwhile wait
        // in the job, the latest winning, until this write ends.
        writing: Option<Report<'a>>,
        // The work's outcome, held until the write in flight ends, so that
        // no progress write lands after the job's terminal state. Boxed:
        // rarely needed, and an outcome weighs more than a pointer on every
        // running job's task.
        outcome: Option<Box<Outcome>>,
    }
}

impl<'a, St, W, E, R: Fn(&'a St, JobId) -> E> Drive<'a, St, W, E, R> {
    /// `watch` makes the store's watch for the job's end
    /// (`wait_terminal`), now and again after a store error. (A function
    /// of the store and the id, not a closure holding them: then it takes
    /// no room in the job's task.)
    pub(super) fn new(shared: &'a LayerState<St>, job: &'a Job, work: tokio::time::Timeout<W>, watch: R) -> Self {
        Self {
            shared,
            job,
            work,
            ended: watch(&shared.store, job.id()),
            watch,
            rewatch: None,
            rewatching: false,
            rewatch_delay: REWATCH_FIRST,
            forced: shared.admissions.force.notify().notified(),
            reported: job.reported_notify().notified(),
            writing: None,
            outcome: None,
        }
    }
}

impl<'a, St, W, E, R> Future for Drive<'a, St, W, E, R>
where
    St: JobStore,
    W: Future<Output = Result<Result<Response<Bytes>, JobError>, Box<dyn Any + Send>>>,
    E: Future<Output = Result<(), StoreError>>,
    R: Fn(&'a St, JobId) -> E,
{
    type Output = Option<Outcome>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let shared: &'a LayerState<St> = this.shared;
        let job: &'a Job = this.job;
        loop {
            if let Some(writing) = this.writing.as_mut()
                && writing.as_mut().poll(cx).is_ready()
            {
                *this.writing = None;
                // Reports made during the write: the latest is written
                // next, unless the work ended (its outcome supersedes it;
                // the runner writes the last report before the outcome).
                if this.outcome.is_none()
                    && let Some((progress, message)) = job.take_report()
                {
                    *this.writing = Some(write(shared, job, progress, message));
                    continue;
                }
            }
            if this.outcome.is_some() {
                if this.writing.is_some() {
                    // The write's waker was registered just above.
                    return Poll::Pending;
                }
                return Poll::Ready(this.outcome.take().map(|outcome| *outcome));
            }
            if let Poll::Ready(result) = this.work.as_mut().poll(cx) {
                let expose = shared.config.expose_errors;
                let outcome = match result {
                    Ok(Ok(Ok(stored))) => Outcome::Response(stored),
                    Ok(Ok(Err(error))) => Outcome::Failed(error),
                    Ok(Err(payload)) => Outcome::Failed(panicked(this.job.id(), expose, &*payload)),
                    Err(_elapsed) => Outcome::Failed(JobError::new(
                        ErrorCode::Timeout,
                        format!("the job ran longer than {:?}", shared.config.timeout),
                    )),
                };
                if this.writing.is_none() {
                    return Poll::Ready(Some(outcome));
                }
                *this.outcome = Some(Box::new(outcome));
                continue;
            }
            if *this.rewatching {
                if !this
                    .rewatch
                    .as_mut()
                    .is_some_and(|wait| wait.as_mut().poll(cx).is_pending())
                {
                    // Watched again: a `DELETE` from elsewhere must not go
                    // unseen for good because the store failed once.
                    *this.rewatching = false;
                    this.ended.set((this.watch)(&shared.store, job.id()));
                    continue;
                }
            } else if let Poll::Ready(result) = this.ended.as_mut().poll(cx) {
                if result.is_ok() {
                    return Poll::Ready(None);
                }
                // The store could not tell; the job runs on, and the watch
                // is made again after a wait, longer after each failure.
                let deadline = tokio::time::Instant::now() + *this.rewatch_delay;
                *this.rewatch_delay = (*this.rewatch_delay * 2).min(REWATCH_MAX);
                match this.rewatch.as_mut() {
                    Some(wait) => wait.as_mut().reset(deadline),
                    None => *this.rewatch = Some(Box::pin(tokio::time::sleep_until(deadline))),
                }
                *this.rewatching = true;
                continue;
            }
            // Registered before the flag is read: a shutdown after the read
            // wakes this task.
            if this.forced.as_mut().poll(cx).is_ready() {
                this.forced.set(shared.admissions.force.notify().notified());
                continue;
            }
            if shared.admissions.force.is_fired() {
                return Poll::Ready(Some(Outcome::Failed(shutdown_error())));
            }
            if this.reported.as_mut().poll(cx).is_ready() {
                this.reported.set(job.reported_notify().notified());
                // With a write in flight, the report waits in the job (the
                // latest winning) until that write ends.
                if this.writing.is_none()
                    && let Some((progress, message)) = job.take_report()
                {
                    *this.writing = Some(write(shared, job, progress, message));
                }
                continue;
            }
            return Poll::Pending;
        }
    }
}

/// Writes a progress report, whatever the store answers: a report that
/// could not be written is superseded by the next one.
fn write<'a, St: JobStore>(
    shared: &'a LayerState<St>,
    job: &Job,
    progress: Option<f32>,
    message: Option<String>,
) -> Report<'a> {
    let write = crate::telemetry::store(
        &shared.telemetry.meters,
        crate::telemetry::StoreOp::SetProgress,
        shared.store.set_progress(job.claim(), progress, message),
    );
    Box::pin(async move {
        let _ = write.await;
    })
}

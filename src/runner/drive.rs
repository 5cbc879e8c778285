//! [`Drive`]: a running job's work, polled together with what can end it
//! early (a cancel elsewhere, a shutdown) and with the writes of its
//! progress reports.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;
use tokio::sync::futures::Notified;

use super::{panicked, shutdown_error};
use crate::config::LayerState;
use crate::job::Job;
use crate::store::{ErrorCode, JobError, JobStore, Outcome};

type Report<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

pin_project! {
    /// Polls the job's work until it ends, is canceled through the store, or
    /// is ended by a shutdown, and writes the handler's reports meanwhile;
    /// `None` means the job was canceled (or deleted) elsewhere. A future of
    /// its own rather than a `select!` in a loop, so that each source is
    /// registered once and a job's task stays small.
    pub(super) struct Drive<'a, St, W, E> {
        shared: &'a LayerState<St>,
        job: &'a Job,
        #[pin]
        work: tokio::time::Timeout<W>,
        #[pin]
        ended: E,
        watch_store: bool,
        // Woken by a shutdown that gives up waiting.
        #[pin]
        forced: Notified<'a>,
        // Woken by the handler's reports.
        #[pin]
        reported: Notified<'a>,
        // A report being written: it is finished before anything else is
        // looked at, as the handler's order of reports and outcome asks.
        writing: Option<Report<'a>>,
    }
}

impl<'a, St, W, E> Drive<'a, St, W, E> {
    pub(super) fn new(shared: &'a LayerState<St>, job: &'a Job, work: tokio::time::Timeout<W>, ended: E) -> Self {
        Self {
            shared,
            job,
            work,
            ended,
            watch_store: true,
            forced: shared.admissions.force.notify().notified(),
            reported: job.reported_notify().notified(),
            writing: None,
        }
    }
}

impl<'a, St, W, E> Future for Drive<'a, St, W, E>
where
    St: JobStore,
    W: Future<Output = Result<Result<Response<Bytes>, JobError>, Box<dyn Any + Send>>>,
    E: Future<Output = Result<(), crate::store::StoreError>>,
{
    type Output = Option<Outcome>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let shared: &'a LayerState<St> = this.shared;
        let job: &'a Job = this.job;
        loop {
            if let Some(writing) = this.writing.as_mut() {
                ready!(writing.as_mut().poll(cx));
                *this.writing = None;
            }
            if let Poll::Ready(result) = this.work.as_mut().poll(cx) {
                let expose = shared.config.expose_errors;
                return Poll::Ready(Some(match result {
                    Ok(Ok(Ok(stored))) => Outcome::Response(stored),
                    Ok(Ok(Err(error))) => Outcome::Failed(error),
                    Ok(Err(payload)) => Outcome::Failed(panicked(expose, &*payload)),
                    Err(_elapsed) => Outcome::Failed(JobError::new(
                        ErrorCode::Timeout,
                        format!("the job ran longer than {:?}", shared.config.timeout),
                    )),
                }));
            }
            if *this.watch_store
                && let Poll::Ready(result) = this.ended.as_mut().poll(cx)
            {
                if result.is_ok() {
                    return Poll::Ready(None);
                }
                // The store could not tell; the job runs on.
                *this.watch_store = false;
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
                if let Some((progress, message)) = job.take_report() {
                    let write = shared.store.set_progress(job.id(), progress, message);
                    *this.writing = Some(Box::pin(async move {
                        let _ = write.await;
                    }));
                }
                continue;
            }
            return Poll::Pending;
        }
    }
}

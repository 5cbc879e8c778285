//! [`Job`]: the handle a handler uses to report progress and notice
//! cancellation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::store::{Claim, JobId};

/// The longest message kept, in bytes; longer ones are cut at a character
/// boundary so that a chatty handler cannot grow a record without bound.
pub(crate) const MAX_MESSAGE_BYTES: usize = 1024;

/// The handle of the job a request runs as.
///
/// The layer puts it in the request's extensions before calling the wrapped
/// service, so a handler can take it as `Extension<Job>` in axum (or as
/// `Job` itself with the `axum` feature), or with
/// `request.extensions().get::<Job>()`. With it the handler reports progress
/// and a message, which the status monitor shows, and learns when the job is
/// canceled.
///
/// Reporting is cheap and never waits: the last value is kept and the runner
/// writes it to the store.
///
/// ```
/// use tower_accepted::Job;
///
/// async fn render(job: Job, pages: u32) -> String {
///     for page in 1..=pages {
///         if job.is_cancelled() {
///             return "stopped".into();
///         }
///         job.set_progress(page as f32 / pages as f32);
///         job.set_message(format!("rendering page {page} of {pages}"));
///     }
///     "done".into()
/// }
/// # let job = Job::detached();
/// # let out = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(render(job, 3));
/// # assert_eq!(out, "done");
/// ```
#[derive(Clone)]
pub struct Job {
    inner: Arc<Inner>,
}

struct Inner {
    id: JobId,
    /// The attempt this handle runs (see [`Job::attempt`]).
    attempt: u32,
    /// Whether the job is durable: handed back to its queue, rather than
    /// failed, when this process stops before it ends.
    durable: bool,
    accepted_at: Instant,
    report: Mutex<Report>,
    reported: Notify,
    cancelled: Signal,
    /// Set when the runner begins recording the job's end: from then on a
    /// lease the store no longer holds is that end's doing, not a lost one.
    recording: AtomicBool,
    /// Whether the job may have a completion callback: its end here wakes
    /// the delivery loop.
    #[cfg(feature = "callbacks")]
    callback: AtomicBool,
}

#[derive(Default)]
struct Report {
    progress: Option<f32>,
    message: Option<String>,
    fresh: bool,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.inner.id)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl Job {
    pub(crate) fn new(id: JobId, accepted_at: Instant) -> Self {
        Self::of_claim(Claim::first(id), false, accepted_at)
    }

    /// The handle of the attempt `claim`, of a durable job or not.
    pub(crate) fn of_claim(claim: Claim, durable: bool, accepted_at: Instant) -> Self {
        Self {
            inner: Arc::new(Inner {
                id: claim.id(),
                attempt: claim.attempt(),
                durable,
                accepted_at,
                report: Mutex::new(Report::default()),
                reported: Notify::new(),
                cancelled: Signal::default(),
                recording: AtomicBool::new(false),
                #[cfg(feature = "callbacks")]
                callback: AtomicBool::new(false),
            }),
        }
    }

    /// A handle that belongs to no stored job: reports go nowhere and it is
    /// never canceled. Handlers get one when they are called directly rather
    /// than as a job, so that the same handler serves both ways.
    pub fn detached() -> Self {
        Self::new(JobId::new(), Instant::now())
    }

    /// When the layer received the submission that became this job (for a
    /// detached handle, when it was made), on tokio's clock.
    ///
    /// A handler that promises to be done a fixed time after acceptance
    /// sleeps until a deadline from here rather than for a duration from
    /// when it first runs, which may be later (the job waited in the queue,
    /// or its task was not polled at once):
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_accepted::Job;
    ///
    /// async fn two_seconds_of_work(job: Job) -> &'static str {
    ///     tokio::time::sleep_until(job.accepted_at() + Duration::from_secs(2)).await;
    ///     "done"
    /// }
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap()
    /// #     .block_on(async { assert_eq!(two_seconds_of_work(Job::detached()).await, "done") });
    /// ```
    pub fn accepted_at(&self) -> Instant {
        self.inner.accepted_at
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.inner.id
    }

    /// Which attempt this is, counted from 1. Above 1 only for a durable
    /// job (see [`AcceptedLayer::durable`](crate::AcceptedLayer::durable))
    /// whose earlier attempt's runner stopped before it ended (a replica
    /// killed, frozen or partitioned) or was handed back at a shutdown: a
    /// handler with effects outside the job checks what the earlier
    /// attempt did before doing it again.
    ///
    /// ```
    /// use tower_accepted::Job;
    ///
    /// assert_eq!(Job::detached().attempt(), 1);
    /// ```
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// The claim this handle runs under: the fencing token of its writes.
    pub(crate) fn claim(&self) -> Claim {
        Claim::new(self.inner.id, self.inner.attempt)
    }

    /// Whether the job is durable.
    pub(crate) fn is_durable(&self) -> bool {
        self.inner.durable
    }

    /// The job may have a completion callback: its end wakes the delivery
    /// loop.
    #[cfg(feature = "callbacks")]
    pub(crate) fn expect_callback(&self) {
        self.inner.callback.store(true, Ordering::Release);
    }

    /// Whether the job may have a completion callback.
    #[cfg(feature = "callbacks")]
    pub(crate) fn may_have_callback(&self) -> bool {
        self.inner.callback.load(Ordering::Acquire)
    }

    /// Reports progress between 0 and 1 (values outside are clamped, NaN is
    /// ignored). The status document shows it, and `Retry-After` adapts to it.
    pub fn set_progress(&self, progress: f32) {
        if progress.is_nan() {
            return;
        }
        self.update(|report| report.progress = Some(progress.clamp(0.0, 1.0)));
    }

    /// Reports a human-readable message, such as "rendering page 4 of 10"
    /// (at most 1 KiB is kept).
    pub fn set_message(&self, message: impl Into<String>) {
        let mut message = message.into();
        if message.len() > MAX_MESSAGE_BYTES {
            let mut end = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        self.update(|report| report.message = Some(message));
    }

    /// Whether the job was canceled (by a client, a timeout or a shutdown).
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.is_fired()
    }

    /// Resolves when the job is canceled: by a client's `DELETE`, by the job
    /// timeout or by a shutdown. The layer also drops the handler's future
    /// then; this is for work the handler started elsewhere (a spawned task,
    /// a blocking thread) that should stop too.
    pub async fn cancelled(&self) {
        self.inner.cancelled.fired().await;
    }

    fn update(&self, change: impl FnOnce(&mut Report)) {
        let mut report = self
            .inner
            .report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut report);
        report.fresh = true;
        drop(report);
        self.inner.reported.notify_one();
    }

    /// The report made since the last call, if any.
    pub(crate) fn take_report(&self) -> Option<(Option<f32>, Option<String>)> {
        let mut report = self
            .inner
            .report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !report.fresh {
            return None;
        }
        report.fresh = false;
        Some((report.progress, report.message.clone()))
    }

    /// Notified (with a permit kept) when a report is made.
    pub(crate) fn reported_notify(&self) -> &Notify {
        &self.inner.reported
    }

    /// The runner begins recording the job's end.
    pub(crate) fn mark_recording(&self) {
        self.inner.recording.store(true, Ordering::Release);
    }

    /// Whether the runner began recording the job's end.
    pub(crate) fn is_recording(&self) -> bool {
        self.inner.recording.load(Ordering::Acquire)
    }

    pub(crate) fn cancel(&self) {
        self.inner.cancelled.fire();
    }
}

/// A one-way flag that tasks can wait for.
#[derive(Default)]
pub(crate) struct Signal {
    fired: AtomicBool,
    notify: Notify,
}

impl Signal {
    pub(crate) fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// What a waiter registers with before it reads the flag.
    pub(crate) fn notify(&self) -> &Notify {
        &self.notify
    }

    pub(crate) fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    pub(crate) async fn fired(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_fired() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(feature = "axum")]
mod extract {
    use std::convert::Infallible;

    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use http::request::Parts;

    use super::Job;

    /// The job's handle; a detached one when the handler is called directly
    /// rather than as a job.
    impl<S: Send + Sync> FromRequestParts<S> for Job {
        type Rejection = Infallible;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
            Ok(parts.extensions.get::<Job>().cloned().unwrap_or_else(Job::detached))
        }
    }

    /// `Some` when the handler runs as a job, `None` when it is called
    /// directly.
    impl<S: Send + Sync> OptionalFromRequestParts<S> for Job {
        type Rejection = Infallible;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<Job>().cloned())
        }
    }
}

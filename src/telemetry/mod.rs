//! What the layer tells operators: a `tracing` span per job and an event
//! per change of its state, and metrics (feature `metrics`, see
//! [`meters`]).
//!
//! Conventions, as tower-http's: the `job` span is at `DEBUG`, so that at
//! `INFO` it costs nothing (`RUST_LOG=info,tower_accepted=debug` shows it,
//! and with it the job id on every event a handler logs). Events of a job's
//! end carry `job.id` themselves, so that they say which job at `INFO` too.
//! Field names follow OpenTelemetry's where one exists
//! (`http.request.method`, `url.path`); `error.code` is the job's own. Warnings that clients
//! or a failing store can trigger at any rate are limited to one per reason
//! per second ([`limit`]).

use std::time::Duration;

use http::Request;
use tracing::{Level, Span};

use crate::job::Job;
use crate::store::{ErrorCode, JobError, JobId, Outcome};

#[cfg(feature = "callbacks")]
mod callback;
mod limit;
mod meters;
mod store_op;

#[cfg(feature = "callbacks")]
pub(crate) use callback::{attempt_unrecorded, callback_refused, delivered, given_up, retrying};

use limit::Limited;
pub(crate) use meters::Meters;
pub(crate) use store_op::{StoreOp, store};

/// A layer's telemetry state: its metric handles, and the limits of the
/// warnings its clients can trigger at any rate (per layer, so that one
/// app's flood does not hide another's).
#[derive(Default)]
pub(crate) struct Telemetry {
    pub(crate) meters: Meters,
    refusals: [Limited; Refusal::ALL.len()],
    key_reuse: Limited,
}

/// Why a submission was refused with `503`: the `reason` of the warning
/// and of `tower_accepted_jobs_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Running and queued jobs are at their limits.
    Capacity,
    /// The store has no room (`StoreError::Full`).
    StoreFull,
    /// The store did not answer.
    StoreUnavailable,
    /// A shutdown began.
    ShuttingDown,
}

impl Refusal {
    pub(crate) const ALL: [Self; 4] = [
        Self::Capacity,
        Self::StoreFull,
        Self::StoreUnavailable,
        Self::ShuttingDown,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Capacity => "capacity",
            Self::StoreFull => "store_full",
            Self::StoreUnavailable => "store_unavailable",
            Self::ShuttingDown => "shutting_down",
        }
    }
}

/// How a job ended, as `tower_accepted_jobs_finished_total` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Succeeded,
    Canceled,
    /// Failed, with the index of its code in [`Ending::CODES`].
    Failed(usize),
}

impl Ending {
    /// The `code` label of failed jobs; `other` stands for every code this
    /// version does not know, so that labels stay few.
    const CODES: [&'static str; 8] = [
        "http_status",
        "panicked",
        "error",
        "timeout",
        "lost",
        "result_too_large",
        "shutdown",
        "other",
    ];
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) const COUNT: usize = 2 + Self::CODES.len();

    pub(crate) fn failed(code: &ErrorCode) -> Self {
        let label = match code {
            ErrorCode::Other(_) => "other",
            code => code.as_str(),
        };
        Self::Failed(
            Self::CODES
                .iter()
                .position(|c| *c == label)
                .unwrap_or(Self::CODES.len() - 1),
        )
    }

    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn index(self) -> usize {
        match self {
            Self::Succeeded => 0,
            Self::Canceled => 1,
            Self::Failed(code) => 2 + code,
        }
    }

    /// The `status` and `code` labels of the ending at `index`.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn labels(index: usize) -> (&'static str, &'static str) {
        match index {
            0 => ("succeeded", "none"),
            1 => ("canceled", "none"),
            n => ("failed", Self::CODES[(n - 2).min(Self::CODES.len() - 1)]),
        }
    }
}

/// The `job` span of a job about to run: `job.id`, the request's method
/// and path, and the attempt. It follows from the span the job was
/// accepted in (the submitting request's, under tower-http's `TraceLayer`),
/// without being its child: the request ends long before the job.
pub(crate) fn job_span<B>(request: &Request<B>, job: &Job) -> Span {
    // A root: the job outlives the request by far, and a trace of the
    // request should not span the job's minutes.
    let span = tracing::span!(
        parent: None,
        Level::DEBUG,
        "job",
        job.id = %job.id(),
        http.request.method = %request.method(),
        url.path = request.uri().path(),
        job.attempt = job.attempt(),
    );
    if !span.is_disabled() {
        span.follows_from(Span::current());
    }
    span
}

/// A job accepted.
pub(crate) fn accepted(meters: &Meters, id: JobId) {
    meters.accepted();
    tracing::debug!(job.id = %id, "job accepted");
}

/// A keyed submission answered with its original job.
pub(crate) fn replayed(id: JobId) {
    tracing::debug!(job.id = %id, "idempotent replay: the original job's answer");
}

/// An `Idempotency-Key` sent again with another request.
pub(crate) fn key_reused(telemetry: &Telemetry) {
    if let Some(held_back) = telemetry.key_reuse.allow() {
        tracing::info!(held_back, "Idempotency-Key reused with a different request: 422");
    }
}

/// A submission refused with `503`.
pub(crate) fn refused(telemetry: &Telemetry, reason: Refusal) {
    telemetry.meters.refused(reason);
    if let Some(held_back) = telemetry.refusals[reason as usize].allow() {
        tracing::warn!(reason = reason.as_str(), held_back, "submission refused: 503");
    }
}

/// The job's handler starts, `waited` after its acceptance.
pub(crate) fn started(meters: &Meters, waited: Duration) {
    meters.queue_wait(waited);
    tracing::debug!(wait_ms = millis(waited), "job started");
}

/// How long a job waited to start and then ran, for a job that started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) waited: Duration,
    pub(crate) ran: Duration,
}

/// What the log and the metrics say of a job's end: taken from the outcome
/// before it moves into the store (copying only what a failure says), and
/// said once the store answered whether it took it. Counted once per job,
/// there: a job that ended meanwhile elsewhere (canceled, lost to another
/// process) is counted where that happened.
pub(crate) struct Ended {
    kind: EndKind,
    timing: Option<Timing>,
}

enum EndKind {
    Succeeded,
    HttpStatus(u16),
    Failed(JobError),
}

impl Ended {
    pub(crate) fn of(outcome: &Outcome, timing: Option<Timing>) -> Self {
        let kind = match outcome {
            Outcome::Response(response) if response.status().as_u16() < 400 => EndKind::Succeeded,
            Outcome::Response(response) => EndKind::HttpStatus(response.status().as_u16()),
            Outcome::Failed(error) => EndKind::Failed(error.clone()),
        };
        Self { kind, timing }
    }

    /// Logs and counts the end when the store `recorded` it.
    pub(crate) fn say(self, meters: &Meters, id: JobId, recorded: bool) {
        if !recorded {
            return discarded(id);
        }
        if let Some(timing) = self.timing {
            meters.run_time(timing.ran);
        }
        let (ran, waited) = self.timing.map_or((0, 0), |t| (millis(t.ran), millis(t.waited)));
        match self.kind {
            EndKind::Succeeded => {
                meters.finished(Ending::Succeeded, 1);
                tracing::info!(job.id = %id, duration_ms = ran, wait_ms = waited, "job succeeded");
            }
            EndKind::HttpStatus(status) => {
                meters.finished(Ending::failed(&ErrorCode::HttpStatus), 1);
                // A 4xx is the client's doing, at whatever rate it likes:
                // not a warning.
                if status < 500 {
                    tracing::info!(job.id = %id, error.code = "http_status", http.response.status_code = status, duration_ms = ran, "job failed");
                } else {
                    tracing::warn!(job.id = %id, error.code = "http_status", http.response.status_code = status, duration_ms = ran, "job failed");
                }
            }
            EndKind::Failed(error) => {
                meters.finished(Ending::failed(&error.code), 1);
                // A panic had its own `ERROR` event, with its payload, where
                // it was caught.
                if error.code != ErrorCode::Panicked {
                    tracing::warn!(
                        job.id = %id,
                        error.code = error.code.as_str(),
                        error.message = %error.message,
                        duration_ms = ran,
                        wait_ms = waited,
                        "job failed"
                    );
                }
            }
        }
    }
}

/// The store kept the job's earlier end (canceled, deleted, or lost to
/// another process): this process's outcome is dropped.
fn discarded(id: JobId) {
    tracing::debug!(job.id = %id, "the job ended elsewhere meanwhile: its outcome here is dropped");
}

/// A durable job cut short by a shutdown went back to its queue, for
/// another process: it has not ended.
pub(crate) fn handed_back(id: JobId) {
    tracing::info!(job.id = %id, "shutting down: the durable job went back to its queue");
}

/// The job was canceled by a client (`DELETE`): counted where the store
/// says so, once per job.
pub(crate) fn canceled(meters: &Meters, id: JobId) {
    meters.finished(Ending::Canceled, 1);
    tracing::info!(job.id = %id, "job canceled");
}

/// The job ended elsewhere (canceled, deleted, lost): it stops here.
pub(crate) fn stopped(id: JobId) {
    tracing::debug!(job.id = %id, "the job ended elsewhere: it stops here");
}

/// A sweep ended `lost` jobs whose process went away.
pub(crate) fn lost(meters: &Meters, jobs: usize) {
    meters.finished(Ending::failed(&ErrorCode::Lost), jobs as u64);
    tracing::warn!(jobs, "jobs of a process that went away ended `lost`");
}

/// A sweep handed lapsed durable jobs back to their queue.
pub(crate) fn requeued(jobs: usize) {
    tracing::info!(jobs, "durable jobs of a process that went away are queued again");
}

/// This process's claim on a job that was still running lapsed: another
/// process may run it now.
pub(crate) fn lease_lost(id: JobId) {
    static LIMIT: Limited = Limited::new();
    if let Some(held_back) = LIMIT.allow() {
        tracing::warn!(job.id = %id, held_back, "the job's lease was lost: it stops here");
    }
}

/// The store confirmed a renewal of the leases `lag` after it was due.
pub(crate) fn renewed(meters: &Meters, lag: Duration, period: Duration) {
    meters.renewal_lag(lag);
    if lag > period {
        static LIMIT: Limited = Limited::new();
        if let Some(held_back) = LIMIT.allow() {
            tracing::warn!(
                lag_ms = millis(lag),
                period_ms = millis(period),
                held_back,
                "lease renewal late: leases may lapse and jobs run again elsewhere"
            );
        }
    }
}

/// Recording a job's outcome failed; it is tried again until the store
/// answers.
pub(crate) fn finish_retried(id: JobId) {
    static LIMIT: Limited = Limited::new();
    if let Some(held_back) = LIMIT.allow() {
        tracing::warn!(job.id = %id, held_back, "recording the job's outcome failed: trying again");
    }
}

/// Whole milliseconds: jobs are slow by nature, and an integer is
/// formatted at a fraction of a float's cost (this is on every job's path
/// at `INFO`).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_has_its_own_label() {
        let codes = [
            ErrorCode::HttpStatus,
            ErrorCode::Panicked,
            ErrorCode::Error,
            ErrorCode::Timeout,
            ErrorCode::Lost,
            ErrorCode::ResultTooLarge,
            ErrorCode::Shutdown,
        ];
        for code in &codes {
            let Ending::Failed(index) = Ending::failed(code) else {
                unreachable!("a failure")
            };
            assert_eq!(Ending::labels(Ending::Failed(index).index()), ("failed", code.as_str()));
        }
        let other = Ending::failed(&ErrorCode::from("quota_exceeded"));
        assert_eq!(Ending::labels(other.index()), ("failed", "other"));
        assert_eq!(Ending::labels(Ending::Succeeded.index()), ("succeeded", "none"));
        assert_eq!(Ending::labels(Ending::Canceled.index()), ("canceled", "none"));
        assert!(Ending::failed(&ErrorCode::Shutdown).index() < Ending::COUNT);
    }
}

//! Recording a job's outcome in the store: at once for the in-process
//! waiter, and for the store for as long as it fails, so that a job never
//! stays `running` while this process keeps its lease alive.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::admission::Admission;
use crate::config::LayerState;
use crate::job::Job;
use crate::store::{Claim, ErrorCode, JobError, JobStore, Outcome};
use crate::telemetry::{self, StoreOp, Timing, store};

/// The first pause before `finish` is tried again.
pub(crate) const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest pause between two tries of `finish`: a store back from a
/// fault hears of the job within about this long.
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(2);

/// How long a shutdown waits for the store to take back a durable job.
const RELEASE_BOUND: Duration = Duration::from_secs(2);

/// Records `outcome` (retrying a store that fails, see [`finish_until_answered`])
/// and hands it to the in-process waiter, which does not wait for the store.
///
/// (A function returning an `async` block rather than an `async fn`, so that
/// the outcome is held once in the task's state, not twice.)
#[allow(clippy::manual_async_fn, reason = "an `async fn` holds its arguments twice")]
pub(crate) fn record_outcome<'a, St: JobStore>(
    shared: &'a LayerState<St>,
    job: &'a Job,
    outcome: Outcome,
    timing: Option<Timing>,
    waiter: Option<oneshot::Sender<Outcome>>,
) -> impl Future<Output = ()> + 'a {
    async move {
        let claim = job.claim();
        let meters = &shared.telemetry.meters;
        // A renewal that finds the lease gone from now on is this end's
        // doing, not a lost claim.
        job.mark_recording();
        let shutdown = matches!(&outcome, Outcome::Failed(e) if e.code == ErrorCode::Shutdown);
        // A durable job cut short by a shutdown is handed back to its queue,
        // for another replica to run, rather than failed. If the store does
        // not answer in time, its lease lapses and a sweep hands it back. A
        // store of one process (no lease) has nobody to hand it to.
        if shutdown && job.is_durable() && shared.store.lease().is_some() {
            job.cancel();
            let release = store(meters, StoreOp::Release, shared.store.release(claim));
            match tokio::time::timeout(RELEASE_BOUND, release).await {
                Ok(Ok(false)) => {}
                Ok(Ok(true)) => return telemetry::handed_back(claim.id()),
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::warn!(
                        job.id = %claim.id(),
                        "the store did not take the durable job back in time: its lease will lapse"
                    );
                    return;
                }
            }
        }
        if shutdown {
            shared.admissions.forced.fetch_add(1, Ordering::AcqRel);
            job.cancel();
        }
        // What the log and the metrics say of the end, taken before the
        // outcome moves into the store, and said once the store took it.
        let ending = telemetry::Ended::of(&outcome, timing);
        // The store takes the outcome; a copy stays for the waiter, and for
        // a retry if the store can fail.
        if waiter.is_none() && !shared.store.finish_can_fail() {
            let recorded = store(meters, StoreOp::Finish, shared.store.finish(claim, outcome)).await;
            let recorded = matches!(recorded, Ok(true));
            ended_here(shared, job, recorded);
            return ending.say(meters, claim.id(), recorded);
        }
        let answer = store(meters, StoreOp::Finish, shared.store.finish(claim, outcome.clone())).await;
        if let Some(waiter) = waiter {
            // The handler's answer is known: the waiter has it now, whether
            // or not the store has it yet.
            let _ = waiter.send(outcome.clone());
        }
        let recorded = match answer {
            Ok(recorded) => recorded,
            Err(_) => {
                telemetry::finish_retried(claim.id());
                Box::pin(finish_until_answered(shared, claim, &outcome)).await
            }
        };
        ended_here(shared, job, recorded);
        ending.say(meters, claim.id(), recorded);
    }
}

/// The store took `job`'s end (`recorded`): a completion callback it has is
/// due now, and this process's delivery loop hears of it at once rather
/// than at its next poll.
#[cfg_attr(not(feature = "callbacks"), allow(unused_variables))]
fn ended_here<St>(shared: &LayerState<St>, job: &Job, recorded: bool) {
    #[cfg(feature = "callbacks")]
    if recorded && job.may_have_callback() {
        shared.deliveries.wake();
    }
}

/// Tries `finish` again, further and further apart (doubling from
/// [`FIRST_RETRY`] up to [`MAX_RETRY`], with jitter so that the replicas of
/// a store that comes back do not all call at once), until the store
/// answers: `true` (recorded) or `false` (the job ended otherwise meanwhile:
/// canceled, deleted, or declared lost by another replica).
///
/// Never given up while the process lives: its heartbeat keeps the job's
/// lease, so no other replica would ever end the job; a `finish` dropped
/// here would leave it `running` for good. Only a shutdown that gives up
/// waiting stops it: the process is going away, its heartbeat with it, and
/// the store ends the job `lost` once its lease lapses.
///
/// The caller holds the job's admission (so a graceful shutdown waits for
/// this too) and its runner (so a store that is down for long holds back the
/// queue rather than piling up outcomes in memory: the natural
/// back-pressure).
async fn finish_until_answered<St: JobStore>(shared: &LayerState<St>, claim: Claim, outcome: &Outcome) -> bool {
    let force = &shared.admissions.force;
    let mut delay = FIRST_RETRY;
    loop {
        // "Equal jitter": between half the delay and the delay, never above
        // the cap.
        let half = delay / 2;
        let pause = half + half.mul_f64(fastrand::f64());
        tokio::select! {
            biased;
            () = force.fired() => return false,
            () = tokio::time::sleep(pause) => {}
        }
        let answered = tokio::select! {
            biased;
            () = force.fired() => return false,
            result = store(&shared.telemetry.meters, StoreOp::Finish, shared.store.finish(claim, outcome.clone())) => result,
        };
        if let Ok(recorded) = answered {
            return recorded;
        }
        delay = (delay * 2).min(MAX_RETRY);
    }
}

/// A job's task that has not recorded an outcome yet. Dropped armed (the
/// task unwound from a panic outside the handler's catcher, say in the
/// store's `finish` or in a `Drop`, or was dropped mid-way), it ends the job
/// `failed` with `panicked` from a task of its own, retrying as
/// [`record_outcome`] does: otherwise nothing would ever end the job, since
/// this process's heartbeat keeps its lease alive. It holds the job's
/// admission meanwhile, so that a graceful shutdown waits for that too.
pub(crate) struct Unrecorded<St: JobStore> {
    claim: Claim,
    armed: Option<(Arc<LayerState<St>>, Admission)>,
}

impl<St: JobStore> Unrecorded<St> {
    pub(crate) fn new(shared: Arc<LayerState<St>>, claim: Claim, admission: Admission) -> Self {
        Self {
            claim,
            armed: Some((shared, admission)),
        }
    }

    /// The job's outcome is recorded, or the job ended elsewhere: nothing
    /// left to do but give its admission back.
    pub(crate) fn disarm(mut self) {
        self.armed = None;
    }
}

impl<St: JobStore> Drop for Unrecorded<St> {
    fn drop(&mut self) {
        let Some((shared, admission)) = self.armed.take() else {
            return;
        };
        // No runtime (or one shutting down, which drops the task at once):
        // the process is going away, and the store declares the job lost
        // after its lease.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let claim = self.claim;
        runtime.spawn(async move {
            let outcome = Outcome::Failed(JobError::new(
                ErrorCode::Panicked,
                "the job's task panicked or was dropped before recording its outcome",
            ));
            tracing::error!(job.id = %claim.id(), "the job's task panicked or was dropped before recording its outcome");
            let ending = telemetry::Ended::of(&outcome, None);
            let recorded = match store(&shared.telemetry.meters, StoreOp::Finish, shared.store.finish(claim, outcome.clone())).await {
                Ok(recorded) => recorded,
                Err(_) => finish_until_answered(&shared, claim, &outcome).await,
            };
            ending.say(&shared.telemetry.meters, claim.id(), recorded);
            drop(admission);
        });
    }
}

//! The claim loop: while this replica has a runner free, it claims the
//! oldest job of its layer's queue and sends the job's stored request
//! through the application, marked for the layer that runs it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::time::Instant;

use super::{Handoff, JobMark};
use crate::config::LayerState;
use crate::durability::{JobApp, lock};
use crate::store::{ErrorCode, JobError, JobStore, Outcome};
use crate::telemetry::{Ended, StoreOp, store};

/// The first pause of an idle claim loop; it doubles while the queue stays
/// empty, up to [`MAX_IDLE`]. Jobs queued here, or swept back, wake it at
/// once; those queued by other replicas are seen within `MAX_IDLE`.
const MIN_IDLE: Duration = Duration::from_millis(20);
/// The longest pause of an idle claim loop.
const MAX_IDLE: Duration = Duration::from_millis(500);
/// How long the loop holds back after a claimed job reached no layer here.
const MISSED_PAUSE: Duration = Duration::from_secs(1);

/// Starts the claim loop of the layer whose state is `shared`, sending
/// claimed jobs through `app`. Once per layer: a second call changes
/// nothing.
pub(crate) fn start_claiming<St: JobStore>(shared: &Arc<LayerState<St>>, app: JobApp) {
    if shared
        .durability
        .claiming
        .swap(true, std::sync::atomic::Ordering::AcqRel)
    {
        return;
    }
    super::ensure_upkeep(shared);
    tokio::spawn(claim_loop(Arc::downgrade(shared), app));
}

/// Claims while the layer accepts work; ends with its shutdown.
async fn claim_loop<St: JobStore>(state: Weak<LayerState<St>>, app: JobApp) {
    let mut idle = MIN_IDLE;
    loop {
        let Some(shared) = state.upgrade() else { return };
        let admissions = Arc::clone(&shared.admissions);
        if !admissions.accepting() {
            return;
        }
        let missed = *lock(&shared.durability.missed_until);
        drop(shared);
        if let Some(until) = missed.filter(|until| *until > Instant::now()) {
            tokio::time::sleep_until(until).await;
            continue;
        }
        // A runner first: a job is claimed only when it can start at once.
        let permit = tokio::select! {
            permit = Arc::clone(&admissions.running).acquire_owned() => permit,
            // Looks again whether the layer still accepts work.
            () = tokio::time::sleep(MAX_IDLE) => continue,
        };
        let Ok(permit) = permit else { return };
        let Some(admission) = admissions.admit() else {
            drop(permit);
            tokio::time::sleep(idle).await;
            continue;
        };
        let Some(shared) = state.upgrade() else { return };
        let claimed = store(
            &shared.telemetry.meters,
            StoreOp::ClaimNext,
            shared.store.claim_next(&shared.config.queue),
        )
        .await;
        match claimed {
            Ok(Some(claimed)) => {
                idle = MIN_IDLE;
                // The layer that takes the job holds its claim (and renews
                // it) from then on; until then, for the moment the request
                // takes to reach it, the lease the claim took suffices.
                let handoff = Handoff {
                    claim: claimed.claim,
                    claimed_at: Instant::now(),
                    admission,
                    permit,
                };
                let mark = JobMark::new(Arc::clone(&shared.config.queue), handoff);
                let mut request = claimed.request.map(Full::new);
                request.extensions_mut().insert(mark.clone());
                tokio::spawn(dispatch(Arc::clone(&shared), Arc::clone(&app), request, mark));
            }
            Ok(None) | Err(_) => {
                drop((permit, admission));
                let nudge = Arc::clone(&shared.durability.nudge);
                drop(shared);
                tokio::select! {
                    () = nudge.notified() => idle = MIN_IDLE,
                    () = tokio::time::sleep(idle) => idle = (idle * 2).min(MAX_IDLE),
                }
            }
        }
    }
}

/// Sends a claimed job's request through the application. If no layer of
/// this queue took it (the route is not served here, or a middleware in
/// front of the layer answered), the job goes back to its queue, its
/// attempt spent (so that a job no replica can run ends after
/// `max_attempts`), and the loop holds back for a moment.
async fn dispatch<St: JobStore>(
    shared: Arc<LayerState<St>>,
    app: JobApp,
    request: Request<Full<Bytes>>,
    mark: JobMark,
) {
    app(request).await;
    if let Some(handoff) = mark.take() {
        let claim = handoff.claim;
        drop(handoff);
        *lock(&shared.durability.missed_until) = Some(Instant::now() + MISSED_PAUSE);
        let _ = store(&shared.telemetry.meters, StoreOp::Release, shared.store.release(claim)).await;
    }
}

/// After a shutdown, ends the jobs waiting in the layer's queue `failed`
/// with `shutdown` when the store is of one process (no lease): nobody
/// else will ever run them. Returns how many it ended.
pub(crate) async fn fail_queued_after_shutdown<St: JobStore>(shared: &LayerState<St>) -> usize {
    if shared.store.lease().is_some() || !shared.durability.claims_jobs() {
        return 0;
    }
    let meters = &shared.telemetry.meters;
    let mut ended = 0;
    while let Ok(Some(claimed)) = store(
        meters,
        StoreOp::ClaimNext,
        shared.store.claim_next(&shared.config.queue),
    )
    .await
    {
        let error = JobError::new(ErrorCode::Shutdown, "the server shut down before the job could run");
        let outcome = Outcome::Failed(error);
        let ending = Ended::of(&outcome, None);
        let recorded = store(meters, StoreOp::Finish, shared.store.finish(claimed.claim, outcome)).await;
        let recorded = matches!(recorded, Ok(true));
        ending.say(meters, claimed.claim.id(), recorded);
        ended += usize::from(recorded);
    }
    ended
}

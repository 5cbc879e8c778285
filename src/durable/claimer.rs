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
use crate::durability::JobApp;
use crate::job::Job;
use crate::store::JobStore;

/// The first pause of an idle claim loop; it doubles while the queue stays
/// empty, up to [`MAX_IDLE`]. Jobs queued here, or swept back, wake it at
/// once; those queued by other replicas are seen within `MAX_IDLE`.
const MIN_IDLE: Duration = Duration::from_millis(20);
/// The longest pause of an idle claim loop.
const MAX_IDLE: Duration = Duration::from_millis(500);
/// How long the loop holds back after a claimed job reached no layer here.
const MISSED_PAUSE: Duration = Duration::from_secs(1);

/// The identity of a layer's shared state, which a [`JobMark`] names.
pub(crate) fn layer_id<St>(shared: &Arc<LayerState<St>>) -> usize {
    Arc::as_ptr(shared) as *const () as usize
}

/// Starts the claim loop of the layer whose state is `shared`, sending
/// claimed jobs through `app`. Once per layer: a second call changes
/// nothing.
pub(crate) fn start_claiming<St: JobStore>(shared: &Arc<LayerState<St>>, app: JobApp) {
    if shared.durability.app.set(app).is_err() {
        return;
    }
    super::ensure_upkeep(shared);
    tokio::spawn(claim_loop(Arc::downgrade(shared)));
}

/// Claims while the layer lives and accepts work.
async fn claim_loop<St: JobStore>(state: Weak<LayerState<St>>) {
    let mut idle = MIN_IDLE;
    loop {
        let Some(shared) = state.upgrade() else { return };
        let admissions = Arc::clone(&shared.admissions);
        if !admissions.accepting() {
            return;
        }
        let missed = *shared
            .durability
            .missed_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        let claimed = shared.store.claim_next(&shared.config.queue).await;
        match claimed {
            Ok(Some(claimed)) => {
                idle = MIN_IDLE;
                let claim = claimed.claim;
                // Renewed from now on; the runner's task lets it go.
                let job = Job::of_claim(claim, true, Instant::now());
                shared.durability.leases.hold(&job);
                let handoff = Handoff {
                    claim,
                    claimed_at: Instant::now(),
                    admission,
                    permit,
                };
                let mark = JobMark::new(layer_id(&shared), handoff);
                let mut request = claimed.request.map(Full::new);
                request.extensions_mut().insert(mark.clone());
                tokio::spawn(dispatch(Arc::clone(&shared), request, mark, job));
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
/// this queue took it (the route is not served here), the job goes back to
/// its queue and the loop holds back for a moment.
async fn dispatch<St: JobStore>(shared: Arc<LayerState<St>>, request: Request<Full<Bytes>>, mark: JobMark, job: Job) {
    let Some(app) = shared.durability.app.get().cloned() else {
        return;
    };
    app(request).await;
    if let Some(handoff) = mark.take() {
        let claim = handoff.claim;
        drop(handoff);
        let _held = crate::durability::LetGo::new(&shared.durability.leases, claim);
        *shared
            .durability
            .missed_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now() + MISSED_PAUSE);
        let _ = shared.store.release(claim).await;
        drop(job);
    }
}

//! The claims a layer's runner holds, renewed every third of the store's
//! lease, and the sweep that hands lapsed jobs back: the layer's side of
//! the store's execution contract.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::config::LayerState;
use crate::durability::lock;
use crate::store::{JobStore, renewal_period};
use crate::telemetry::{self, StoreOp, store};

/// Starts, once per layer and only for a store whose leases can lapse,
/// the renewal of the layer's claims and the periodic sweep. Called on
/// every request the layer sees (one atomic load once started), so that a
/// replica that only answers polls sweeps too. The delivery of completion
/// callbacks (feature `callbacks`) starts here too, for the same reason.
pub(crate) fn ensure_upkeep<St: JobStore>(shared: &Arc<LayerState<St>>) {
    #[cfg(feature = "callbacks")]
    crate::callback::ensure_deliveries(shared);
    let started = &shared.durability.upkeep;
    if started.load(Ordering::Acquire) {
        return;
    }
    let Some(lease) = shared.store.lease() else {
        // A store without leases has nothing to keep up, ever: marked done,
        // so that every later request stops at the load above.
        started.store(true, Ordering::Release);
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if started.swap(true, Ordering::AcqRel) {
        return;
    }
    runtime.spawn(renewals(Arc::downgrade(shared), lease));
    runtime.spawn(sweeps(Arc::downgrade(shared), lease));
}

/// Renews the held claims every third of a lease, all in one call; a
/// renewal that fails is tried again after a third of that, so that one
/// failure leaves two thirds of the lease to spare. Never drops a claim on
/// a failure: only the store's answer that it is held no more does.
async fn renewals<St: JobStore>(state: Weak<LayerState<St>>, lease: Duration) {
    let period = renewal_period(lease);
    let retry = (period / 3).max(Duration::from_millis(1));
    let mut next = tokio::time::Instant::now() + period;
    // When the renewal under way was first due: retries after store errors
    // count from there, so that the lag says how close leases came to
    // lapsing.
    let mut due = None;
    loop {
        tokio::time::sleep_until(next).await;
        let Some(shared) = state.upgrade() else { return };
        let leases = &shared.durability.leases;
        let claims = leases.claims();
        if claims.is_empty() {
            next = tokio::time::Instant::now() + period;
            due = None;
            continue;
        }
        let asked = tokio::time::Instant::now();
        let due_at = *due.get_or_insert(next);
        match store(
            &shared.telemetry.meters,
            StoreOp::Renew,
            shared.store.renew(claims.clone()),
        )
        .await
        {
            Ok(held) => {
                telemetry::renewed(&shared.telemetry.meters, due_at.elapsed(), period);
                due = None;
                for (claim, held) in claims.into_iter().zip(held) {
                    // A job whose end is being recorded let its lease go
                    // by ending: only a running one was lost.
                    if !held
                        && let Some(job) = leases.lost(claim)
                        && !job.is_recording()
                    {
                        telemetry::lease_lost(claim.id());
                    }
                }
                next = asked + period;
            }
            Err(_) => {
                failed_now(&shared);
                next = tokio::time::Instant::now() + retry;
            }
        }
    }
}

/// Sweeps the store every half lease, and wakes the claim loop when jobs
/// went back to their queues.
///
/// Not within a lease of a failed renewal or sweep: a store that was out of
/// reach (frozen, partitioned, failing over) for longer than a lease comes
/// back with every lease lapsed, its holders alive and about to renew. A
/// sweep at once would take every running job from its runner (a durable
/// one spends an attempt, any other ends `lost`); holding back one lease
/// lets the live holders renew first, while the claims of a replica that
/// really died still lapse a lease later.
async fn sweeps<St: JobStore>(state: Weak<LayerState<St>>, lease: Duration) {
    let period = (lease / 2).max(Duration::from_millis(1));
    loop {
        tokio::time::sleep(period).await;
        let Some(shared) = state.upgrade() else { return };
        let failed_at = *lock(&shared.durability.store_failed_at);
        if failed_at.is_some_and(|at| at.elapsed() < lease) {
            continue;
        }
        match store(&shared.telemetry.meters, StoreOp::Sweep, shared.store.sweep()).await {
            Ok(swept) => {
                if swept.lost > 0 {
                    telemetry::lost(&shared.telemetry.meters, swept.lost);
                }
                if swept.requeued > 0 {
                    telemetry::requeued(swept.requeued);
                    shared.durability.nudge.notify_one();
                }
            }
            Err(_) => failed_now(&shared),
        }
    }
}

/// Notes that the store just failed this layer.
fn failed_now<St>(shared: &LayerState<St>) {
    *lock(&shared.durability.store_failed_at) = Some(tokio::time::Instant::now());
}

#[cfg(test)]
mod tests {
    use crate::durability::Leases;
    use crate::job::Job;
    use crate::store::{Claim, JobId};

    #[test]
    fn a_claim_is_let_go_only_by_its_own_attempt() {
        let leases = Leases::default();
        let id = JobId::new();
        let job = Job::of_claim(Claim::new(id, 2), true, tokio::time::Instant::now());
        leases.hold(&job);
        leases.let_go(Claim::new(id, 1));
        assert_eq!(leases.len(), 1);
        assert!(leases.lost(Claim::new(id, 3)).is_none());
        assert!(!job.is_cancelled());
        assert!(leases.lost(Claim::new(id, 2)).is_some());
        assert!(job.is_cancelled());
        assert_eq!(leases.len(), 0);
    }
}

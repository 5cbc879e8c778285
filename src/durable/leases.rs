//! The claims a layer's runner holds, renewed every third of the store's
//! lease, and the sweep that hands lapsed jobs back: the layer's side of
//! the store's execution contract.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rustc_hash::FxBuildHasher;

use crate::config::LayerState;
use crate::job::Job;
use crate::store::{Claim, JobId, JobStore, renewal_period};

/// The jobs whose claim this process holds (running, or waiting for a
/// runner here), with their handles, so that a job whose claim was lost
/// is told to stop.
#[derive(Default)]
pub(crate) struct Leases {
    held: Mutex<HashMap<JobId, Job, FxBuildHasher>>,
}

impl Leases {
    /// Renews `job`'s claim from now on.
    pub(crate) fn hold(&self, job: &Job) {
        lock(&self.held).insert(job.id(), job.clone());
    }

    /// Stops renewing `claim` (its job ended, or was handed back).
    fn let_go(&self, claim: Claim) {
        let mut held = lock(&self.held);
        if held.get(&claim.id()).is_some_and(|job| job.claim() == claim) {
            held.remove(&claim.id());
        }
    }

    /// The claims held now.
    fn claims(&self) -> Vec<Claim> {
        lock(&self.held).values().map(Job::claim).collect()
    }

    /// `claim` is held no more (the job ended elsewhere, or another
    /// attempt took it): its handler is told to stop, and its writes are
    /// fenced off by the store anyway.
    fn lost(&self, claim: Claim) {
        let job = {
            let mut held = lock(&self.held);
            match held.get(&claim.id()) {
                Some(job) if job.claim() == claim => held.remove(&claim.id()),
                _ => None,
            }
        };
        if let Some(job) = job {
            job.cancel();
        }
    }

    /// How many claims are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.held).len()
    }
}

/// Lets go of a claim when the job's task ends, however it ends.
pub(crate) struct LetGo<'a> {
    leases: &'a Leases,
    claim: Claim,
}

impl<'a> LetGo<'a> {
    pub(crate) fn new(leases: &'a Leases, claim: Claim) -> Self {
        Self { leases, claim }
    }
}

impl Drop for LetGo<'_> {
    fn drop(&mut self) {
        self.leases.let_go(self.claim);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts, once per layer and only for a store whose leases can lapse,
/// the renewal of the layer's claims and the periodic sweep. Called on
/// every request the layer sees (one atomic load once started), so that a
/// replica that only answers polls sweeps too.
pub(crate) fn ensure_upkeep<St: JobStore>(shared: &Arc<LayerState<St>>) {
    let started = &shared.durability.upkeep;
    if started.load(Ordering::Acquire) {
        return;
    }
    let Some(lease) = shared.store.lease() else { return };
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
    loop {
        tokio::time::sleep_until(next).await;
        let Some(shared) = state.upgrade() else { return };
        let leases = &shared.durability.leases;
        let claims = leases.claims();
        if claims.is_empty() {
            next = tokio::time::Instant::now() + period;
            continue;
        }
        let asked = tokio::time::Instant::now();
        match shared.store.renew(claims.clone()).await {
            Ok(held) => {
                for (claim, held) in claims.into_iter().zip(held) {
                    if !held {
                        leases.lost(claim);
                    }
                }
                next = asked + period;
            }
            Err(_) => next = tokio::time::Instant::now() + retry,
        }
    }
}

/// Sweeps the store every half lease, and wakes the claim loop when jobs
/// went back to their queues.
async fn sweeps<St: JobStore>(state: Weak<LayerState<St>>, lease: Duration) {
    let period = (lease / 2).max(Duration::from_millis(1));
    loop {
        tokio::time::sleep(period).await;
        let Some(shared) = state.upgrade() else { return };
        if let Ok(swept) = shared.store.sweep().await
            && swept.requeued > 0
        {
            shared.durability.nudge.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_let_go_only_by_its_own_attempt() {
        let leases = Leases::default();
        let id = JobId::new();
        let job = Job::of_claim(Claim::new(id, 2), true, tokio::time::Instant::now());
        leases.hold(&job);
        leases.let_go(Claim::new(id, 1));
        assert_eq!(leases.len(), 1);
        leases.lost(Claim::new(id, 3));
        assert!(!job.is_cancelled());
        leases.lost(Claim::new(id, 2));
        assert!(job.is_cancelled());
        assert_eq!(leases.len(), 0);
    }
}

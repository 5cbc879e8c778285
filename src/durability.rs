//! A layer's durable state, as its shared state holds it: the claims its
//! runner holds, whether their upkeep runs, and the application claimed
//! jobs are sent through. The work on it is in the `durable` module.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use rustc_hash::FxBuildHasher;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::job::Job;
use crate::store::{Claim, JobId};

/// A layer's durable side: the claims it holds, whether their upkeep runs,
/// and whether it claims queued jobs.
#[derive(Default)]
pub(crate) struct Durability {
    pub(crate) leases: Leases,
    /// Whether renewal and sweeping have started.
    pub(crate) upkeep: AtomicBool,
    /// Whether a claim loop runs for this layer. The loop owns the
    /// application it sends claimed jobs through, not the state: the
    /// application holds the layer's services, which hold the state, and
    /// the state holding it back would keep all of them alive for good.
    pub(crate) claiming: AtomicBool,
    /// Wakes the claim loop: a job was queued here, or swept back. Given
    /// with `notify_one`, so that a nudge that comes while the loop is busy
    /// claiming is kept for its next wait rather than lost.
    pub(crate) nudge: Arc<Notify>,
    /// Until when the claim loop holds back after a claimed job reached no
    /// layer here (a route this replica does not serve).
    pub(crate) missed_until: Mutex<Option<Instant>>,
    /// When a renewal or a sweep of this layer last failed: sweeps hold
    /// back for a lease after it (see `durable::leases`).
    pub(crate) store_failed_at: Mutex<Option<Instant>>,
}

impl Durability {
    /// Whether this replica claims queued jobs (it was given the
    /// application to run them through).
    pub(crate) fn claims_jobs(&self) -> bool {
        self.claiming.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The application, as the claim loop calls it: the request in, the
/// response dropped (the layer on the route records the job's outcome).
pub(crate) type JobApp = Arc<dyn Fn(Request<Full<Bytes>>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

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
    pub(crate) fn let_go(&self, claim: Claim) {
        let mut held = lock(&self.held);
        if held.get(&claim.id()).is_some_and(|job| job.claim() == claim) {
            held.remove(&claim.id());
        }
    }

    /// The claims held now.
    pub(crate) fn claims(&self) -> Vec<Claim> {
        lock(&self.held).values().map(Job::claim).collect()
    }

    /// `claim` is held no more (the job ended elsewhere, or another
    /// attempt took it): its handler is told to stop, and its writes are
    /// fenced off by the store anyway.
    pub(crate) fn lost(&self, claim: Claim) -> Option<Job> {
        let job = {
            let mut held = lock(&self.held);
            match held.get(&claim.id()) {
                Some(job) if job.claim() == claim => held.remove(&claim.id()),
                _ => None,
            }
        };
        if let Some(job) = &job {
            job.cancel();
        }
        job
    }

    /// How many claims are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
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

/// A poisoned lock only means a thread panicked while holding it; what it
/// guards is a map or an instant, whole after every update: go on.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

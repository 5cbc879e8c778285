//! How a claimed job finds its way to the layer that runs it: its stored
//! request is sent through the application (the service given to
//! [`AcceptedLayer::run_jobs_with`](crate::AcceptedLayer::run_jobs_with)),
//! marked in its extensions; the layer on the request's route takes the
//! mark's hand-off and runs the job's handler there. The application's own
//! router does the routing, so this works with `Router::layer` (a layer
//! per route) as well as with a layer per route given by hand.

use std::sync::{Arc, Mutex};

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::admission::Admission;
use crate::durability::lock;
use crate::store::Claim;

/// What a claim loop hands the layer that runs its job.
pub(crate) struct Handoff {
    pub(crate) claim: Claim,
    /// When the claim was taken: the job's clock starts again there.
    pub(crate) claimed_at: Instant,
    pub(crate) admission: Admission,
    pub(crate) permit: OwnedSemaphorePermit,
}

/// The mark on a claimed job's request: which layers may take it (those of
/// its queue), and the hand-off, taken once.
#[derive(Clone)]
pub(crate) struct JobMark(Arc<Mark>);

struct Mark {
    /// The job's queue: a layer of this queue runs it.
    queue: Arc<str>,
    handoff: Mutex<Option<Handoff>>,
}

impl JobMark {
    pub(crate) fn new(queue: Arc<str>, handoff: Handoff) -> Self {
        Self(Arc::new(Mark {
            queue,
            handoff: Mutex::new(Some(handoff)),
        }))
    }

    /// The hand-off, for a layer of `queue` only, once. Any layer of the
    /// job's queue runs it as well as the one that claimed it: they all
    /// serve the job's route (the application routed it there) and write
    /// the same store.
    pub(crate) fn take_for(&self, queue: &str) -> Option<Handoff> {
        if *self.0.queue != *queue {
            return None;
        }
        self.take()
    }

    /// The hand-off, if no layer took it: the request reached no layer of
    /// this queue (a route this replica does not serve).
    pub(crate) fn take(&self) -> Option<Handoff> {
        lock(&self.0.handoff).take()
    }
}

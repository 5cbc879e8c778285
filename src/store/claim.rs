//! Execution in the store contract: claims (the right to run one attempt
//! of a job, fenced by its number), durable jobs and what a sweep did.

use std::time::Duration;

use bytes::Bytes;
use http::Request;

use super::{JobId, JobRecord};

/// The right to run one attempt of a job: the job's id and the attempt's
/// number, which is the fencing token of every write the runner makes.
///
/// A store hands out attempt 1 to the replica that creates a job it runs at
/// once ([`JobStore::create`](super::JobStore::create), or
/// [`create_durable`](super::JobStore::create_durable) of a job that is not
/// queued), and the next number to whoever claims a queued job
/// ([`claim_next`](super::JobStore::claim_next)). Start, progress and finish
/// carry the claim; a write whose attempt is no longer the job's (its lease
/// lapsed and another replica took it) changes nothing and answers `false`,
/// which tells the runner it lost the job.
///
/// ```
/// use tower_accepted::store::{Claim, JobId};
///
/// let id = JobId::new();
/// let claim = Claim::first(id);
/// assert_eq!((claim.id(), claim.attempt()), (id, 1));
/// assert_eq!(Claim::new(id, 2).attempt(), 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Claim {
    id: JobId,
    attempt: u32,
}

impl Claim {
    /// The claim on attempt `attempt` of job `id`.
    pub fn new(id: JobId, attempt: u32) -> Self {
        Self { id, attempt }
    }

    /// The claim its creator holds on a job it runs at once: attempt 1.
    pub fn first(id: JobId) -> Self {
        Self::new(id, 1)
    }

    /// The job.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// The attempt, counted from 1: the fencing token.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// What a durable job keeps besides its record, written in the same atomic
/// create: the request to run again, the queue it waits in, and how many
/// attempts it may have.
///
/// ```
/// use bytes::Bytes;
/// use http::Request;
/// use tower_accepted::store::DurableJob;
///
/// let request = Request::post("/reports").body(Bytes::from_static(b"{}")).unwrap();
/// let durable = DurableJob::new(request, "default").with_max_attempts(5).queued(true);
/// assert_eq!(durable.max_attempts, 5);
/// assert!(durable.queued);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DurableJob {
    /// The request: method, URI, the headers kept (hop-by-hop ones never
    /// are) and the body.
    pub request: Request<Bytes>,
    /// The queue it waits in; replicas claim from the queues they serve.
    pub queue: String,
    /// How many attempts the job may have: a lapsed lease of the last one
    /// ends it `failed` with `error.code = "lost"`.
    pub max_attempts: u32,
    /// Whether it waits in the queue (`true`) or its creator runs it at
    /// once as attempt 1 (`false`, the default).
    pub queued: bool,
}

impl DurableJob {
    /// A durable job for `request` in `queue`, run at once by its creator,
    /// with 3 attempts.
    pub fn new(request: Request<Bytes>, queue: impl Into<String>) -> Self {
        Self {
            request,
            queue: queue.into(),
            max_attempts: 3,
            queued: false,
        }
    }

    /// With `max_attempts` attempts (at least 1).
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Queued (`true`) rather than run at once by its creator.
    pub fn queued(mut self, queued: bool) -> Self {
        self.queued = queued;
        self
    }
}

/// A job taken from a queue by [`claim_next`](super::JobStore::claim_next):
/// the claim, the job's record (its status still `pending`) and its stored
/// request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Claimed {
    /// The claim, whose lease the store has taken.
    pub claim: Claim,
    /// The job as it is now.
    pub record: JobRecord,
    /// The request to run.
    pub request: Request<Bytes>,
}

impl Claimed {
    /// A claimed job, as a store builds it.
    pub fn new(claim: Claim, record: JobRecord, request: Request<Bytes>) -> Self {
        Self { claim, record, request }
    }
}

/// What [`sweep`](super::JobStore::sweep) did with the jobs whose lease
/// lapsed.
///
/// ```
/// use tower_accepted::store::Swept;
///
/// let swept = Swept::new(2, 1);
/// assert_eq!((swept.requeued, swept.lost), (2, 1));
/// assert_eq!(Swept::default(), Swept::new(0, 0));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Swept {
    /// Durable jobs put back in their queue for another attempt.
    pub requeued: usize,
    /// Jobs ended `failed` with `error.code = "lost"`: not durable, or out
    /// of attempts.
    pub lost: usize,
}

impl Swept {
    /// What a sweep did, as a store says it.
    pub fn new(requeued: usize, lost: usize) -> Self {
        Self { requeued, lost }
    }
}

/// The message of a job whose last attempt's runner stopped: what every
/// store writes for `lost`.
pub const LOST_MESSAGE: &str = "the replica running the job stopped before it finished";

/// The message of a durable job claimed once more than its attempts allow
/// (its earlier claims were handed back, or never reached a layer that runs
/// it): it ends `failed` with `error.code = "lost"` instead of running.
pub const OUT_OF_ATTEMPTS: &str = "the job was claimed as often as its attempts allow without finishing";

/// A lease never renewed more often than this, nor less often than its
/// third: what a layer does with [`JobStore::lease`](super::JobStore::lease).
pub(crate) fn renewal_period(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(1))
}

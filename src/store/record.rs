//! The data a [`JobStore`](super::JobStore) keeps: records and idempotency
//! keys.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::callback::JobCallback;
use super::id::JobId;
use super::job_error::JobError;
use super::outcome::Outcome;
use super::status::JobStatus;

/// What a store knows of a job: everything of the status document but the
/// stored response itself.
///
/// The fields are public to read (and to change, as a store's own tests
/// do); the record is `#[non_exhaustive]`, so that fields can be added
/// without breaking stores. A store builds one with [`JobRecord::new`] and
/// the `with_…` methods, each taking what its storage holds (`None` for
/// what it does not):
///
/// ```
/// use tower_accepted::store::{ErrorCode, JobError, JobId, JobRecord, JobStatus};
///
/// // As a store reads a finished job back from its storage.
/// let id = JobId::new();
/// let record = JobRecord::new(id, JobStatus::Failed, 1_000, 2_000)
///     .with_started_at_ms(Some(1_500))
///     .with_progress(Some(0.5))
///     .with_message(Some("page 2 of 4".to_owned()))
///     .with_result_status(None)
///     .with_error(Some(JobError::new(ErrorCode::Timeout, "too slow")))
///     .with_owner(Some("alice".to_owned()));
/// assert_eq!(record.id, id);
/// assert_eq!(record.updated_at_ms, 2_000);
/// assert_eq!(record.error.unwrap().code, "timeout");
///
/// // As the layer makes a new one.
/// let fresh = JobRecord::pending(JobId::new());
/// assert_eq!(fresh.status, JobStatus::Pending);
/// assert!(!fresh.has_response());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JobRecord {
    /// The job's id.
    pub id: JobId,
    /// Where the job is.
    pub status: JobStatus,
    /// When the job was accepted, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// When the record last changed, in milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
    /// When a runner started the job (it left `pending`), in milliseconds
    /// since the Unix epoch; `None` while it waits. The time left that
    /// `Retry-After` estimates counts from here, not from acceptance, so
    /// that time spent in the queue is not taken for work.
    pub started_at_ms: Option<u64>,
    /// Progress between 0 and 1, as the handler last reported it.
    pub progress: Option<f32>,
    /// A message from the handler, such as "rendering page 4 of 10".
    pub message: Option<String>,
    /// The status of the stored response, when there is one.
    pub result_status: Option<u16>,
    /// Why the job failed.
    pub error: Option<JobError>,
    /// Who submitted the job, as the layer's owner function named them;
    /// `None` for anonymous jobs, which anyone holding the id may use.
    pub owner: Option<String>,
    /// The attempt under way or last made, counted from 1 (the fencing
    /// token of its [`Claim`](super::Claim)); 0 while a durable job waits
    /// in its queue for its first claim. Above 1 only for a durable job
    /// that ran again after a runner stopped.
    #[serde(default)]
    pub attempt: u32,
    /// The completion callback the job was submitted with, and how its
    /// delivery stands; `None` when none was asked for.
    #[serde(default)]
    pub callback: Option<JobCallback>,
}

impl JobRecord {
    /// A record of what every job has: its id, status, and when it was
    /// created and last changed (milliseconds since the Unix epoch). The
    /// rest is unset (the attempt is 1); the `with_…` methods set it.
    ///
    /// ```
    /// use tower_accepted::store::{JobId, JobRecord, JobStatus};
    ///
    /// let record = JobRecord::new(JobId::new(), JobStatus::Running, 1_000, 1_200);
    /// assert_eq!((record.created_at_ms, record.updated_at_ms), (1_000, 1_200));
    /// assert_eq!((record.started_at_ms, record.progress, record.owner), (None, None, None));
    /// ```
    pub fn new(id: JobId, status: JobStatus, created_at_ms: u64, updated_at_ms: u64) -> Self {
        Self {
            id,
            status,
            created_at_ms,
            updated_at_ms,
            started_at_ms: None,
            progress: None,
            message: None,
            result_status: None,
            error: None,
            owner: None,
            attempt: 1,
            callback: None,
        }
    }

    /// A fresh `pending` record, created now.
    ///
    /// ```
    /// use tower_accepted::store::{JobId, JobRecord, JobStatus};
    ///
    /// let record = JobRecord::pending(JobId::new());
    /// assert_eq!(record.status, JobStatus::Pending);
    /// assert_eq!(record.created_at_ms, record.updated_at_ms);
    /// ```
    pub fn pending(id: JobId) -> Self {
        let now = unix_ms();
        Self::new(id, JobStatus::Pending, now, now)
    }

    /// The same record, started at `started_at_ms` (see
    /// [`started_at_ms`](Self::started_at_ms)).
    pub fn with_started_at_ms(mut self, started_at_ms: Option<u64>) -> Self {
        self.started_at_ms = started_at_ms;
        self
    }

    /// The same record, with the handler's `progress` (between 0 and 1).
    pub fn with_progress(mut self, progress: Option<f32>) -> Self {
        self.progress = progress;
        self
    }

    /// The same record, with the handler's `message`.
    pub fn with_message(mut self, message: Option<String>) -> Self {
        self.message = message;
        self
    }

    /// The same record, with the status of its stored response.
    pub fn with_result_status(mut self, result_status: Option<u16>) -> Self {
        self.result_status = result_status;
        self
    }

    /// The same record, with why the job failed.
    pub fn with_error(mut self, error: Option<JobError>) -> Self {
        self.error = error;
        self
    }

    /// The same record, at attempt `attempt` (see
    /// [`attempt`](Self::attempt)).
    ///
    /// ```
    /// use tower_accepted::store::{JobId, JobRecord};
    ///
    /// assert_eq!(JobRecord::pending(JobId::new()).attempt, 1);
    /// assert_eq!(JobRecord::pending(JobId::new()).with_attempt(2).attempt, 2);
    /// ```
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// The same record, owned by `owner`.
    ///
    /// ```
    /// use tower_accepted::store::{JobId, JobRecord};
    ///
    /// let record = JobRecord::pending(JobId::new()).with_owner(Some("alice".to_owned()));
    /// assert!(record.visible_to(Some("alice")));
    /// assert!(!record.visible_to(Some("bob")));
    /// assert!(!record.visible_to(None));
    /// ```
    pub fn with_owner(mut self, owner: Option<String>) -> Self {
        self.owner = owner;
        self
    }

    /// The same record, with a completion callback (see
    /// [`callback`](Self::callback)).
    ///
    /// ```
    /// use tower_accepted::store::{JobCallback, JobId, JobRecord};
    ///
    /// let record = JobRecord::pending(JobId::new()).with_callback(Some(JobCallback::new("https://hooks.example.com/done")));
    /// assert_eq!(record.callback.unwrap().attempts, 0);
    /// ```
    pub fn with_callback(mut self, callback: Option<JobCallback>) -> Self {
        self.callback = callback;
        self
    }

    /// Whether a caller named `caller` may see this job: anyone for an
    /// anonymous job (its id is the capability), only its owner otherwise.
    ///
    /// ```
    /// use tower_accepted::store::{JobId, JobRecord};
    ///
    /// let anonymous = JobRecord::pending(JobId::new());
    /// assert!(anonymous.visible_to(None) && anonymous.visible_to(Some("bob")));
    /// ```
    pub fn visible_to(&self, caller: Option<&str>) -> bool {
        self.owner.is_none() || self.owner.as_deref() == caller
    }

    /// Records a terminal outcome (status, error and result status), now:
    /// what a store does on [`finish`](super::JobStore::finish), besides
    /// keeping the response.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::{Response, StatusCode};
    /// use tower_accepted::store::{JobId, JobRecord, JobStatus, Outcome};
    ///
    /// let mut record = JobRecord::pending(JobId::new());
    /// let mut created = Response::new(Bytes::from_static(b"made"));
    /// *created.status_mut() = StatusCode::CREATED;
    /// record.finish(&Outcome::Response(created));
    /// assert_eq!(record.status, JobStatus::Succeeded);
    /// assert_eq!(record.result_status, Some(201));
    /// assert!(record.has_response());
    /// ```
    pub fn finish(&mut self, outcome: &Outcome) {
        self.status = outcome.status();
        self.error = outcome.error();
        self.result_status = outcome.response().map(|response| response.status().as_u16());
        self.touch();
    }

    /// Marks the record changed now: at least a millisecond past its last
    /// change, whatever the clock says, since every change must raise
    /// [`updated_at_ms`](Self::updated_at_ms) (see
    /// [`JobStore::wait_change`](super::JobStore::wait_change)).
    ///
    /// ```
    /// use tower_accepted::store::{JobId, JobRecord};
    ///
    /// let mut record = JobRecord::pending(JobId::new());
    /// let before = record.updated_at_ms;
    /// record.touch();
    /// assert!(record.updated_at_ms > before);
    /// ```
    pub fn touch(&mut self) {
        self.updated_at_ms = unix_ms().max(self.updated_at_ms.saturating_add(1));
    }

    /// Whether a stored response can be fetched for this job.
    pub fn has_response(&self) -> bool {
        self.result_status.is_some()
    }
}

/// Milliseconds since the Unix epoch, by the wall clock.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An `Idempotency-Key` as a store keeps it: the key scoped by its owner, and
/// the fingerprint of the request that first used it.
///
/// ```
/// use tower_accepted::store::IdempotencyKey;
///
/// let key = IdempotencyKey::new(Some("alice"), "order-42", "POST /orders 9f2c…");
/// assert_ne!(key.scope(), IdempotencyKey::new(Some("bob"), "order-42", "").scope());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    scope: String,
    fingerprint: String,
}

impl IdempotencyKey {
    /// The key `key` of `owner` (or of anonymous callers), for a request
    /// whose fingerprint is `fingerprint`.
    pub fn new(owner: Option<&str>, key: &str, fingerprint: impl Into<String>) -> Self {
        // Owners and keys are visible ASCII or the owner function's text;
        // a length prefix keeps `("a:b", "c")` apart from `("a", "b:c")`.
        let owner = owner.unwrap_or("");
        Self {
            scope: format!("{}:{owner}:{key}", owner.len()),
            fingerprint: fingerprint.into(),
        }
    }

    /// The owner and key together: what identifies the submission.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The fingerprint of the request (method, path, query, body digest).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// The answer of [`JobStore::create_once`](super::JobStore::create_once).
///
/// (Not `Created`, which [`Completion::Created`](crate::Completion::Created)
/// names.) `#[non_exhaustive]`, as [`KeyLookup`]: answers may be added.
///
/// ```
/// use tower_accepted::store::{CreatedOnce, IdempotencyKey, JobId, JobRecord, JobStore, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_accepted::store::StoreError> {
/// let store = MemoryStore::new();
/// let key = IdempotencyKey::new(Some("alice"), "order-42", "fingerprint");
/// let first = JobRecord::pending(JobId::new());
/// assert_eq!(store.create_once(first.clone(), key.clone()).await?, CreatedOnce::New);
/// // A retry finds the first job, and creates nothing.
/// let retry = store.create_once(JobRecord::pending(JobId::new()), key).await?;
/// assert!(matches!(retry, CreatedOnce::Existing(record) if record.id == first.id));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CreatedOnce {
    /// The key was new: the job was created.
    New,
    /// The key is taken by this job, for the same request: nothing created.
    Existing(JobRecord),
    /// The key is taken by a job for a different request: nothing created.
    Mismatch,
}

/// What a store knows of an idempotency key, as
/// [`JobStore::find_key`](super::JobStore::find_key) answers.
///
/// ```
/// use tower_accepted::store::{IdempotencyKey, JobStore, KeyLookup, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::new();
/// let key = IdempotencyKey::new(Some("alice"), "order-42", "fingerprint");
/// assert_eq!(store.find_key(&key).await.unwrap(), KeyLookup::Free);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum KeyLookup {
    /// No kept job holds the key.
    Free,
    /// The key is held by this job, for the same request.
    Existing(JobRecord),
    /// The key is held by a job for a different request.
    Mismatch,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_random_v4_uuids() {
        let ids: std::collections::HashSet<JobId> = (0..10 * 64 + 5).map(|_| JobId::new()).collect();
        assert_eq!(ids.len(), 10 * 64 + 5);
        for id in &ids {
            assert_eq!(id.as_uuid().get_version_num(), 4);
            assert_eq!(id.as_uuid().get_variant(), uuid::Variant::RFC4122);
        }
        // Every bit of the random part varies.
        let (mut ones, mut zeros) = (0u128, 0u128);
        for id in &ids {
            let n = id.as_uuid().as_u128();
            ones |= n;
            zeros |= !n;
        }
        let fixed = 0xf000u128 << 64 | 0xc000u128 << 48;
        assert_eq!(ones & zeros | fixed, u128::MAX, "{:032x}", ones & zeros);
    }
}

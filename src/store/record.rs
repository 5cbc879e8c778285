//! The data a [`JobStore`](super::JobStore) keeps: ids, states, records and
//! stored responses.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::id::{InvalidJobId, JobId};

/// Where a job is in its life.
///
/// Serialized in lower case, as the status document spells it
/// (`"canceled"` with one "l").
///
/// ```
/// use tower_accepted::JobStatus;
///
/// assert_eq!(JobStatus::Canceled.as_str(), "canceled");
/// assert!(JobStatus::Failed.is_terminal());
/// assert!(!JobStatus::Pending.is_terminal());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Accepted and waiting for a free runner.
    Pending,
    /// The wrapped service is working on it.
    Running,
    /// Finished with a response whose status is below 400.
    Succeeded,
    /// Finished with a response of 400 or above, or without a response
    /// (panic, error, timeout, …); see [`JobRecord::error`].
    Failed,
    /// Canceled by a client before it finished.
    Canceled,
}

impl JobStatus {
    /// Whether the job has ended; a terminal state never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Canceled)
    }

    /// The status word of the status document.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }
}

/// The error of parsing a [`JobStatus`] from a word that is not one of the
/// five status words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidJobStatus(());

impl fmt::Display for InvalidJobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a job status is pending, running, succeeded, failed or canceled")
    }
}

impl std::error::Error for InvalidJobStatus {}

impl FromStr for JobStatus {
    type Err = InvalidJobStatus;

    /// The status word as the status document spells it (lower case,
    /// `canceled` with one "l"), as a store that keeps it as text reads it
    /// back.
    ///
    /// ```
    /// use tower_accepted::JobStatus;
    ///
    /// assert_eq!("canceled".parse::<JobStatus>(), Ok(JobStatus::Canceled));
    /// assert!("cancelled".parse::<JobStatus>().is_err());
    /// for status in [JobStatus::Pending, JobStatus::Running, JobStatus::Succeeded] {
    ///     assert_eq!(status.as_str().parse::<JobStatus>(), Ok(status));
    /// }
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "canceled" => Self::Canceled,
            _ => return Err(InvalidJobStatus(())),
        })
    }
}

/// Why a job failed: a machine-readable code and a human-readable message.
///
/// The codes this crate writes are the associated constants; a store may
/// carry others.
///
/// ```
/// use tower_accepted::JobError;
///
/// let error = JobError::new(JobError::TIMEOUT, "the job ran longer than 30s");
/// assert_eq!(error.code, "timeout");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// Machine-readable code, such as `"timeout"`.
    pub code: String,
    /// Human-readable explanation, safe to show to the client.
    pub message: String,
}

impl JobError {
    /// The handler answered with a status of 400 or above; its response is stored.
    pub const HTTP_STATUS: &'static str = "http_status";
    /// The handler panicked.
    pub const PANICKED: &'static str = "panicked";
    /// The wrapped service, or the response body, returned an error.
    pub const ERROR: &'static str = "error";
    /// The job ran longer than the configured timeout.
    pub const TIMEOUT: &'static str = "timeout";
    /// The process running the job went away (only stores shared between
    /// processes can tell).
    pub const LOST: &'static str = "lost";
    /// The response body was larger than the configured limit.
    pub const RESULT_TOO_LARGE: &'static str = "result_too_large";
    /// The server shut down before the job finished.
    pub const SHUTDOWN: &'static str = "shutdown";

    /// An error with a code and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// A response captured from the wrapped service, to be replayed by the result
/// route: status, end-to-end headers and the whole body.
///
/// ```
/// use bytes::Bytes;
/// use http::{HeaderMap, StatusCode};
/// use tower_accepted::StoredResponse;
///
/// let stored = StoredResponse::new(StatusCode::OK, HeaderMap::new(), Bytes::from_static(b"done"));
/// assert_eq!(stored.body, "done");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    /// The response status.
    pub status: StatusCode,
    /// The response headers, without hop-by-hop ones.
    pub headers: HeaderMap,
    /// The whole response body.
    pub body: Bytes,
}

impl StoredResponse {
    /// A stored response from its parts.
    pub fn new(status: StatusCode, headers: HeaderMap, body: Bytes) -> Self {
        Self { status, headers, body }
    }
}

/// How a job ended, as the runner hands it to [`JobStore::finish`](super::JobStore::finish).
///
/// ```
/// use bytes::Bytes;
/// use http::{HeaderMap, StatusCode};
/// use tower_accepted::{JobStatus, Outcome, StoredResponse};
///
/// let not_found = Outcome::Response(StoredResponse::new(StatusCode::NOT_FOUND, HeaderMap::new(), Bytes::new()));
/// assert_eq!(not_found.status(), JobStatus::Failed);
/// assert_eq!(not_found.error().unwrap().code, "http_status");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The wrapped service produced a response (of any status).
    Response(StoredResponse),
    /// The job ended without a response.
    Failed(JobError),
}

impl Outcome {
    /// The terminal status this outcome gives a job: a response below 400
    /// succeeded, anything else failed.
    pub fn status(&self) -> JobStatus {
        match self {
            Self::Response(response) if response.status.as_u16() < 400 => JobStatus::Succeeded,
            _ => JobStatus::Failed,
        }
    }

    /// The error this outcome records: a response of 400 or above records
    /// `http_status`.
    pub fn error(&self) -> Option<JobError> {
        match self {
            Self::Response(response) if response.status.as_u16() >= 400 => Some(JobError::new(
                JobError::HTTP_STATUS,
                format!("the handler answered {}", response.status),
            )),
            Self::Response(_) => None,
            Self::Failed(error) => Some(error.clone()),
        }
    }
}

/// What a store knows of a job: everything of the status document but the
/// stored response itself.
///
/// ```
/// use tower_accepted::{JobId, JobRecord, JobStatus};
///
/// let record = JobRecord::pending(JobId::new());
/// assert_eq!(record.status, JobStatus::Pending);
/// assert!(!record.has_response());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

impl JobRecord {
    /// A fresh `pending` record, created now.
    pub fn pending(id: JobId) -> Self {
        let now = unix_ms();
        Self {
            id,
            status: JobStatus::Pending,
            created_at_ms: now,
            updated_at_ms: now,
            started_at_ms: None,
            progress: None,
            message: None,
            result_status: None,
            error: None,
            owner: None,
        }
    }

    /// The same record, owned by `owner`.
    pub fn with_owner(mut self, owner: Option<String>) -> Self {
        self.owner = owner;
        self
    }

    /// Whether a caller named `caller` may see this job: anyone for an
    /// anonymous job (its id is the capability), only its owner otherwise.
    pub fn visible_to(&self, caller: Option<&str>) -> bool {
        self.owner.is_none() || self.owner.as_deref() == caller
    }

    /// Records a terminal outcome (status, error and result status), now.
    pub fn finish(&mut self, outcome: &Outcome) {
        self.status = outcome.status();
        self.error = outcome.error();
        self.result_status = match outcome {
            Outcome::Response(response) => Some(response.status.as_u16()),
            Outcome::Failed(_) => None,
        };
        self.touch();
    }

    /// Marks the record changed now.
    pub fn touch(&mut self) {
        self.updated_at_ms = unix_ms().max(self.updated_at_ms);
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
/// use tower_accepted::IdempotencyKey;
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
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
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
/// use tower_accepted::{IdempotencyKey, JobStore, KeyLookup, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::new();
/// let key = IdempotencyKey::new(Some("alice"), "order-42", "fingerprint");
/// assert_eq!(store.find_key(&key).await.unwrap(), KeyLookup::Free);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum KeyLookup {
    /// No kept job holds the key.
    Free,
    /// The key is held by this job, for the same request.
    Existing(JobRecord),
    /// The key is held by a job for a different request.
    Mismatch,
}

/// Where a listing of jobs goes on: after the job with this creation time
/// and id, newest first. Opaque to clients (written as 48 hex digits).
///
/// ```
/// use tower_accepted::{JobId, ListCursor};
///
/// let cursor = ListCursor::new(1_795_000_000_000, JobId::new());
/// assert_eq!(cursor.to_string().parse::<ListCursor>().unwrap(), cursor);
/// assert!("nope".parse::<ListCursor>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListCursor {
    /// Creation time of the last job of the previous page, in ms.
    pub created_at_ms: u64,
    /// Its id.
    pub id: JobId,
}

impl ListCursor {
    /// The cursor after the job created at `created_at_ms` with `id`.
    pub fn new(created_at_ms: u64, id: JobId) -> Self {
        Self { created_at_ms, id }
    }
}

impl fmt::Display for ListCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{}", self.created_at_ms, self.id.as_uuid().simple())
    }
}

impl FromStr for ListCursor {
    type Err = InvalidJobId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = s.len() == 48 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(InvalidJobId(()));
        }
        let created_at_ms = u64::from_str_radix(&s[..16], 16).map_err(|_| InvalidJobId(()))?;
        let id = Uuid::try_parse(&s[16..]).map_err(|_| InvalidJobId(()))?;
        Ok(Self::new(created_at_ms, JobId::from(id)))
    }
}

/// One page of a listing: jobs newest first, and where the next page starts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    /// The jobs, newest first.
    pub jobs: Vec<JobRecord>,
    /// The cursor of the next page, when there may be one.
    pub next: Option<ListCursor>,
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

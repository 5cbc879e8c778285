//! How a job ended: [`Outcome`], as the runner hands it to a store.

use bytes::Bytes;
use http::Response;

use super::job_error::{ErrorCode, JobError};
use super::status::JobStatus;

/// How a job ended, as the runner hands it to
/// [`JobStore::finish`](super::JobStore::finish).
///
/// A response is the handler's, read whole: an `http::Response<Bytes>`
/// without hop-by-hop headers. A store keeps its status, headers (every
/// value, in order) and body; the HTTP version and extensions are not part
/// of a stored response (the runner hands none, and a store gives none
/// back).
///
/// `#[non_exhaustive]`: ways to end may be added. A store needs no `match`:
/// [`status`](Self::status), [`error`](Self::error) and
/// [`response`](Self::response) say all it keeps.
///
/// ```
/// use bytes::Bytes;
/// use http::{Response, StatusCode};
/// use tower_accepted::store::{ErrorCode, JobStatus, Outcome};
///
/// let mut not_found = Response::new(Bytes::from_static(b"no such report"));
/// *not_found.status_mut() = StatusCode::NOT_FOUND;
/// let outcome = Outcome::Response(not_found);
/// assert_eq!(outcome.status(), JobStatus::Failed);
/// assert_eq!(outcome.error().unwrap().code, ErrorCode::HttpStatus);
/// assert_eq!(outcome.response().map(|r| r.body().len()), Some(14));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Outcome {
    /// The wrapped service produced a response (of any status).
    Response(Response<Bytes>),
    /// The job ended without a response.
    Failed(JobError),
}

impl Outcome {
    /// The terminal status this outcome gives a job: a response below 400
    /// succeeded, anything else failed.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::Response;
    /// use tower_accepted::store::{ErrorCode, JobError, JobStatus, Outcome};
    ///
    /// assert_eq!(Outcome::Response(Response::new(Bytes::new())).status(), JobStatus::Succeeded);
    /// let panicked = Outcome::Failed(JobError::new(ErrorCode::Panicked, "boom"));
    /// assert_eq!(panicked.status(), JobStatus::Failed);
    /// ```
    pub fn status(&self) -> JobStatus {
        match self {
            Self::Response(response) if response.status().as_u16() < 400 => JobStatus::Succeeded,
            _ => JobStatus::Failed,
        }
    }

    /// The error this outcome records: a response of 400 or above records
    /// [`ErrorCode::HttpStatus`].
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::Response;
    /// use tower_accepted::store::{ErrorCode, JobError, Outcome};
    ///
    /// assert_eq!(Outcome::Response(Response::new(Bytes::new())).error(), None);
    /// let timeout = JobError::new(ErrorCode::Timeout, "too slow");
    /// assert_eq!(Outcome::Failed(timeout.clone()).error(), Some(timeout));
    /// ```
    pub fn error(&self) -> Option<JobError> {
        match self {
            Self::Response(response) if response.status().as_u16() >= 400 => Some(JobError::new(
                ErrorCode::HttpStatus,
                format!("the handler answered {}", response.status()),
            )),
            Self::Response(_) => None,
            Self::Failed(error) => Some(error.clone()),
        }
    }

    /// The response to store, if the job ended with one.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::Response;
    /// use tower_accepted::store::{ErrorCode, JobError, Outcome};
    ///
    /// let done = Outcome::Response(Response::new(Bytes::from_static(b"done")));
    /// assert_eq!(done.response().map(|r| r.body().clone()), Some(Bytes::from_static(b"done")));
    /// assert!(Outcome::Failed(JobError::new(ErrorCode::Lost, "gone")).response().is_none());
    /// ```
    pub fn response(&self) -> Option<&Response<Bytes>> {
        match self {
            Self::Response(response) => Some(response),
            Self::Failed(_) => None,
        }
    }
}

//! The status of a job: the five status words.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a job is in its life.
///
/// Serialized in lower case, as the status document spells it
/// (`"canceled"` with one "l").
///
/// ```
/// use tower_accepted::store::JobStatus;
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
    /// (panic, error, timeout, …); see [`JobRecord::error`](super::JobRecord::error).
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
    /// use tower_accepted::store::JobStatus;
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

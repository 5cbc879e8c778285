//! Completion callbacks in the store contract: the delivery a job keeps
//! with it ([`JobCallback`]), its state, and what a replica claims and
//! records ([`DueDelivery`], [`DeliveryAttempt`]).
//!
//! A delivery is a small due-time queue kept with the job, so that a
//! pending delivery survives the replica that owned it: the job's end makes
//! it due in the same write, any replica claims it with a hold (a lease
//! that lapses by the store's clock), and the claim's token fences the
//! attempt it records.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::record::JobRecord;

/// The completion callback a job was submitted with: where its status
/// document is posted when it ends, and how its delivery stands.
///
/// The URL is the store's to keep and the delivery engine's to use; it is
/// never shown in a status document (only the state and the attempts are).
///
/// ```
/// use tower_accepted::store::{DeliveryState, JobCallback};
///
/// let callback = JobCallback::new("https://hooks.example.com/done");
/// assert_eq!(callback.state, DeliveryState::Pending);
/// assert_eq!(callback.attempts, 0);
///
/// // As a store reads it back.
/// let read = JobCallback::new("https://hooks.example.com/done")
///     .with_state(DeliveryState::Delivered)
///     .with_attempts(2);
/// assert_eq!((read.state, read.attempts), (DeliveryState::Delivered, 2));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JobCallback {
    /// Where the status document is posted.
    pub url: String,
    /// How the delivery stands.
    pub state: DeliveryState,
    /// How many attempts were recorded: the fencing token of the next
    /// claim ([`DueDelivery::token`]).
    pub attempts: u32,
}

impl JobCallback {
    /// A delivery to `url` not yet attempted: what the layer creates a job
    /// with.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            state: DeliveryState::Pending,
            attempts: 0,
        }
    }

    /// The same delivery, in `state`.
    pub fn with_state(mut self, state: DeliveryState) -> Self {
        self.state = state;
        self
    }

    /// The same delivery, after `attempts` attempts.
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }
}

/// How a completion callback's delivery stands. Written in lower case, as
/// the status document's `callback.state` spells it.
///
/// ```
/// use tower_accepted::store::DeliveryState;
///
/// assert_eq!(DeliveryState::Delivered.as_str(), "delivered");
/// assert_eq!("failed".parse::<DeliveryState>(), Ok(DeliveryState::Failed));
/// assert!("done".parse::<DeliveryState>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not delivered yet: due once the job ends, retried until it is
    /// delivered or given up.
    Pending,
    /// The receiver took it (answered `2xx`).
    Delivered,
    /// Given up: the receiver refused it for good, or the retries ran out.
    Failed,
}

impl DeliveryState {
    /// The state's word: `pending`, `delivered` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`DeliveryState`] from a word that is not one of
/// its three.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidDeliveryState(());

impl fmt::Display for InvalidDeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a delivery state is pending, delivered or failed")
    }
}

impl std::error::Error for InvalidDeliveryState {}

impl FromStr for DeliveryState {
    type Err = InvalidDeliveryState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "failed" => Ok(Self::Failed),
            _ => Err(InvalidDeliveryState(())),
        }
    }
}

/// A delivery claimed by [`claim_deliveries`](super::JobStore::claim_deliveries):
/// the ended job with its callback, and the token that fences the attempt
/// made under this claim.
///
/// ```
/// use tower_accepted::store::{DueDelivery, JobCallback, JobId, JobRecord, JobStatus};
///
/// let record = JobRecord::new(JobId::new(), JobStatus::Succeeded, 1_000, 2_000)
///     .with_callback(Some(JobCallback::new("https://hooks.example.com/done")));
/// let due = DueDelivery::new(record, 0);
/// assert_eq!(due.token, 0);
/// assert!(due.record.callback.is_some());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DueDelivery {
    /// The job, ended, with its callback.
    pub record: JobRecord,
    /// The callback's attempts when it was claimed: what
    /// [`record_delivery`](super::JobStore::record_delivery) is given back.
    pub token: u32,
}

impl DueDelivery {
    /// A claimed delivery, as a store builds it.
    pub fn new(record: JobRecord, token: u32) -> Self {
        Self { record, token }
    }
}

/// What an attempt to deliver a callback came to, as
/// [`record_delivery`](super::JobStore::record_delivery) records it.
///
/// `#[non_exhaustive]`, so a `match` outside this crate needs a `_` arm.
///
/// ```
/// use tower_accepted::store::DeliveryAttempt;
///
/// let retry = DeliveryAttempt::RetryAt(1_795_000_000_000);
/// assert_eq!(retry.state(), None);
/// assert_eq!(DeliveryAttempt::Delivered.state(), Some(tower_accepted::store::DeliveryState::Delivered));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryAttempt {
    /// The receiver took it: the delivery ends `delivered`.
    Delivered,
    /// Given up: the delivery ends `failed`.
    Failed,
    /// Not delivered yet: due again at this time, in milliseconds since the
    /// Unix epoch.
    RetryAt(u64),
}

impl DeliveryAttempt {
    /// The state the delivery ends in, or `None` when it stays pending.
    pub fn state(self) -> Option<DeliveryState> {
        match self {
            Self::Delivered => Some(DeliveryState::Delivered),
            Self::Failed => Some(DeliveryState::Failed),
            Self::RetryAt(_) => None,
        }
    }
}

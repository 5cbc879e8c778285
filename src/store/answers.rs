//! What a store answers of a job: [`Lookup`] and [`Cancel`].

use super::record::JobRecord;

/// What a store knows of an id.
///
/// `#[non_exhaustive]`: answers may be added (a store never has to give
/// them), so a `match` outside this crate needs a `_` arm.
///
/// ```
/// use tower_accepted::store::{JobId, JobStore, Lookup, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::new();
/// assert_eq!(store.get(JobId::new()).await.unwrap(), Lookup::Unknown);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Lookup {
    /// The job is known.
    Found(JobRecord),
    /// The job expired recently; the id is remembered so that clients get
    /// `410 Gone` rather than `404`.
    Expired,
    /// The id is unknown (never created, deleted, or expired long ago).
    Unknown,
}

/// The answer of [`JobStore::cancel`](super::JobStore::cancel).
///
/// `#[non_exhaustive]`: answers may be added (a cancel that another process
/// carries out later, say), so a `match` outside this crate needs a `_` arm.
///
/// ```
/// use tower_accepted::store::{Cancel, JobId, JobRecord, JobStore, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::new();
/// let id = JobId::new();
/// store.create(JobRecord::pending(id)).await.unwrap();
/// assert_eq!(store.cancel(id).await.unwrap(), Cancel::Canceled);
/// assert_eq!(store.cancel(id).await.unwrap(), Cancel::AlreadyTerminal);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cancel {
    /// The job was pending or running and is now canceled.
    Canceled,
    /// The job had already ended; nothing changed.
    AlreadyTerminal,
    /// The job expired recently.
    Expired,
    /// No such job.
    Unknown,
}

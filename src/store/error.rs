//! [`StoreError`]: why a store could not do what was asked.

use std::fmt;

/// Why a store could not do what was asked.
///
/// ```
/// use tower_accepted::store::{JobId, JobRecord, JobStore, MemoryStore, StoreError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::builder().capacity(1).build();
/// store.create(JobRecord::pending(JobId::new())).await.unwrap();
/// let full = store.create(JobRecord::pending(JobId::new())).await;
/// assert!(matches!(full, Err(StoreError::Full)));
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The store holds as many jobs as it may; try again later.
    Full,
    /// The store could not be reached or failed (for example a lost
    /// connection to a server).
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("the job store is full"),
            Self::Unavailable(e) => write!(f, "the job store is unavailable: {e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Full => None,
            Self::Unavailable(e) => Some(&**e),
        }
    }
}

//! [`JobId`]: the random id that names a job and is the capability to it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The identifier of a job: a random (version 4) UUID.
///
/// Ids are unguessable (122 random bits), so that holding an id is what lets
/// a client read, fetch or cancel its job. They are written and parsed in the
/// hyphenated form, `9b2f3c1e-…`.
///
/// ```
/// use tower_accepted::store::JobId;
///
/// let id = JobId::new();
/// let parsed: JobId = id.to_string().parse().unwrap();
/// assert_eq!(id, parsed);
/// assert!("not-a-uuid".parse::<JobId>().is_err());
/// assert!(id.to_string().to_uppercase().parse::<JobId>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(Uuid);

impl JobId {
    /// A new random id: 122 bits from `uuid`'s fast generator (a
    /// cryptographically secure generator per thread, seeded by the
    /// operating system), as a system call per id would cost more than the
    /// rest of a submission.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// The id as a UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The id's 16 bytes; stores use them for hashing and keys.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for JobId {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.0.hyphenated())
    }
}

/// The error of parsing a [`JobId`] from text that is not a hyphenated UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidJobId(pub(super) ());

impl fmt::Display for InvalidJobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a job id is a hyphenated UUID of 36 characters")
    }
}

impl std::error::Error for InvalidJobId {}

impl FromStr for JobId {
    type Err = InvalidJobId;

    /// Only the lower-case hyphenated form is accepted (36 characters), so
    /// that one job has one URL; upper case, braces, `urn:uuid:` and the
    /// simple form are not.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // One spelling per job: lower-case hex, as the layer writes it.
        if s.len() != 36 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(InvalidJobId(()));
        }
        Uuid::try_parse(s).map(Self).map_err(|_| InvalidJobId(()))
    }
}

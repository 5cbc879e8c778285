//! A listing of an owner's jobs, a page at a time: [`Page`] and the
//! opaque [`ListCursor`] where the next page starts.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use super::id::{InvalidJobId, JobId};
use super::record::JobRecord;

/// Where a listing of jobs goes on: after the job with this creation time
/// and id, newest first. Opaque to clients (written as 48 hex digits).
///
/// `#[non_exhaustive]`: build one with [`ListCursor::new`] or by parsing
/// its text; a listing in another order may need more in it.
///
/// ```
/// use tower_accepted::store::{JobId, ListCursor};
///
/// let cursor = ListCursor::new(1_795_000_000_000, JobId::new());
/// assert_eq!(cursor.to_string().parse::<ListCursor>().unwrap(), cursor);
/// assert!("nope".parse::<ListCursor>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
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
///
/// `#[non_exhaustive]`, so that a page can say more later (a total, say):
/// build one with [`Page::new`].
///
/// ```
/// use tower_accepted::store::{JobId, JobRecord, ListCursor, Page};
///
/// let last = JobRecord::pending(JobId::new());
/// let next = ListCursor::new(last.created_at_ms, last.id);
/// let page = Page::new(vec![last], Some(next));
/// assert_eq!(page.jobs.len(), 1);
/// assert_eq!(page.next, Some(next));
/// assert_eq!(Page::default(), Page::new(Vec::new(), None));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Page {
    /// The jobs, newest first.
    pub jobs: Vec<JobRecord>,
    /// The cursor of the next page, when there may be one.
    pub next: Option<ListCursor>,
}

impl Page {
    /// A page of `jobs` (newest first), followed by the page after `next`.
    pub fn new(jobs: Vec<JobRecord>, next: Option<ListCursor>) -> Self {
        Self { jobs, next }
    }
}

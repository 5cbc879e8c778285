//! One shard of a [`MemoryStore`](super::MemoryStore): its jobs and the
//! ids that expired from it.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

use super::entry::Entry;
use super::tombstones::Tombstones;
use crate::store::JobId;

#[derive(Default)]
pub(super) struct Shard {
    /// Keyed by job ids made from random bytes (`JobId::new`), so a fast
    /// unkeyed hash will do: no one picks the keys to collide.
    pub(super) jobs: HashMap<JobId, Entry, FxBuildHasher>,
    pub(super) tombstones: Tombstones,
}

impl Shard {
    /// Gives the map's memory back once most of it is unused (after a burst
    /// expired), halving it at most as often as it was doubled: amortised
    /// O(1) per removal.
    pub(super) fn give_back_memory(&mut self) {
        let (len, capacity) = (self.jobs.len(), self.jobs.capacity());
        if capacity > 64 && capacity > 4 * len {
            self.jobs.shrink_to(2 * len);
        }
    }
}

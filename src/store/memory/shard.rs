//! One shard of a [`MemoryStore`](super::MemoryStore): its jobs and the
//! ids that expired from it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::entry::Entry;
use super::tombstones::Tombstones;
use crate::store::JobId;

#[derive(Default)]
pub(super) struct Shard {
    pub(super) jobs: HashMap<JobId, Entry, BuildHasherDefault<IdHasher>>,
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

/// Job ids in the map were made by the store's user from random bytes:
/// hashing only needs to fold their bytes.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
}

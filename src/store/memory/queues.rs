//! The queues of durable jobs that wait for a runner, oldest first.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use super::lock;
use crate::store::JobId;

/// Durable jobs waiting to be claimed, by queue name, ordered by creation
/// time then id. A job that ends or leaves while it waits leaves its queue
/// too, so the queues hold only unfinished jobs: bounded by the store's
/// capacity.
#[derive(Default)]
pub(super) struct Queues {
    map: Mutex<HashMap<String, BTreeSet<(u64, JobId)>>>,
}

impl Queues {
    /// Puts `id`, created at `created_at_ms`, in `queue`.
    pub(super) fn push(&self, queue: &str, created_at_ms: u64, id: JobId) {
        let mut map = lock(&self.map);
        match map.get_mut(queue) {
            Some(waiting) => {
                waiting.insert((created_at_ms, id));
            }
            None => {
                map.insert(queue.to_owned(), BTreeSet::from([(created_at_ms, id)]));
            }
        }
    }

    /// Takes the oldest job of `queue`.
    pub(super) fn pop(&self, queue: &str) -> Option<JobId> {
        let mut map = lock(&self.map);
        let waiting = map.get_mut(queue)?;
        let (_, id) = waiting.pop_first()?;
        if waiting.is_empty() {
            map.remove(queue);
        }
        Some(id)
    }

    /// Takes `id` (created at `created_at_ms`) out of `queue`: it ended or
    /// left while it waited.
    pub(super) fn remove(&self, queue: &str, created_at_ms: u64, id: JobId) {
        let mut map = lock(&self.map);
        if let Some(waiting) = map.get_mut(queue) {
            waiting.remove(&(created_at_ms, id));
            if waiting.is_empty() {
                map.remove(queue);
            }
        }
    }
}

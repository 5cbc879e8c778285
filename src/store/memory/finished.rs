//! The finished jobs of a [`MemoryStore`](super::MemoryStore), oldest first:
//! what expires next, and what is evicted first when finished jobs weigh
//! more than the store's byte budget.
//!
//! One queue for the whole store (every job has the same time to live, so
//! the order jobs finish in is the order they expire in, and the oldest
//! finished job is always at the front). Its lock is held only to push or
//! pop a few entries, never while a shard's lock is being waited for: a
//! shard's lock may be held while this one is taken, never the reverse.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::store::JobId;

use super::lock;

/// How far from the back a removed job is looked for: a job deleted soon
/// after it finished (a `Prefer: wait` answered directly) is almost always
/// among the last few, and leaves no stale entry behind.
const RECENT: usize = 16;

pub(super) struct Finished {
    /// `(expires_at, id)` in the order the jobs finished. An entry whose job
    /// was deleted (or ended again under the same id) is skipped when it
    /// comes up: the job's own `expires_at` no longer matches.
    queue: Mutex<VecDeque<(u64, JobId)>>,
    /// When the front entry expires (`u64::MAX` when there is none), so that
    /// an operation tells at a glance that nothing is due.
    next_due: AtomicU64,
    /// What the finished jobs weigh (see `Entry::weight`).
    bytes: AtomicUsize,
    budget: usize,
}

impl Finished {
    pub(super) fn new(budget: usize) -> Self {
        Self {
            queue: Mutex::default(),
            next_due: AtomicU64::new(u64::MAX),
            bytes: AtomicUsize::new(0),
            budget,
        }
    }

    /// Adds a job that just ended, weighing `bytes`.
    pub(super) fn push(&self, expires_at: u64, id: JobId, bytes: usize) {
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
        let mut queue = lock(&self.queue);
        queue.push_back((expires_at, id));
        if queue.len() == 1 {
            self.next_due.store(expires_at, Ordering::Release);
        }
    }

    /// A finished job kept longer (its callback's delivery is under way):
    /// queued again at `expires_at`, no earlier than any job queued before,
    /// weighing what it weighed already.
    pub(super) fn requeue(&self, expires_at: u64, id: JobId) {
        let mut queue = lock(&self.queue);
        queue.push_back((expires_at, id));
        if queue.len() == 1 {
            self.next_due.store(expires_at, Ordering::Release);
        }
    }

    /// A finished job left the store (deleted, expired or evicted): its
    /// weight is given back, and its entry dropped if it is among the last.
    pub(super) fn remove(&self, expires_at: u64, id: JobId, bytes: usize) {
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        let mut queue = lock(&self.queue);
        let len = queue.len();
        let recent = (len.saturating_sub(RECENT)..len).rev();
        if let Some(at) = recent.into_iter().find(|&i| queue[i] == (expires_at, id)) {
            queue.remove(at);
            self.front_changed(&queue);
        }
    }

    /// Whether anything may be due at `now`: expired, or over the budget.
    pub(super) fn due(&self, now: u64) -> bool {
        self.next_due.load(Ordering::Acquire) <= now || self.over_budget()
    }

    /// Whether nothing has finished at all (then no clock needs reading).
    pub(super) fn is_idle(&self) -> bool {
        self.next_due.load(Ordering::Acquire) == u64::MAX && !self.over_budget()
    }

    pub(super) fn over_budget(&self) -> bool {
        self.bytes.load(Ordering::Acquire) > self.budget
    }

    /// Takes the front entry if it is due: expired at `now`, or the oldest
    /// while the finished jobs weigh more than the budget. The caller
    /// removes its job, which gives its weight back ([`give_back`]); a stale
    /// entry weighs nothing.
    ///
    /// [`give_back`]: Self::give_back
    pub(super) fn pop_due(&self, now: u64) -> Option<(u64, JobId)> {
        let mut queue = lock(&self.queue);
        let &(at, _) = queue.front()?;
        if at > now && !self.over_budget() {
            return None;
        }
        let entry = queue.pop_front();
        self.front_changed(&queue);
        if queue.capacity() > 64 && queue.capacity() > 4 * queue.len() {
            let keep = 2 * queue.len();
            queue.shrink_to(keep);
        }
        entry
    }

    /// A job taken by [`pop_due`](Self::pop_due) left the store.
    pub(super) fn give_back(&self, bytes: usize) {
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    fn front_changed(&self, queue: &VecDeque<(u64, JobId)>) {
        let next = queue.front().map_or(u64::MAX, |&(at, _)| at);
        self.next_due.store(next, Ordering::Release);
    }

    /// What the finished jobs weigh now.
    pub(super) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
}

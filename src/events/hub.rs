//! The streams of one process, by job: each job's changes are read once,
//! by one task, and handed to all its streams through a `watch` channel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::watch;

use crate::store::JobId;

/// One event, made once per change and shared by every stream of the job.
#[derive(Debug)]
pub(crate) struct Frame {
    /// The event's `id:`, the record's `updated_at_ms`: it rises with every
    /// change of the job, so a client's `Last-Event-ID` says how far it got.
    pub(crate) id: u64,
    /// Whether this is the job's last event.
    pub(crate) terminal: bool,
    /// The whole event, blank line included.
    pub(crate) bytes: Bytes,
}

/// What a job's streams are told.
#[derive(Debug)]
pub(crate) enum Change {
    /// The job as it is now.
    Event(Frame),
    /// The job left the store (deleted, expired): its streams end.
    Gone,
}

/// The latest change of one job; `None` until it was first read.
pub(crate) type Latest = Option<Arc<Change>>;

/// The sending side of one job's channel, shared by the map and the task
/// that feeds it.
pub(crate) type Feed = Arc<watch::Sender<Latest>>;

/// The jobs that have streams open in this process.
#[derive(Default)]
pub(crate) struct Hub {
    jobs: Mutex<HashMap<JobId, Feed>>,
}

impl Hub {
    /// A receiver of `id`'s changes, and the feed to start when the job
    /// had no stream yet (the caller spawns its task).
    pub(crate) fn subscribe(&self, id: JobId) -> (watch::Receiver<Latest>, Option<Feed>) {
        let mut jobs = lock(&self.jobs);
        if let Some(feed) = jobs.get(&id) {
            return (feed.subscribe(), None);
        }
        let (sender, receiver) = watch::channel(None);
        let feed = Arc::new(sender);
        jobs.insert(id, Arc::clone(&feed));
        (receiver, Some(feed))
    }

    /// Takes `feed` out of the map if no stream uses it any more; `false`
    /// when a stream came meanwhile (the feed goes on).
    pub(crate) fn retire_if_unused(&self, id: JobId, feed: &Feed) -> bool {
        let mut jobs = lock(&self.jobs);
        if feed.receiver_count() > 0 {
            return false;
        }
        if jobs.get(&id).is_some_and(|f| Arc::ptr_eq(f, feed)) {
            jobs.remove(&id);
        }
        true
    }

    /// Takes `feed` out of the map: its job will not change again. Streams
    /// that hold it keep its last change; later ones start a new feed.
    pub(crate) fn retire(&self, id: JobId, feed: &Feed) {
        let mut jobs = lock(&self.jobs);
        if jobs.get(&id).is_some_and(|f| Arc::ptr_eq(f, feed)) {
            jobs.remove(&id);
        }
    }

    /// How many jobs have a feed (for tests of what a stream leaves behind).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.jobs).len()
    }
}

/// The map, even if a thread panicked while holding it: it holds only
/// senders, which a panic leaves whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_feed_per_job_retired_with_its_last_stream() {
        let hub = Hub::default();
        let id = JobId::new();
        let (first, feed) = hub.subscribe(id);
        let feed = feed.expect("the first stream starts the feed");
        let (second, none) = hub.subscribe(id);
        assert!(none.is_none(), "the second stream shares it");
        assert_eq!(hub.len(), 1);
        drop(first);
        assert!(!hub.retire_if_unused(id, &feed), "a stream still uses it");
        drop(second);
        assert!(hub.retire_if_unused(id, &feed));
        assert_eq!(hub.len(), 0);
        let (_third, again) = hub.subscribe(id);
        let again = again.expect("a later stream starts a new feed");
        hub.retire(id, &feed);
        assert_eq!(hub.len(), 1, "an old feed does not take out a new one");
        hub.retire(id, &again);
        assert_eq!(hub.len(), 0);
    }
}

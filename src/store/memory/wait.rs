//! The future of [`MemoryStore::wait_terminal`](super::MemoryStore).

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::entry::WaiterKey;
use super::{MemoryStore, lock};
use crate::store::{JobId, StoreError};

/// Resolves once the job ended, left or expired. It keeps its task's waker
/// in the job's entry (no allocation for the first waiter, no lock but the
/// shard's), replaces it in place when the task moves, and takes it out in
/// O(1) if it is dropped first.
pub(super) struct WaitTerminal<'a> {
    store: &'a MemoryStore,
    id: JobId,
    /// Where this future's waker is in the entry, and which waker it is.
    registered: Option<(WaiterKey, Waker)>,
}

impl<'a> WaitTerminal<'a> {
    pub(super) fn new(store: &'a MemoryStore, id: JobId) -> Self {
        Self {
            store,
            id,
            registered: None,
        }
    }
}

impl Future for WaitTerminal<'_> {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut shard = this.store.shard(this.id);
        // A job that has not ended has no expiry time: no clock is read.
        match shard.jobs.get_mut(&this.id) {
            Some(entry) if !entry.status.is_terminal() => {
                match &mut this.registered {
                    // Still in its place (not taken by a job that ended and
                    // was replaced under the same id).
                    Some((key, waker)) if entry.holds_waiter(*key, waker) => {
                        if !waker.will_wake(cx.waker()) {
                            *waker = cx.waker().clone();
                            entry.replace_waiter(*key, waker.clone());
                        }
                    }
                    _ => {
                        let waker = cx.waker().clone();
                        let key = entry.add_waiter(waker.clone());
                        this.registered = Some((key, waker));
                    }
                }
                Poll::Pending
            }
            // Ended, expired or gone: whoever ended it took the wakers.
            _ => {
                this.registered = None;
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl Drop for WaitTerminal<'_> {
    fn drop(&mut self) {
        if let Some((key, waker)) = self.registered.take() {
            let mut shard = lock(self.store.shard_of(self.id));
            if let Some(entry) = shard.jobs.get_mut(&self.id) {
                entry.remove_waiter(key, &waker);
            }
        }
    }
}

//! Admission of jobs: how many are under way (running and queued) and may
//! be, how many run at once, and the shutdown that stops admitting them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::job::Signal;

/// How many jobs are admitted and run at once, and the shutdown that stops
/// admitting them; shared by every clone of a layer.
pub(crate) struct Admissions {
    /// Jobs running at once.
    pub(crate) running: Arc<Semaphore>,
    accepting: AtomicBool,
    /// Jobs admitted and not yet over (running and queued, from admission
    /// on): bounded by the capacity, and what a shutdown waits for, so that
    /// it also waits for submissions still being recorded.
    active: Arc<Active>,
    /// Fired when a shutdown gives up waiting: jobs still under way end.
    pub(crate) force: Signal,
    /// How many jobs a shutdown ended.
    pub(crate) forced: AtomicUsize,
}

impl Admissions {
    pub(crate) fn new(max_running: usize, max_queued: usize) -> Self {
        let max_running = max_running.clamp(1, Semaphore::MAX_PERMITS);
        let admitted = max_running.saturating_add(max_queued).min(Semaphore::MAX_PERMITS);
        Self {
            running: Arc::new(Semaphore::new(max_running)),
            accepting: AtomicBool::new(true),
            active: Arc::new(Active {
                count: AtomicUsize::new(0),
                limit: admitted,
                idle: Notify::new(),
            }),
            force: Signal::default(),
            forced: AtomicUsize::new(0),
        }
    }

    /// A place for one more job, or `None` when running and queued jobs are
    /// at their limits or the runner is shutting down.
    pub(crate) fn admit(&self) -> Option<Admission> {
        if !self.accepting() {
            return None;
        }
        // A counter rather than a semaphore: admission never waits.
        // SeqCst with `shutdown`: either it sees this count, or this sees
        // that it stopped accepting.
        let limit = self.active.limit;
        self.active
            .count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < limit).then_some(n + 1))
            .ok()?;
        let admission = Admission {
            active: Arc::clone(&self.active),
        };
        // A shutdown that began meanwhile may have seen no job under way.
        self.accepting().then_some(admission)
    }

    /// Whether a job could be admitted now (checked before reading a body).
    pub(crate) fn has_room(&self) -> bool {
        self.active.count.load(Ordering::Acquire) < self.active.limit
    }

    pub(crate) fn accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    /// Stops admitting jobs: new submissions get `503`.
    fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// Waits for the jobs under way until `until` (for ever when `None`),
    /// then ends the rest; returns how many were ended.
    async fn drain_until(&self, until: Option<Instant>) -> usize {
        let drained = match until {
            Some(until) => tokio::time::timeout_at(until, self.idle()).await.is_ok(),
            None => {
                self.idle().await;
                true
            }
        };
        if !drained {
            self.force.fire();
            self.idle().await;
        }
        self.forced.load(Ordering::Acquire)
    }

    async fn idle(&self) {
        loop {
            let notified = self.active.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// How many jobs are under way, how many may be, and a wake-up for when
/// none is.
struct Active {
    count: AtomicUsize,
    limit: usize,
    idle: Notify,
}

/// A job's place: in the capacity, and among the jobs a shutdown waits for.
/// Given back when dropped, whether the job ran or its submission failed.
pub(crate) struct Admission {
    active: Arc<Active>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.active.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.active.idle.notify_waiters();
        }
    }
}

/// Every runner made from one layer: builder calls on a layer (or on a clone
/// of it) that change its limits make a runner of their own, and a shutdown
/// of any of them must reach the jobs of all.
#[derive(Default)]
pub(crate) struct Family {
    members: Mutex<Vec<Weak<Admissions>>>,
}

impl Family {
    /// Adds a runner (and forgets runners no layer holds any more).
    pub(crate) fn join(&self, member: &Arc<Admissions>) {
        let mut members = self.members.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        members.retain(|m| m.strong_count() > 0);
        members.push(Arc::downgrade(member));
    }

    /// Shuts every runner of the family down: all stop accepting at once,
    /// then each drains until the same deadline; returns how many jobs were
    /// ended.
    pub(crate) async fn shutdown(&self, deadline: Duration) -> usize {
        let members: Vec<Arc<Admissions>> = self
            .members
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for member in &members {
            member.stop_accepting();
        }
        let until = Instant::now().checked_add(deadline);
        let mut ended = 0;
        for member in &members {
            ended += member.drain_until(until).await;
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn admission_is_bounded() {
        let runtime = Admissions::new(1, 1);
        let a = runtime.admit();
        let b = runtime.admit();
        assert!(a.is_some() && b.is_some());
        assert!(runtime.admit().is_none());
        drop(a);
        assert!(runtime.admit().is_some());
    }
}

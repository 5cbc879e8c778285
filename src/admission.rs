//! Admission of jobs: how many are under way (running and queued) and may
//! be, how many run at once, and the shutdown that stops admitting them.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
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
    /// Fired when a shutdown begins to drain; `drain_until` holds its
    /// deadline (none when it waits for ever), set before the signal.
    pub(crate) draining: Signal,
    drain_until: OnceLock<Option<Instant>>,
    /// Runners, for the estimate of when a queued job would start.
    max_running: usize,
    /// The jobs' mean run time in nanoseconds (an exponentially weighted
    /// moving average); 0 while no job has ended.
    mean_run: AtomicU64,
    /// FIFO tickets of the queue: one taken by each job that starts
    /// waiting, one by each that stops waiting (whether it got a runner,
    /// was canceled or was ended), so that a job's place in the queue is
    /// the difference.
    queue_joined: AtomicU64,
    queue_left: AtomicU64,
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
            draining: Signal::default(),
            drain_until: OnceLock::new(),
            max_running,
            mean_run: AtomicU64::new(0),
            queue_joined: AtomicU64::new(0),
            queue_left: AtomicU64::new(0),
        }
    }

    /// Counts `ran` in the mean run time. On every job's path: one relaxed
    /// load and store, no read-modify-write loop (two jobs ending at once
    /// may lose one sample; the mean is an estimate either way).
    pub(crate) fn observe_run(&self, ran: Duration) {
        let ran = u64::try_from(ran.as_nanos()).unwrap_or(u64::MAX).max(1);
        let mean = self.mean_run.load(Ordering::Relaxed);
        // A weight of 1/8 for the newest sample; the first one is the mean.
        let next = if mean == 0 { ran } else { mean - mean / 8 + ran / 8 };
        self.mean_run.store(next.max(1), Ordering::Relaxed);
    }

    /// The jobs' mean run time, once one has ended.
    pub(crate) fn mean_run(&self) -> Option<Duration> {
        match self.mean_run.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// A place at the back of the queue, given up when dropped.
    pub(crate) fn join_queue(&self) -> QueueTicket<'_> {
        QueueTicket {
            admissions: self,
            number: self.queue_joined.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Whether the job holding `ticket` would not start before the drain's
    /// deadline: it starts, by estimate, once the jobs ahead of it have run,
    /// `max_running` at a time, and one more run has ended to free a
    /// runner: now + (place / max_running + 1) × the mean run time. Without
    /// a mean yet, or a deadline, nothing is known: it may start in time.
    pub(crate) fn starts_too_late(&self, ticket: &QueueTicket<'_>) -> bool {
        let (Some(Some(until)), Some(mean)) = (self.drain_until.get(), self.mean_run()) else {
            return false;
        };
        // Jobs behind that left early make the place look nearer, never
        // further: the estimate errs towards letting a job wait.
        let place = ticket.number.saturating_sub(self.queue_left.load(Ordering::Relaxed));
        let runs = place / self.max_running as u64 + 1;
        let wait = u32::try_from(runs).ok().and_then(|runs| mean.checked_mul(runs));
        wait.and_then(|wait| Instant::now().checked_add(wait))
            .is_none_or(|start| start > *until)
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

    /// Begins a drain that ends at `until` (never when `None`): queued jobs
    /// that would not start by then are ended at once.
    fn begin_drain(&self, until: Option<Instant>) {
        // A second shutdown keeps the first deadline.
        let _ = self.drain_until.set(until);
        self.draining.fire();
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

/// A job's place in the queue of its runner (see [`Admissions::join_queue`]).
pub(crate) struct QueueTicket<'a> {
    admissions: &'a Admissions,
    number: u64,
}

impl Drop for QueueTicket<'_> {
    fn drop(&mut self) {
        self.admissions.queue_left.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every runner made from one layer: builder calls on a layer (or on a clone
/// of it) that change its limits make a runner of their own, and a shutdown
/// of any of them must reach the jobs of all.
#[derive(Default)]
pub(crate) struct Family {
    members: Mutex<Vec<Weak<Admissions>>>,
    /// Fired when a shutdown's drain has ended: long polls still waiting
    /// answer at once, so that they do not hold up the server's own
    /// graceful shutdown of its connections, and later ones do not wait.
    pub(crate) closing: Signal,
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
        for member in &members {
            member.begin_drain(until);
        }
        let mut ended = 0;
        for member in &members {
            ended += member.drain_until(until).await;
        }
        ended
    }

    /// Ends the long polls of every runner of the family (see `closing`).
    pub(crate) fn close(&self) {
        self.closing.fire();
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

    #[tokio::test]
    async fn a_queued_job_estimates_its_start_by_its_place_and_the_mean() {
        let runtime = Admissions::new(2, 10);
        let tickets: Vec<_> = (0..5).map(|_| runtime.join_queue()).collect();
        runtime.begin_drain(Instant::now().checked_add(Duration::from_secs(1)));
        // No run has ended: nothing is known, every job may start in time.
        assert!(!tickets.iter().any(|t| runtime.starts_too_late(t)));
        runtime.observe_run(Duration::from_millis(400));
        // Places 0..4, two runners: starts after 1, 1, 2, 2, 3 runs of 400 ms.
        let late: Vec<bool> = tickets.iter().map(|t| runtime.starts_too_late(t)).collect();
        assert_eq!(late, [false, false, false, false, true]);
        // Two leave the queue: the last job is two places nearer.
        let mut tickets = tickets;
        drop(tickets.remove(0));
        drop(tickets.remove(0));
        assert!(!runtime.starts_too_late(&tickets[2]));
        // A drain without a deadline ends nothing early.
        let endless = Admissions::new(1, 10);
        let ticket = endless.join_queue();
        endless.observe_run(Duration::from_secs(3600));
        endless.begin_drain(None);
        assert!(!endless.starts_too_late(&ticket));
    }

    #[test]
    fn the_mean_run_time_follows_the_runs() {
        let runtime = Admissions::new(1, 1);
        assert_eq!(runtime.mean_run(), None);
        runtime.observe_run(Duration::from_millis(800));
        assert_eq!(runtime.mean_run(), Some(Duration::from_millis(800)));
        runtime.observe_run(Duration::ZERO);
        assert_eq!(runtime.mean_run(), Some(Duration::from_millis(700)));
    }
}

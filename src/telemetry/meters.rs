//! What the layer records through the `metrics` facade (feature
//! `metrics`; without it [`Meters`] is empty and every method compiles
//! away). The names and what they mean are in the public `metrics` module.
//!
//! Each layer takes its handles from the recorder the first time it
//! records (so a recorder installed before serving is the one used), and
//! keeps them: recording is then an atomic operation on a handle, not a
//! lookup of the metric's name and labels in the recorder per job.

use std::time::Duration;

use super::{Ending, Refusal, StoreOp};

/// A layer's metric handles, taken on first use.
#[derive(Default)]
pub(crate) struct Meters {
    #[cfg(feature = "metrics")]
    handles: std::sync::OnceLock<on::Handles>,
}

impl Meters {
    #[cfg(feature = "metrics")]
    fn get(&self) -> &on::Handles {
        self.handles.get_or_init(on::Handles::new)
    }

    /// Counts a job accepted.
    pub(crate) fn accepted(&self) {
        #[cfg(feature = "metrics")]
        self.get().accepted.increment(1);
    }

    /// Counts a submission refused with `503`.
    pub(crate) fn refused(&self, reason: Refusal) {
        #[cfg(feature = "metrics")]
        self.get().refused[reason as usize].increment(1);
        let _ = reason;
    }

    /// Counts jobs ended.
    pub(crate) fn finished(&self, ending: Ending, jobs: u64) {
        #[cfg(feature = "metrics")]
        self.get().finished[ending.index()].increment(jobs);
        let _ = (ending, jobs);
    }

    /// The `running` (or `queued`) gauge, up by one; down again when the
    /// guard is dropped, however the job's task ends.
    pub(crate) fn gauge_up(&self, running: bool) -> GaugeGuard<'_> {
        #[cfg(feature = "metrics")]
        self.get().gauge(running).increment(1.0);
        GaugeGuard { meters: self, running }
    }

    /// The long-poll gauge, up by one until the guard is dropped.
    pub(crate) fn long_poll(&self) -> LongPoll<'_> {
        #[cfg(feature = "metrics")]
        self.get().long_polls.increment(1.0);
        LongPoll { meters: self }
    }

    /// Records a job's wait from acceptance to start.
    pub(crate) fn queue_wait(&self, wait: Duration) {
        #[cfg(feature = "metrics")]
        self.get().queue_wait.record(wait.as_secs_f64());
        let _ = wait;
    }

    /// Records a job's run time.
    pub(crate) fn run_time(&self, run: Duration) {
        #[cfg(feature = "metrics")]
        self.get().run.record(run.as_secs_f64());
        let _ = run;
    }

    /// Records a call to the store.
    pub(crate) fn store_op(&self, op: StoreOp, took: Duration, failed: bool) {
        #[cfg(feature = "metrics")]
        {
            let handles = self.get();
            handles.store_ops[op as usize].record(took.as_secs_f64());
            if failed {
                handles.store_errors[op as usize].increment(1);
            }
        }
        let _ = (op, took, failed);
    }

    /// Records how late a renewal of the leases was confirmed.
    pub(crate) fn renewal_lag(&self, lag: Duration) {
        #[cfg(feature = "metrics")]
        self.get().renewal_lag.record(lag.as_secs_f64());
        let _ = lag;
    }
}

/// Whether store calls are timed (the clock is read only then).
pub(crate) const TIMES_STORE: bool = cfg!(feature = "metrics");

/// One job counted in a gauge (see [`Meters::gauge_up`]).
pub(crate) struct GaugeGuard<'a> {
    meters: &'a Meters,
    running: bool,
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        self.meters.get().gauge(self.running).decrement(1.0);
        let _ = (self.meters, self.running);
    }
}

/// One long poll counted in its gauge (see [`Meters::long_poll`]).
pub(crate) struct LongPoll<'a> {
    meters: &'a Meters,
}

impl Drop for LongPoll<'_> {
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        self.meters.get().long_polls.decrement(1.0);
        let _ = self.meters;
    }
}

#[cfg(feature = "metrics")]
mod on {
    use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

    use super::super::{Ending, Refusal, StoreOp};
    use crate::metrics as names;

    pub(super) struct Handles {
        pub(super) accepted: Counter,
        pub(super) refused: [Counter; Refusal::ALL.len()],
        pub(super) finished: [Counter; Ending::COUNT],
        running: Gauge,
        queued: Gauge,
        pub(super) long_polls: Gauge,
        pub(super) queue_wait: Histogram,
        pub(super) run: Histogram,
        pub(super) store_ops: [Histogram; StoreOp::ALL.len()],
        pub(super) store_errors: [Counter; StoreOp::ALL.len()],
        pub(super) renewal_lag: Histogram,
    }

    impl Handles {
        pub(super) fn new() -> Self {
            Self {
                accepted: counter!(names::JOBS_ACCEPTED_TOTAL),
                refused: Refusal::ALL.map(|reason| counter!(names::JOBS_REFUSED_TOTAL, "reason" => reason.as_str())),
                finished: std::array::from_fn(|index| {
                    let (status, code) = Ending::labels(index);
                    counter!(names::JOBS_FINISHED_TOTAL, "status" => status, "code" => code)
                }),
                running: gauge!(names::JOBS_RUNNING),
                queued: gauge!(names::JOBS_QUEUED),
                long_polls: gauge!(names::LONG_POLLS_WAITING),
                queue_wait: histogram!(names::JOB_QUEUE_WAIT_SECONDS),
                run: histogram!(names::JOB_RUN_SECONDS),
                store_ops: StoreOp::ALL.map(|op| histogram!(names::STORE_OPERATION_SECONDS, "op" => op.as_str())),
                store_errors: StoreOp::ALL.map(|op| counter!(names::STORE_ERRORS_TOTAL, "op" => op.as_str())),
                renewal_lag: histogram!(names::LEASE_RENEWAL_LAG_SECONDS),
            }
        }

        pub(super) fn gauge(&self, running: bool) -> &Gauge {
            if running { &self.running } else { &self.queued }
        }
    }
}

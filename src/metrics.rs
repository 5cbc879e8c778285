//! The metrics the layer records (feature `metrics`), through the
//! [`metrics`](https://docs.rs/metrics) facade: install any recorder
//! (`metrics-exporter-prometheus`, say) and they appear in it.
//!
//! Names and units follow Prometheus conventions: `_total` for counters,
//! base units (`_seconds`) for histograms. Labels take a few fixed values
//! each; nothing is recorded per job, path or owner, so the number of
//! series stays bounded whatever the traffic.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | [`tower_accepted_jobs_accepted_total`](JOBS_ACCEPTED_TOTAL) | counter | | jobs accepted (`202`, or answered in time under `Prefer: wait`) |
//! | [`tower_accepted_jobs_refused_total`](JOBS_REFUSED_TOTAL) | counter | `reason` | submissions refused with `503`: `capacity` (running and queued limits), `store_full`, `store_unavailable`, `shutting_down` |
//! | [`tower_accepted_jobs_finished_total`](JOBS_FINISHED_TOTAL) | counter | `status`, `code` | jobs ended here: `status` `succeeded`, `failed` or `canceled`; `code` the error code of a failed job (`http_status`, `panicked`, `error`, `timeout`, `lost`, `result_too_large`, `shutdown`, `other`), `none` otherwise; a sweep counts the jobs it ends `lost` |
//! | [`tower_accepted_jobs_running`](JOBS_RUNNING) | gauge | | jobs whose handler runs in this process |
//! | [`tower_accepted_jobs_queued`](JOBS_QUEUED) | gauge | | jobs waiting in this process for a runner (`max_running`) |
//! | [`tower_accepted_long_polls_waiting`](LONG_POLLS_WAITING) | gauge | | monitor requests waiting for their job's end (`?wait=`) |
//! | [`tower_accepted_job_queue_wait_seconds`](JOB_QUEUE_WAIT_SECONDS) | histogram | | from acceptance (or claim) to the handler's start |
//! | [`tower_accepted_job_run_seconds`](JOB_RUN_SECONDS) | histogram | | from the handler's start to its outcome (a job canceled while it runs has none and is not counted) |
//! | [`tower_accepted_store_operation_seconds`](STORE_OPERATION_SECONDS) | histogram | `op` | each call to the job store, by operation (see below) |
//! | [`tower_accepted_store_errors_total`](STORE_ERRORS_TOTAL) | counter | `op` | calls to the job store that failed |
//! | [`tower_accepted_lease_renewal_lag_seconds`](LEASE_RENEWAL_LAG_SECONDS) | histogram | | shared stores: from when this process's leases were due for renewal to when the store confirmed it |
//!
//! `op` is one of `create`, `create_once`, `create_durable`, `find_key`,
//! `get`, `list`, `start`, `set_progress`, `finish`, `cancel`, `delete`,
//! `response`, `claim_next`, `renew`, `release`, `sweep`, `health`.
//!
//! A layer takes its handles from the recorder the first time it records
//! anything: install the recorder before building the layer (the claim
//! loop of [`run_jobs_with`](crate::AcceptedLayer::run_jobs_with) records
//! from the start).
//!
//! ```
//! use tower_accepted::AcceptedLayer;
//!
//! // With metrics-exporter-prometheus, for example:
//! //   let handle = PrometheusBuilder::new().install_recorder()?;
//! // then serve `handle.render()` at `GET /metrics`.
//! tower_accepted::metrics::describe();
//! let layer = AcceptedLayer::new();
//! # let _ = layer;
//! assert_eq!(tower_accepted::metrics::JOBS_ACCEPTED_TOTAL, "tower_accepted_jobs_accepted_total");
//! ```

/// Counter: jobs accepted.
pub const JOBS_ACCEPTED_TOTAL: &str = "tower_accepted_jobs_accepted_total";
/// Counter, by `reason`: submissions refused with `503`.
pub const JOBS_REFUSED_TOTAL: &str = "tower_accepted_jobs_refused_total";
/// Counter, by `status` and `code`: jobs ended.
pub const JOBS_FINISHED_TOTAL: &str = "tower_accepted_jobs_finished_total";
/// Gauge: jobs running in this process.
pub const JOBS_RUNNING: &str = "tower_accepted_jobs_running";
/// Gauge: jobs waiting in this process for a runner.
pub const JOBS_QUEUED: &str = "tower_accepted_jobs_queued";
/// Gauge: long polls waiting.
pub const LONG_POLLS_WAITING: &str = "tower_accepted_long_polls_waiting";
/// Histogram, seconds: from acceptance to start.
pub const JOB_QUEUE_WAIT_SECONDS: &str = "tower_accepted_job_queue_wait_seconds";
/// Histogram, seconds: from start to end.
pub const JOB_RUN_SECONDS: &str = "tower_accepted_job_run_seconds";
/// Histogram, seconds, by `op`: calls to the job store.
pub const STORE_OPERATION_SECONDS: &str = "tower_accepted_store_operation_seconds";
/// Counter, by `op`: calls to the job store that failed.
pub const STORE_ERRORS_TOTAL: &str = "tower_accepted_store_errors_total";
/// Histogram, seconds: lateness of lease renewals.
pub const LEASE_RENEWAL_LAG_SECONDS: &str = "tower_accepted_lease_renewal_lag_seconds";

/// Every metric's name, in the order of the table above.
pub const ALL: [&str; 11] = [
    JOBS_ACCEPTED_TOTAL,
    JOBS_REFUSED_TOTAL,
    JOBS_FINISHED_TOTAL,
    JOBS_RUNNING,
    JOBS_QUEUED,
    LONG_POLLS_WAITING,
    JOB_QUEUE_WAIT_SECONDS,
    JOB_RUN_SECONDS,
    STORE_OPERATION_SECONDS,
    STORE_ERRORS_TOTAL,
    LEASE_RENEWAL_LAG_SECONDS,
];

/// Gives every metric its unit and help text in the installed recorder
/// (Prometheus' `# HELP` and `# TYPE` lines). Optional; call it once, after
/// installing the recorder.
///
/// ```
/// tower_accepted::metrics::describe();
/// ```
pub fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

    describe_counter!(JOBS_ACCEPTED_TOTAL, Unit::Count, "Jobs accepted");
    describe_counter!(
        JOBS_REFUSED_TOTAL,
        Unit::Count,
        "Submissions refused with 503, by reason"
    );
    describe_counter!(JOBS_FINISHED_TOTAL, Unit::Count, "Jobs ended, by status and error code");
    describe_gauge!(JOBS_RUNNING, Unit::Count, "Jobs running in this process");
    describe_gauge!(JOBS_QUEUED, Unit::Count, "Jobs waiting in this process for a runner");
    describe_gauge!(
        LONG_POLLS_WAITING,
        Unit::Count,
        "Long polls waiting for their job's end"
    );
    describe_histogram!(JOB_QUEUE_WAIT_SECONDS, Unit::Seconds, "Time from acceptance to start");
    describe_histogram!(JOB_RUN_SECONDS, Unit::Seconds, "Time from start to end");
    describe_histogram!(STORE_OPERATION_SECONDS, Unit::Seconds, "Job store calls, by operation");
    describe_counter!(
        STORE_ERRORS_TOTAL,
        Unit::Count,
        "Job store calls that failed, by operation"
    );
    describe_histogram!(
        LEASE_RENEWAL_LAG_SECONDS,
        Unit::Seconds,
        "Time from when leases were due for renewal to when the store renewed them"
    );
}

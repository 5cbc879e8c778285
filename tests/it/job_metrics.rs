//! The layer's metrics (feature `metrics`), read from `metrics-util`'s
//! `DebuggingRecorder` installed for the test's thread only: a
//! `#[tokio::test]` runs server, client and jobs on that thread, so what the
//! recorder holds is this test's alone. Every way a job can end, and every
//! counter and gauge checked exactly.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::post;
use http::StatusCode;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::sync::Semaphore;
use tower_accepted::AcceptedLayer;
use tower_accepted::metrics as names;
use tower_accepted::store::MemoryStore;

use common::{HttpClient, Server, serve, submit, until};

/// What the recorder recorded since the start. A snapshot of the
/// `DebuggingRecorder` takes every value and leaves 0 in its place
/// (counters, gauges and histograms alike), so each snapshot is a change,
/// added here: counters and gauges (which the layer only moves up and down)
/// as sums, histograms as the number of values.
#[derive(Default)]
struct Seen {
    values: HashMap<String, f64>,
    histograms: HashMap<String, usize>,
}

impl Seen {
    fn read(&mut self, snapshotter: &Snapshotter) {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
            labels.sort();
            let name = if labels.is_empty() {
                key.name().to_owned()
            } else {
                format!("{}{{{}}}", key.name(), labels.join(","))
            };
            match value {
                DebugValue::Counter(n) => *self.values.entry(name).or_default() += n as f64,
                DebugValue::Gauge(g) => *self.values.entry(name).or_default() += g.into_inner(),
                DebugValue::Histogram(values) => {
                    *self.histograms.entry(name).or_default() += values.len();
                }
            }
        }
    }

    fn value(&self, name: &str) -> f64 {
        self.values.get(name).copied().unwrap_or(0.0)
    }

    fn count(&self, name: &str) -> usize {
        self.histograms.get(name).copied().unwrap_or(0)
    }
}

fn finished(status: &str, code: &str) -> String {
    format!("{}{{code={code},status={status}}}", names::JOBS_FINISHED_TOTAL)
}

fn refused(reason: &str) -> String {
    format!("{}{{reason={reason}}}", names::JOBS_REFUSED_TOTAL)
}

/// Waits until the recorder shows `name` at `value`.
async fn until_value(seen: &mut Seen, snapshotter: &Snapshotter, name: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        seen.read(snapshotter);
        if seen.value(name) == value {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} stays at {} (wanted {value}); seen {:?}",
            seen.value(name),
            seen.values
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const PANIC: &str = "planned panic of the metrics test";

/// Every way a job can end on one process, with the layer's limits set so
/// that each one happens: its outcome, its refusals and its gauges.
#[tokio::test]
async fn every_way_a_job_ends_is_counted_exactly() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let _quiet = common::panics::QuietPanics::install(PANIC);
    let mut seen = Seen::default();

    // A: one job per way a handler's work can end.
    let outcomes = Router::new()
        .route("/ok", post(|| async { "ok" }))
        .route("/status", post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "no") }))
        .route(
            "/panic",
            post(|| async {
                if true {
                    panic!("{PANIC}");
                }
                "never"
            }),
        )
        .route(
            "/broken",
            post(|| async { Response::new(Body::new(common::body::Broken::new("broken"))) }),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route("/large", post(|| async { "x".repeat(100) }))
        .layer(
            AcceptedLayer::new()
                .timeout(Duration::from_millis(800))
                .max_result_size(50),
        );
    let a = serve(outcomes).await;
    let a = HttpClient::new(&a);
    let mut monitors = Vec::new();
    for path in ["/ok", "/status", "/panic", "/broken", "/large"] {
        monitors.push(submit(&a, path, "").await);
    }
    // A long poll counted while it waits, on the job that times out.
    let slow = submit(&a, "/slow", "").await;
    let long_poll = {
        let a = a.clone();
        let slow = slow.clone();
        tokio::spawn(async move { a.get(&format!("{slow}?wait=20")).await })
    };
    until_value(&mut seen, &snapshotter, names::LONG_POLLS_WAITING, 1.0).await;
    assert_eq!(long_poll.await.unwrap().status_word(), "failed");
    monitors.push(slow);
    for monitor in &monitors {
        a.until_done(monitor).await;
    }

    // B: one runner, one place in the queue.
    let gate = Arc::new(Semaphore::new(0));
    let limited = AcceptedLayer::new().max_running(1).max_queued(1);
    let b_server: Server = serve(
        Router::new()
            .route("/held", common::gate::held(&gate, "held"))
            .layer(limited.clone()),
    )
    .await;
    let b = HttpClient::new(&b_server);
    let first = submit(&b, "/held", "").await;
    let queued = submit(&b, "/held", "").await;
    until_value(&mut seen, &snapshotter, names::JOBS_RUNNING, 1.0).await;
    until_value(&mut seen, &snapshotter, names::JOBS_QUEUED, 1.0).await;
    b.post("/held", "")
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    // Canceled while queued, then while running.
    assert_eq!(b.delete(&queued).await.status, StatusCode::NO_CONTENT);
    until_value(&mut seen, &snapshotter, names::JOBS_QUEUED, 0.0).await;
    let next = submit(&b, "/held", "").await;
    assert_eq!(b.delete(&first).await.status, StatusCode::NO_CONTENT);
    until("the next job runs", || b_running(&snapshotter, &mut seen)).await;
    let last = submit(&b, "/held", "").await;
    // A shutdown ends the one running and the one queued.
    assert_eq!(limited.shutdown(Duration::from_millis(300)).await, 2);
    b.post("/held", "")
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    for monitor in [&next, &last] {
        let done = b.until_done(monitor).await;
        assert_eq!(done.json()["error"]["code"], "shutdown");
    }

    // C: a store with room for one unfinished job.
    let gate_c = Arc::new(Semaphore::new(0));
    let store = MemoryStore::builder().capacity(1).build();
    let c = serve(
        Router::new()
            .route("/held", common::gate::held(&gate_c, "held"))
            .layer(AcceptedLayer::new().store(store)),
    )
    .await;
    let c = HttpClient::new(&c);
    let kept = submit(&c, "/held", "").await;
    c.post("/held", "")
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    gate_c.add_permits(1);
    c.until_done(&kept).await;

    // All ended: every gauge is back to zero.
    until_value(&mut seen, &snapshotter, names::JOBS_RUNNING, 0.0).await;
    seen.read(&snapshotter);
    assert_eq!(seen.value(names::JOBS_QUEUED), 0.0);
    assert_eq!(seen.value(names::LONG_POLLS_WAITING), 0.0);

    assert_eq!(seen.value(names::JOBS_ACCEPTED_TOTAL), 11.0, "A 6, B 4, C 1");
    let expected = [
        (finished("succeeded", "none"), 2.0),
        (finished("failed", "http_status"), 1.0),
        (finished("failed", "panicked"), 1.0),
        (finished("failed", "error"), 1.0),
        (finished("failed", "timeout"), 1.0),
        (finished("failed", "result_too_large"), 1.0),
        (finished("failed", "shutdown"), 2.0),
        (finished("failed", "lost"), 0.0),
        (finished("failed", "other"), 0.0),
        (finished("canceled", "none"), 2.0),
        (refused("capacity"), 1.0),
        (refused("shutting_down"), 1.0),
        (refused("store_full"), 1.0),
        (refused("store_unavailable"), 0.0),
    ];
    for (name, value) in &expected {
        assert_eq!(seen.value(name), *value, "{name}");
    }
    // Started: A's 6, B's first and next, C's one; the last never started.
    assert_eq!(seen.count(names::JOB_QUEUE_WAIT_SECONDS), 9);
    // Ran to an outcome: the same but B's first, canceled while it ran.
    assert_eq!(seen.count(names::JOB_RUN_SECONDS), 8);
    // Every create timed, the one the full store refused counted failed.
    let create = format!("{}{{op=create}}", names::STORE_OPERATION_SECONDS);
    assert_eq!(seen.count(&create), 12);
    assert_eq!(seen.value(&format!("{}{{op=create}}", names::STORE_ERRORS_TOTAL)), 1.0);
    assert!(seen.count(&format!("{}{{op=get}}", names::STORE_OPERATION_SECONDS)) > 0);
    // Every job that ran to an outcome, and the one queued at the shutdown.
    assert_eq!(
        seen.count(&format!("{}{{op=finish}}", names::STORE_OPERATION_SECONDS)),
        9
    );
    // Every name of the list was registered, and nothing else.
    let registered: std::collections::BTreeSet<&str> = seen
        .values
        .keys()
        .chain(seen.histograms.keys())
        .map(|name| name.split('{').next().unwrap_or(name))
        .collect();
    for name in names::ALL {
        if name != names::LEASE_RENEWAL_LAG_SECONDS {
            assert!(registered.contains(name), "{name} missing from {registered:?}");
        }
    }
    assert!(
        registered.iter().all(|name| names::ALL.contains(name)),
        "{registered:?}"
    );
}

fn b_running(snapshotter: &Snapshotter, seen: &mut Seen) -> bool {
    seen.read(snapshotter);
    seen.value(names::JOBS_RUNNING) == 1.0 && seen.value(names::JOBS_QUEUED) == 0.0
}

/// On a store shared by processes: a job whose process went away ends
/// `lost` by this layer's sweep, and a store that stops answering refuses
/// submissions as `store_unavailable`; both counted.
#[cfg(feature = "redis")]
#[tokio::test]
async fn lost_jobs_and_an_unavailable_store_are_counted() {
    use tower_accepted::store::{Claim, JobId, JobRecord, JobStore, RedisStore};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut seen = Seen::default();

    let mut redis = common::private_redis::PrivateRedis::start().await;
    let store = RedisStore::builder(redis.url())
        .namespace("metrics")
        .lease(Duration::from_millis(600))
        .command_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    // A job of another process, started and never renewed.
    let orphan = JobId::new();
    store.create(JobRecord::pending(orphan)).await.unwrap();
    assert!(store.start(Claim::first(orphan)).await.unwrap());
    let server = serve(
        Router::new()
            .route("/ok", post(|| async { "ok" }))
            .layer(AcceptedLayer::new().store(store.clone())),
    )
    .await;
    let client = HttpClient::new(&server);
    // The first request starts the layer's sweeps.
    let ok = submit(&client, "/ok", "").await;
    client.until_done(&ok).await;
    until_value(&mut seen, &snapshotter, &finished("failed", "lost"), 1.0).await;

    redis.kill().await;
    client
        .post("/ok", "")
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    seen.read(&snapshotter);
    assert_eq!(seen.value(&refused("store_unavailable")), 1.0);
    assert!(seen.value(&format!("{}{{op=create}}", names::STORE_ERRORS_TOTAL)) >= 1.0);
    assert_eq!(seen.value(names::JOBS_ACCEPTED_TOTAL), 1.0);
    assert_eq!(seen.value(&finished("succeeded", "none")), 1.0);
}

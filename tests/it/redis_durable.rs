//! Durable jobs on Redis, in process (issue 12): an idle replica runs the
//! jobs a busy one queued (spreading); a graceful shutdown hands running
//! and queued durable jobs back for another replica; queued jobs survive a
//! Redis restart from its append-only file; a Redis paused for 3 s never
//! holds back a handler that reports progress.

#![cfg(feature = "redis")]

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Extension, Router};
use tokio::sync::Semaphore;
use tower_accepted::store::RedisStore;
use tower_accepted::{AcceptedLayer, Job};

use common::http::{HttpClient, submit};
use common::private_redis::PrivateRedis;
use common::redis::{namespace, redis_url};
use common::server::{Server, serve};

/// A replica on `url` in `ns` whose `/work?ms=N` jobs are durable, answer
/// with `name` and last N ms; `/held` jobs wait for `gate`.
async fn replica(
    url: &str,
    ns: &str,
    name: &'static str,
    max_running: usize,
    gate: Arc<Semaphore>,
) -> (Server, HttpClient, AcceptedLayer<RedisStore>) {
    let store = RedisStore::builder(url)
        .namespace(ns)
        .lease(Duration::from_millis(1500))
        .build()
        .await
        .unwrap();
    let layer = AcceptedLayer::new().store(store).durable(true).max_running(max_running);
    let app = Router::new()
        .route(
            "/work",
            post(move |query: axum::extract::RawQuery| async move {
                let ms = query.0.and_then(|q| q.strip_prefix("ms=")?.parse().ok()).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                name
            }),
        )
        .route("/held", common::gate::held(&gate, name))
        .layer(layer.clone());
    layer.run_jobs_with(app.clone());
    let server = serve(app).await;
    let client = HttpClient::new(&server);
    (server, client, layer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_replica_runs_the_durable_jobs_a_busy_one_queued() {
    let ns = namespace();
    let url = redis_url();
    let gate = Arc::new(Semaphore::new(0));
    let (_a_server, a, _a) = replica(&url, &ns, "a", 1, Arc::clone(&gate)).await;
    let (_b_server, _b, _b_layer) = replica(&url, &ns, "b", 4, Arc::clone(&gate)).await;
    // A's only runner is held; what it accepts next waits in the queue.
    let held = submit(&a, "/held", "").await;
    let mut queued = Vec::new();
    for _ in 0..4 {
        queued.push(submit(&a, "/work?ms=300", "").await);
    }
    for monitor in &queued {
        let done = a.until_done(monitor).await;
        assert_eq!(done.status_word(), "succeeded", "{monitor}: {done:?}");
        let result = a.get(&format!("{monitor}/result")).await;
        assert_eq!(&result.body[..], b"b", "{monitor} ran on the idle replica");
    }
    gate.add_permits(1);
    assert_eq!(a.until_done(&held).await.status_word(), "succeeded");
    common::redis::assert_every_key_expires(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_durable_jobs_run_after_redis_restarts_from_its_append_only_file() {
    let mut redis = PrivateRedis::start().await;
    let gate = Arc::new(Semaphore::new(0));
    let (_server, client, _layer) = replica(&redis.url(), "restart", "a", 1, Arc::clone(&gate)).await;
    let held = submit(&client, "/held", "").await;
    let mut queued = Vec::new();
    for _ in 0..5 {
        queued.push(submit(&client, "/work?ms=50", "").await);
    }
    redis.kill().await;
    redis.spawn().await;
    gate.add_permits(1);
    for monitor in std::iter::once(&held).chain(&queued) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = client.get(monitor).await;
            if answer.status.is_success() || answer.status.is_redirection() {
                let word = answer.status_word();
                if word == "succeeded" {
                    break;
                }
                assert!(matches!(word.as_str(), "pending" | "running"), "{monitor}: {answer:?}");
            }
            assert!(Instant::now() < deadline, "{monitor} after the restart: {answer:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_paused_for_3_s_never_holds_back_a_handler_that_reports_progress() {
    let redis = PrivateRedis::start().await;
    let store = RedisStore::builder(redis.url())
        .namespace("pause")
        .lease(Duration::from_secs(15))
        .build()
        .await
        .unwrap();
    let (took_tx, took_rx) = tokio::sync::oneshot::channel();
    let took_tx = Arc::new(std::sync::Mutex::new(Some(took_tx)));
    let layer = AcceptedLayer::new().store(store).durable(true);
    let app = Router::new()
        .route(
            "/report",
            post(move |Extension(job): Extension<Job>| {
                let took_tx = Arc::clone(&took_tx);
                async move {
                    let began = Instant::now();
                    for n in 1..=100 {
                        job.set_progress(n as f32 / 100.0);
                        job.set_message(format!("step {n}"));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    if let Some(tx) = took_tx.lock().unwrap().take() {
                        let _ = tx.send(began.elapsed());
                    }
                    "reported"
                }
            }),
        )
        .layer(layer.clone());
    let server = serve(app).await;
    let client = HttpClient::new(&server);
    let monitor = submit(&client, "/report", "").await;
    redis.command(&["CLIENT", "PAUSE", "3000", "ALL"]).await.unwrap();
    let took = tokio::time::timeout(Duration::from_secs(30), took_rx)
        .await
        .unwrap()
        .unwrap();
    // 100 steps of 10 ms: about 1.1 s of sleeping; the pause is 3 s.
    assert!(
        took < Duration::from_millis(2500),
        "the handler took {took:?} during a 3 s pause"
    );
    let done = client.until_done(&monitor).await;
    assert_eq!(done.status_word(), "succeeded", "{done:?}");
    let doc = done.json();
    assert_eq!(doc["progress"], 1.0, "the last report is recorded: {doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_hands_running_and_queued_durable_jobs_to_another_replica() {
    use tower_accepted::store::{JobStatus, JobStore, Lookup};

    let ns = namespace();
    let store = |ns: String| async move {
        RedisStore::builder(redis_url())
            .namespace(ns)
            .lease(Duration::from_millis(1500))
            .build()
            .await
            .unwrap()
    };
    let first = AcceptedLayer::new()
        .store(store(ns.clone()).await)
        .durable(true)
        .max_running(1);
    let app = Router::new()
        .route("/job", post(std::future::pending::<&'static str>))
        .layer(first.clone());
    first.run_jobs_with(app.clone());
    let server = serve(app).await;
    let client = HttpClient::new(&server);
    let running = submit(&client, "/job", "").await;
    common::wait::poll_until(&client, &running, "running", |doc| doc["status"] == "running").await;
    let queued = submit(&client, "/job", "").await;

    let ended = first.shutdown(Duration::from_millis(200)).await;
    assert_eq!(ended, 0, "nothing was failed as `shutdown`");
    let reader = store(ns.clone()).await;
    for monitor in [&running, &queued] {
        let id = monitor.rsplit('/').next().unwrap().parse().unwrap();
        let Lookup::Found(record) = reader.get(id).await.unwrap() else {
            panic!("{monitor} is kept")
        };
        assert_eq!(
            record.status,
            JobStatus::Pending,
            "{monitor} waits in its queue again: {record:?}"
        );
        assert_eq!(record.error, None);
    }
    // Another replica takes both at once (no lease had to lapse), the
    // interrupted one as its second attempt.
    let next = AcceptedLayer::new().store(store(ns.clone()).await).durable(true);
    let app = Router::new()
        .route(
            "/job",
            post(|Extension(job): Extension<Job>| async move { format!("attempt {}", job.attempt()) }),
        )
        .layer(next.clone());
    next.run_jobs_with(app.clone());
    let other = serve(app).await;
    let other = HttpClient::new(&other);
    for (monitor, attempt) in [(&running, 2), (&queued, 1)] {
        let done = other.until_done(monitor).await;
        assert_eq!(done.status_word(), "succeeded", "{monitor}: {done:?}");
        let result = other.get(&format!("{monitor}/result")).await;
        assert_eq!(String::from_utf8_lossy(&result.body), format!("attempt {attempt}"));
    }
    common::redis::assert_every_key_expires(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_frozen_longer_than_a_lease_takes_no_job_from_its_live_runner() {
    // Frozen 3 s with a 1 s lease: every lease has lapsed when Redis comes
    // back. The replica that runs the job is alive and renews it; its own
    // sweep holds back for a lease after the failures it saw, so the job
    // keeps its first attempt rather than run again.
    let redis = PrivateRedis::start().await;
    let store = RedisStore::builder(redis.url())
        .namespace("frozen")
        .lease(Duration::from_millis(1000))
        .build()
        .await
        .unwrap();
    let layer = AcceptedLayer::new().store(store).durable(true);
    let app = Router::new()
        .route(
            "/job",
            post(|Extension(job): Extension<Job>| async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                format!("attempt {}", job.attempt())
            }),
        )
        .layer(layer.clone());
    layer.run_jobs_with(app.clone());
    let server = serve(app).await;
    let client = HttpClient::new(&server);
    let monitor = submit(&client, "/job", "").await;
    common::wait::poll_until(&client, &monitor, "running", |doc| doc["status"] == "running").await;
    redis.freeze();
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.thaw();
    let done = client.until_done(&monitor).await;
    assert_eq!(done.status_word(), "succeeded", "{done:?}");
    let result = client.get(&format!("{monitor}/result")).await;
    assert_eq!(
        String::from_utf8_lossy(&result.body),
        "attempt 1",
        "the job kept its runner"
    );
}

//! `RedisStore` against the real Redis server (`REDIS_URL`): the store suite,
//! replicas sharing jobs over HTTP, lost jobs of a killed replica, namespaces
//! and key expiry.
#![cfg(feature = "redis")]

mod common;
mod suite;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Extension, Router};
use http::{Method, StatusCode};
use tokio::io::{AsyncBufReadExt, BufReader};
use tower_accepted::{AcceptedLayer, Job, JobId, JobRecord, JobStore, Lookup, RedisStore};

use common::redis::{assert_every_key_expires, namespace, redis_url, store};
use common::{HttpClient, Server, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_suite() {
    let ns = namespace();
    suite::run_all_on(Arc::new(store(&ns).await)).await;
    assert_every_key_expires(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_expiry_suite() {
    let ns = namespace();
    let store = RedisStore::builder(redis_url())
        .namespace(ns.as_str())
        .ttl(Duration::from_millis(800))
        .tombstone_ttl(Duration::from_millis(800))
        .lease(Duration::from_millis(1000))
        .build()
        .await
        .unwrap();
    suite::expiry(&store, Duration::from_millis(800), Duration::from_millis(800)).await;
    assert_every_key_expires(&ns).await;
}

#[tokio::test]
async fn namespaces_are_isolated() {
    let (a, b) = (store(&namespace()).await, store(&namespace()).await);
    let id = JobId::new();
    a.create(JobRecord::pending(id)).await.unwrap();
    assert!(matches!(a.get(id).await.unwrap(), Lookup::Found(_)));
    assert_eq!(b.get(id).await.unwrap(), Lookup::Unknown);
    assert!(!b.start(id).await.unwrap());
    assert_eq!(b.cancel(id).await.unwrap(), tower_accepted::Cancel::Unknown);
    assert!(matches!(a.get(id).await.unwrap(), Lookup::Found(r) if r.status == tower_accepted::JobStatus::Pending));
}

/// Flags set by the blocking handler, to observe a cancel on the replica
/// running the job.
#[derive(Clone, Default)]
struct Flags {
    dropped: Arc<AtomicBool>,
    cancelled: Arc<AtomicBool>,
}

struct DropGuard(Arc<AtomicBool>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// One replica: `POST /work?ms=N` answers its body after N ms;
/// `POST /block` reports progress then waits until canceled.
async fn replica(ns: &str, flags: Flags) -> (Server, HttpClient) {
    let layer = AcceptedLayer::new().store(store(ns).await);
    let app = Router::new()
        .route(
            "/work",
            post(|query: axum::extract::RawQuery, body: String| async move {
                let ms = query.0.and_then(|q| q.strip_prefix("ms=")?.parse().ok()).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                ([("x-replayed", "yes")], body)
            }),
        )
        .route(
            "/block",
            post(move |Extension(job): Extension<Job>| {
                let flags = flags.clone();
                async move {
                    let _guard = DropGuard(flags.dropped.clone());
                    let watcher = job.clone();
                    let cancelled = flags.cancelled.clone();
                    tokio::spawn(async move {
                        watcher.cancelled().await;
                        cancelled.store(true, Ordering::SeqCst);
                    });
                    job.set_progress(0.5);
                    job.set_message("half way");
                    std::future::pending::<()>().await;
                }
            }),
        )
        .layer(layer);
    let server = serve(app).await;
    let client = HttpClient::new(&server);
    (server, client)
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_on_one_replica_follow_on_another() {
    let ns = namespace();
    let (_a_server, a) = replica(&ns, Flags::default()).await;
    let (_b_server, b) = replica(&ns, Flags::default()).await;

    let accepted = a.post("/work?ms=400", "hello from A").await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let monitor = accepted.location();
    let polled = b.get(&monitor).await;
    assert_eq!(polled.status, StatusCode::OK);
    assert!(matches!(polled.json()["status"].as_str(), Some("pending" | "running")));
    assert!(polled.header("retry-after").is_some());
    let not_ready = b.get(&format!("{monitor}/result")).await;
    not_ready.assert_problem(StatusCode::NOT_FOUND);

    // A long poll on B wakes when A finishes, not after its 20 s.
    let started = Instant::now();
    let done = b.get(&format!("{monitor}?wait=20")).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{:?}", done.body);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woke after {:?}",
        started.elapsed()
    );
    assert_eq!(done.json()["status"], "succeeded");

    let result = b.get(&done.location()).await;
    assert_eq!(result.status, StatusCode::OK);
    assert_eq!(result.body, "hello from A");
    assert_eq!(result.header("x-replayed"), Some("yes"));
    let head = b.send(Method::HEAD, &done.location(), &[], "").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some("12"));

    // Forget it on B: gone for A too.
    assert_eq!(b.delete(&monitor).await.status, StatusCode::NO_CONTENT);
    a.get(&monitor).await.assert_problem(StatusCode::NOT_FOUND);
    assert_every_key_expires(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_another_replica_stops_the_job_where_it_runs() {
    let ns = namespace();
    let flags = Flags::default();
    let (_a_server, a) = replica(&ns, flags.clone()).await;
    let (_b_server, b) = replica(&ns, Flags::default()).await;

    let accepted = a.post("/block", "").await;
    let monitor = accepted.location();
    // Progress reported on A is visible on B.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let doc = b.get(&monitor).await.json();
        if doc["progress"] == 0.5 {
            assert_eq!(doc["message"], "half way");
            assert_eq!(doc["status"], "running");
            break;
        }
        assert!(Instant::now() < deadline, "progress never reached B: {doc}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert_eq!(b.delete(&monitor).await.status, StatusCode::NO_CONTENT);
    until("the handler's future dropped on A", || {
        flags.dropped.load(Ordering::SeqCst)
    })
    .await;
    until("Job::cancelled fired on A", || flags.cancelled.load(Ordering::SeqCst)).await;
    assert_eq!(a.get(&monitor).await.json()["status"], "canceled");
    b.get(&format!("{monitor}/result"))
        .await
        .assert_problem(StatusCode::CONFLICT);
    assert_every_key_expires(&ns).await;
}

/// The path of the `replicas` example, built by `cargo test` with the
/// feature (or built here when only this test target was built).
fn replicas_example() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().and_then(|deps| deps.parent()).unwrap().to_path_buf();
    let example = target.join("examples").join("replicas");
    if !example.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", "replicas", "--features", "redis"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "building the replicas example failed");
    }
    example
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_leaves_its_job_lost_not_running() {
    let ns = namespace();
    let mut child = tokio::process::Command::new(replicas_example())
        .env("REDIS_URL", redis_url())
        .env("ADDRS", "127.0.0.1:0")
        .env("NAMESPACE", &ns)
        .env("LEASE_MS", "1000")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the replicas example starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the example prints its address");
            if let Some(base) = line.strip_prefix("replica listening on ") {
                return base.to_owned();
            }
        }
    })
    .await
    .expect("the example listens within 30 s");

    // A 100-page report (30 s) on the child replica.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let request = http::Request::post(format!("{base}/reports"))
        .body(http_body_util::Full::new(bytes::Bytes::from(r#"{"pages": 100}"#)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let monitor = response.headers()["location"].to_str().unwrap().to_owned();

    let (_b_server, b) = replica(&ns, Flags::default()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.get(&monitor).await.json()["status"] != "running" {
        assert!(Instant::now() < deadline, "the job never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    child.kill().await.unwrap(); // SIGKILL: no chance to clean up.
    let killed = Instant::now();
    let answer = b.get(&format!("{monitor}?wait=20")).await;
    let doc = answer.json();
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(doc["error"]["code"], "lost");
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "lost after {:?}",
        killed.elapsed()
    );
    b.get(&format!("{monitor}/result"))
        .await
        .assert_problem(StatusCode::INTERNAL_SERVER_ERROR);
    assert_every_key_expires(&ns).await;
}

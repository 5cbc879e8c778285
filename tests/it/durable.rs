//! Durable jobs on one process (issue 12): the stored request reaches the
//! handler whole through the application, a job that finds no runner free
//! waits in the store's queue and is claimed as runners free up, with
//! `Router::layer` (a layer per route) and with a layer on one route only;
//! a layer of another queue never runs nor accepts a claimed job, which
//! runs out of attempts; a graceful shutdown on a MemoryStore (nobody else
//! to hand work to) ends its durable jobs `shutdown`.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use axum::{Extension, Router};
use http::{HeaderMap, Method, StatusCode};
use tokio::sync::Semaphore;
use tower_accepted::store::{JobStatus, JobStore, Lookup, MemoryStore};
use tower_accepted::{AcceptedLayer, Job};

use common::http::{HttpClient, submit};
use common::server::serve;

/// The echo of a request as the handler saw it: method, path and query,
/// one header, attempt and body.
async fn echo(
    Extension(job): Extension<Job>,
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> String {
    let header = headers.get("x-note").and_then(|v| v.to_str().ok()).unwrap_or("-");
    format!(
        "{method} {uri} note={header} attempt={} body={}",
        job.attempt(),
        String::from_utf8_lossy(&body)
    )
}

#[tokio::test]
async fn a_durable_job_without_a_free_runner_waits_in_the_store_and_runs_with_its_request() {
    let gate = Arc::new(Semaphore::new(0));
    let held = Arc::clone(&gate);
    let layer = AcceptedLayer::new().durable(true).max_running(1);
    let app = Router::new()
        .route("/hold", common::gate::held(&held, "held"))
        .route("/echo", post(echo))
        .layer(layer.clone());
    layer.run_jobs_with(app.clone());
    let server = serve(app).await;
    let client = HttpClient::new(&server);

    let hold = submit(&client, "/hold", "").await;
    common::wait::poll_until(&client, &hold, "running", |doc| doc["status"] == "running").await;
    // The only runner is busy: these wait in the store's queue, attempt 0.
    let mut queued = Vec::new();
    for n in 0..3 {
        let answer = client
            .send(
                Method::POST,
                &format!("/echo?n={n}"),
                &[("x-note", "kept")],
                format!("body {n}"),
            )
            .await;
        queued.push(common::http::assert_accepted(&answer));
    }
    let store = layer.job_store();
    for monitor in &queued {
        let id = monitor.rsplit('/').next().unwrap().parse().unwrap();
        let Lookup::Found(record) = store.get(id).await.unwrap() else {
            panic!("{monitor} is kept")
        };
        assert_eq!(
            (record.status, record.attempt),
            (JobStatus::Pending, 0),
            "{monitor} waits unclaimed"
        );
    }
    gate.add_permits(1);
    for (n, monitor) in queued.iter().enumerate() {
        let done = client.until_done(monitor).await;
        assert_eq!(done.status_word(), "succeeded", "{monitor}: {done:?}");
        assert_eq!(done.json().get("attempt"), None, "a first attempt shows none");
        let result = client.get(&format!("{monitor}/result")).await;
        assert_eq!(
            String::from_utf8_lossy(&result.body),
            format!("POST /echo?n={n} note=kept attempt=1 body=body {n}")
        );
    }
    assert_eq!(client.until_done(&hold).await.status_word(), "succeeded");
}

#[tokio::test]
async fn a_claimed_job_runs_through_the_layer_of_its_own_route_only() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let gate = Arc::new(Semaphore::new(0));
    let held = Arc::clone(&gate);
    // A layer on `/reports` only; `/plain` is a route without it.
    let layer = AcceptedLayer::new()
        .durable(true)
        .max_running(1)
        .durable_queue("reports");
    let reports = post(move || {
        let held = Arc::clone(&held);
        let counted = Arc::clone(&counted);
        async move {
            let _ = held.acquire().await;
            counted.fetch_add(1, Ordering::SeqCst);
            "report"
        }
    })
    .layer(layer.clone());
    let app = Router::new()
        .route("/reports", reports)
        .route("/plain", post(|| async { "plain" }))
        .merge(Router::new().nest_service("/jobs", layer.job_routes()));
    layer.run_jobs_with(app.clone());
    let server = serve(app).await;
    let client = HttpClient::new(&server);

    let first = submit(&client, "/reports", "").await;
    let second = submit(&client, "/reports", "").await;
    gate.add_permits(2);
    for monitor in [&first, &second] {
        assert_eq!(client.until_done(monitor).await.status_word(), "succeeded");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2, "each job ran once");
    assert_eq!(client.post("/plain", "").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_graceful_shutdown_on_a_memory_store_fails_its_durable_jobs_rather_than_strand_them() {
    // A MemoryStore is this process's alone: nobody else can run what a
    // shutdown would hand back, so its durable jobs end `shutdown` as the
    // others do, the queued ones included, rather than wait for good.
    let store = MemoryStore::new();
    let layer = AcceptedLayer::new().store(store.clone()).durable(true).max_running(1);
    let app = Router::new()
        .route("/forever", post(std::future::pending::<&'static str>))
        .layer(layer.clone());
    layer.run_jobs_with(app.clone());
    let server = serve(app).await;
    let client = HttpClient::new(&server);
    let running = submit(&client, "/forever", "").await;
    common::wait::poll_until(&client, &running, "running", |doc| doc["status"] == "running").await;
    let queued = submit(&client, "/forever", "").await;

    let ended = layer.shutdown(Duration::from_millis(200)).await;
    assert_eq!(ended, 2, "both ended `shutdown`");
    for monitor in [&running, &queued] {
        let id = monitor.rsplit('/').next().unwrap().parse().unwrap();
        let Lookup::Found(record) = store.get(id).await.unwrap() else {
            panic!("{monitor} is kept")
        };
        assert_eq!(record.status, JobStatus::Failed, "{monitor}: {record:?}");
        assert_eq!(
            record.error.map(|e| e.code.as_str().to_owned()).as_deref(),
            Some("shutdown")
        );
    }
}

#[tokio::test]
async fn a_claimed_job_no_layer_of_its_queue_takes_is_never_accepted_anew_and_runs_out_of_attempts() {
    let store = MemoryStore::new();
    let gate = Arc::new(Semaphore::new(0));
    let held = Arc::clone(&gate);
    let layer = AcceptedLayer::new()
        .store(store.clone())
        .durable(true)
        .max_running(1)
        .max_attempts(2);
    let app = Router::new()
        .route("/hold", common::gate::held(&held, "held"))
        .route("/x", post(|| async { "x" }))
        .layer(layer.clone());
    // Claimed jobs go through an application where `/x` has a layer of
    // another queue: it answers `421`, calls nothing, accepts nothing.
    let ran_elsewhere = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&ran_elsewhere);
    let other = AcceptedLayer::new()
        .store(store.clone())
        .durable(true)
        .durable_queue("other");
    let elsewhere = Router::new()
        .route(
            "/x",
            post(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { "elsewhere" }
            }),
        )
        .route("/hold", post(|| async { "hold" }))
        .layer(other);
    layer.run_jobs_with(elsewhere);
    let server = serve(app).await;
    let client = HttpClient::new(&server);

    let hold = submit(&client, "/hold", "").await;
    common::wait::poll_until(&client, &hold, "running", |doc| doc["status"] == "running").await;
    let queued = submit(&client, "/x", "").await;
    let jobs = store.len();
    gate.add_permits(1);
    let done = client.until_done(&queued).await;
    let doc = done.json();
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(doc["error"]["code"], "lost", "{doc}");
    assert_eq!(doc["error"]["message"], tower_accepted::store::OUT_OF_ATTEMPTS, "{doc}");
    assert_eq!(store.len(), jobs, "no job was accepted anew");
    assert_eq!(ran_elsewhere.load(Ordering::SeqCst), 0, "no handler ran");
}

//! One replica of the demo's routes, sharing jobs with the others through
//! Redis: run several side by side (one process each), submit on one, poll,
//! wait, fetch and cancel on any; kill one and its durable jobs run on the
//! others.
//!
//! `cargo run --example replicas --features redis`. Environment:
//! - `ADDR`: where it listens (default `127.0.0.1:3010`);
//! - `REDIS_URL` (default `redis://127.0.0.1:6379`);
//! - `REDIS_CLUSTER_URLS`: comma-separated node URLs of a Redis Cluster,
//!   used instead of `REDIS_URL` when set;
//! - `NAMESPACE` (default `demo`): replicas of one application share one;
//! - `LEASE_MS` (default 5000): how soon the jobs of a replica that stopped
//!   answering run elsewhere (durable) or end `lost` (the others);
//! - `MAX_RUNNING` (default 8): jobs run at once by this replica.
//!
//! `/reports` and `/echo` are durable jobs, `/fail` is not. SIGTERM or
//! SIGINT shuts the replica down gracefully: it stops accepting, gives its
//! jobs 10 s, then hands the durable ones still running back to the queue.
//! Each job a handler finishes here is printed (`done <id> attempt <n>`),
//! and its response says which attempt and replica made it (`x-attempt`,
//! `x-replica`).

#[path = "demo/app.rs"]
#[allow(
    dead_code,
    reason = "the demo's `app` applies the layer directly; a replica adds middleware first"
)]
mod app;

use std::time::Duration;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_accepted::Job;
use tower_accepted::store::RedisStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let addr = env("ADDR", "127.0.0.1:3010");
    let redis = env("REDIS_URL", "redis://127.0.0.1:6379");
    let namespace = env("NAMESPACE", "demo");
    let lease: u64 = env("LEASE_MS", "5000").parse()?;
    let max_running: usize = env("MAX_RUNNING", "8").parse()?;
    let cluster = env("REDIS_CLUSTER_URLS", "");
    let completion = app::completion_from_env()?;

    let (store, redis) = if cluster.is_empty() {
        (RedisStore::builder(redis.as_str()), redis)
    } else {
        let nodes: Vec<&str> = cluster.split(',').map(str::trim).collect();
        (RedisStore::cluster_builder(nodes), format!("cluster {cluster}"))
    };
    let store = store
        .namespace(namespace.as_str())
        .lease(Duration::from_millis(lease))
        .build()
        .await?;
    let layer = app::layer(completion)
        .store(store)
        .max_running(max_running)
        .durable_if(|parts| parts.uri.path() != "/fail");
    let replica = HeaderValue::from_str(&addr)?;
    let app = app::routes()
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            let replica = replica.clone();
            report_done(request, next, replica)
        }))
        .layer(layer.clone());
    // Claimed jobs (queued here or elsewhere, or handed back by a replica
    // that stopped) run through the same application.
    layer.run_jobs_with(app.clone());

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("replica listening on {base} ({redis}, namespace {namespace:?}, lease {lease} ms)");
    println!("  curl -i -X POST {base}/reports -d '{{\"pages\": 10}}'");
    println!("  curl -i '{base}/jobs/<id>?wait=30'   # on this replica or any other");

    axum::serve(listener, app).with_graceful_shutdown(stop_signal()).await?;
    let failed = layer.shutdown(Duration::from_secs(10)).await;
    println!("replica {base} stopped ({failed} jobs failed as `shutdown`)");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Around each route, inside the layer: says which attempt, on which
/// replica, made the response of a job, and prints it.
async fn report_done(request: Request, next: Next, replica: HeaderValue) -> Response {
    let job = request.extensions().get::<Job>().cloned();
    let mut response = next.run(request).await;
    if let Some(job) = job {
        println!("done {} attempt {}", job.id(), job.attempt());
        let headers = response.headers_mut();
        headers.insert("x-attempt", HeaderValue::from(job.attempt()));
        headers.insert("x-replica", replica);
    }
    response
}

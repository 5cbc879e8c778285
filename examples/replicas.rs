//! Two replicas of the demo's routes on two ports, sharing jobs through one
//! Redis: submit on one, poll, wait, fetch and cancel on the other.
//!
//! `cargo run --example replicas --features redis`. Environment:
//! `REDIS_URL` (default `redis://127.0.0.1:6379`), `ADDRS` (default
//! `127.0.0.1:3010,127.0.0.1:3011`), `NAMESPACE` (default `demo`) and
//! `LEASE_MS` (default 5000: how soon a job of a dead replica is `lost`).

#[path = "demo/app.rs"]
mod app;

use std::time::Duration;

use tower_accepted::store::RedisStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let addrs = std::env::var("ADDRS").unwrap_or_else(|_| "127.0.0.1:3010,127.0.0.1:3011".into());
    let namespace = std::env::var("NAMESPACE").unwrap_or_else(|_| "demo".into());
    let lease = std::env::var("LEASE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let completion = app::completion_from_env()?;

    let mut servers = Vec::new();
    let mut bases = Vec::new();
    for addr in addrs.split(',') {
        // Each replica has a store (connections, listener) of its own,
        // as separate processes would; they share the Redis and namespace.
        let store = RedisStore::builder(redis.as_str())
            .namespace(namespace.as_str())
            .lease(Duration::from_millis(lease))
            .build()
            .await?;
        let layer = app::layer(completion).store(store);
        let listener = tokio::net::TcpListener::bind(addr.trim()).await?;
        let base = format!("http://{}", listener.local_addr()?);
        println!("replica listening on {base}");
        bases.push(base);
        servers.push(tokio::spawn(
            async move { axum::serve(listener, app::app(layer)).await },
        ));
    }
    let (a, b) = (&bases[0], bases.get(1).unwrap_or(&bases[0]));
    println!();
    println!("Submit on one replica, follow on the other (Redis {redis}, namespace {namespace:?}):");
    println!("  curl -i -X POST {a}/reports -d '{{\"pages\": 10}}'");
    println!("  curl -i '{b}/jobs/<id>?wait=30'");
    println!("  curl -i {b}/jobs/<id>/result");
    println!("  curl -i -X DELETE {b}/jobs/<id>");
    for server in servers {
        server.await??;
    }
    Ok(())
}

//! One replica of the demo's routes, sharing jobs with the others through
//! Redis or PostgreSQL: run several side by side (one process each), submit
//! on one, poll, wait, fetch and cancel on any; kill one and its durable
//! jobs run on the others.
//!
//! `cargo run --example replicas --features redis` (Redis), or
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run --example
//! replicas --features postgres` (PostgreSQL). Built with both features,
//! the replica uses PostgreSQL when `DATABASE_URL` is set, Redis otherwise.
//! Environment:
//! - `ADDR`: where it listens (default `127.0.0.1:3010`);
//! - `DATABASE_URL`: the PostgreSQL database (with `--features postgres`;
//!   default `postgres://postgres@127.0.0.1:5432/test` when built without
//!   `redis`);
//! - `SCHEMA` (default `demo`): the schema of the PostgreSQL store's
//!   tables; replicas of one application share one;
//! - `REDIS_URL` (default `redis://127.0.0.1:6379`);
//! - `REDIS_CLUSTER_URLS`: comma-separated node URLs of a Redis Cluster,
//!   used instead of `REDIS_URL` when set;
//! - `NAMESPACE` (default `demo`): the Redis store's namespace; replicas of
//!   one application share one;
//! - `LEASE_MS` (default 5000): how soon the jobs of a replica that stopped
//!   answering run elsewhere (durable) or end `lost` (the others);
//! - `MAX_RUNNING` (default 8): jobs run at once by this replica;
//! - `CALLBACK_ALLOW` (default `http://127.0.0.1:`): the prefix a
//!   `Callback-Url` must start with; `WEBHOOK_SECRET` (default: a random
//!   one, printed): the callbacks' signing secret, the same on every
//!   replica. A pending callback is delivered by any replica, so one that
//!   dies does not take it along.
//!
//! `/reports` and `/echo` are durable jobs, `/fail` is not. SIGTERM or
//! SIGINT shuts the replica down gracefully: it stops accepting, gives its
//! jobs 10 s, then hands the durable ones still running back to the queue.
//! Each job a handler finishes here is printed (`done <id> attempt <n>`),
//! and its response says which attempt and replica made it (`x-attempt`,
//! `x-replica`).
//!
//! Built with neither feature, it only says which one to enable and exits
//! with an error: Cargo's `required-features` means *all* of the features
//! listed, never one of them, so the example has none, and `cargo build
//! --examples` builds it (as that stub) without features.

#[cfg(not(any(feature = "redis", feature = "postgres")))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "the replicas example shares jobs through a store: run it with `--features redis` or `--features postgres`"
    );
    std::process::ExitCode::FAILURE
}

#[cfg(any(feature = "redis", feature = "postgres"))]
#[path = "demo/app.rs"]
#[allow(
    dead_code,
    reason = "the demo's `app` applies the layer directly; a replica adds middleware first"
)]
mod app;

#[cfg(any(feature = "redis", feature = "postgres"))]
use replica::main;

/// The replica itself, with a store to share.
#[cfg(any(feature = "redis", feature = "postgres"))]
mod replica {
    use std::time::Duration;

    use axum::extract::Request;
    use axum::http::HeaderValue;
    use axum::middleware::{self, Next};
    use axum::response::Response;
    use tower_accepted::Job;
    use tower_accepted::store::JobStore;

    use super::app;

    /// An error of the replica's setup.
    type Error = Box<dyn std::error::Error>;

    /// The value of `name` in the environment, or `default`.
    fn env(name: &str, default: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| default.to_owned())
    }

    #[tokio::main]
    pub(crate) async fn main() -> Result<(), Error> {
        let lease = Duration::from_millis(env("LEASE_MS", "5000").parse()?);
        #[cfg(feature = "postgres")]
        if let Some(url) = database_url() {
            let (store, described) = postgres_store(&url, lease).await?;
            return serve(store, described, lease).await;
        }
        #[cfg(feature = "redis")]
        {
            let (store, described) = redis_store(lease).await?;
            serve(store, described, lease).await
        }
        // Not reached: built without Redis, `database_url` always answers.
        #[cfg(not(feature = "redis"))]
        Err("DATABASE_URL: no database to share jobs through".into())
    }

    /// The PostgreSQL database to share jobs through, if any: `DATABASE_URL`
    /// when set; built without Redis, the local test database otherwise.
    #[cfg(feature = "postgres")]
    fn database_url() -> Option<String> {
        match std::env::var("DATABASE_URL") {
            Ok(url) => Some(url),
            Err(_) if cfg!(feature = "redis") => None,
            Err(_) => Some("postgres://postgres@127.0.0.1:5432/test".to_owned()),
        }
    }

    /// The PostgreSQL store at `url`, in the schema `SCHEMA`, and what to
    /// print about it.
    #[cfg(feature = "postgres")]
    async fn postgres_store(
        url: &str,
        lease: Duration,
    ) -> Result<(tower_accepted::store::PostgresStore, String), Error> {
        let schema = env("SCHEMA", "demo");
        let store = tower_accepted::store::PostgresStore::builder(url)
            .schema(schema.as_str())
            .lease(lease)
            .build()
            .await?;
        // The URL may hold a password (before `@`, or as a parameter):
        // print where, not how.
        let after_user = url.rsplit('@').next().unwrap_or(url);
        let host = after_user.split('?').next().unwrap_or(after_user);
        Ok((store, format!("postgres {host}, schema {schema:?}")))
    }

    /// The Redis store (`REDIS_URL`, or a cluster at `REDIS_CLUSTER_URLS`)
    /// in the namespace `NAMESPACE`, and what to print about it.
    #[cfg(feature = "redis")]
    async fn redis_store(lease: Duration) -> Result<(tower_accepted::store::RedisStore, String), Error> {
        use tower_accepted::store::RedisStore;
        let redis = env("REDIS_URL", "redis://127.0.0.1:6379");
        let namespace = env("NAMESPACE", "demo");
        let cluster = env("REDIS_CLUSTER_URLS", "");
        let (store, redis) = if cluster.is_empty() {
            (RedisStore::builder(redis.as_str()), redis)
        } else {
            let nodes: Vec<&str> = cluster.split(',').map(str::trim).collect();
            (RedisStore::cluster_builder(nodes), format!("cluster {cluster}"))
        };
        let store = store.namespace(namespace.as_str()).lease(lease).build().await?;
        Ok((store, format!("{redis}, namespace {namespace:?}")))
    }

    /// Serves the demo's routes with jobs in `store` until SIGTERM or
    /// SIGINT, then shuts down gracefully.
    async fn serve<St: JobStore>(store: St, described: String, lease: Duration) -> Result<(), Error> {
        let addr = env("ADDR", "127.0.0.1:3010");
        let max_running: usize = env("MAX_RUNNING", "8").parse()?;
        let completion = app::completion_from_env()?;
        let (callbacks, secret) = app::callbacks_from_env()?;
        let layer = app::layer(completion)
            .store(store)
            .max_running(max_running)
            .durable_if(|parts| parts.uri.path() != "/fail")
            .callbacks(callbacks);
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
        println!(
            "replica listening on {base} ({described}, lease {} ms)",
            lease.as_millis()
        );
        println!("  curl -i -X POST {base}/reports -d '{{\"pages\": 10}}'");
        println!("  curl -i '{base}/jobs/<id>?wait=30'   # on this replica or any other");
        if let Some(secret) = secret {
            // Replicas of one application share one: set WEBHOOK_SECRET.
            println!("webhook secret: {secret}   (set WEBHOOK_SECRET to share one between replicas)");
        }

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
}

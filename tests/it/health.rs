//! Health and readiness: `JobStore::health` and `AcceptedLayer::ready` on
//! every store, when it works and when its server hangs or is down, and
//! the demo's probes (`/healthz`, `/readyz`) over HTTP. The fault tests run
//! a private server (`PrivateRedis`, `PrivatePostgres`), so that freezing
//! or stopping it disturbs no other test; their drop guards thaw and stop
//! it when a test fails.

use crate::common;

use std::error::Error as _;
use std::time::Duration;
#[cfg(any(feature = "redis", feature = "postgres"))]
use std::time::Instant;

use http::StatusCode;
use tower_accepted::store::JobStore;
#[cfg(any(feature = "redis", feature = "postgres"))]
use tower_accepted::store::StoreError;
use tower_accepted::{AcceptedLayer, Completion, NotReady};

use common::shutdown::begin_shutdown;

#[cfg(any(feature = "redis", feature = "postgres"))]
/// Asks `layer.ready()` and answers with how long it took; fails the test
/// if it took longer than `within` (a probe must never hang).
async fn timed_ready<St: JobStore>(layer: &AcceptedLayer<St>, within: Duration) -> (Result<(), NotReady>, Duration) {
    let started = Instant::now();
    let answer = tokio::time::timeout(within, layer.ready())
        .await
        .unwrap_or_else(|_| panic!("ready() did not answer within {within:?}"));
    (answer, started.elapsed())
}

#[cfg(any(feature = "redis", feature = "postgres"))]
/// Asserts that `answer` is `NotReady::Store` with an unavailable store as
/// its source.
fn assert_store_not_ready(answer: Result<(), NotReady>, elapsed: Duration) {
    match answer {
        Err(why @ NotReady::Store(_)) => {
            let source = why.source().expect("the store's error is the source");
            assert!(
                matches!(source.downcast_ref::<StoreError>(), Some(StoreError::Unavailable(_))),
                "{source}"
            );
        }
        other => panic!("expected NotReady::Store after {elapsed:?}, got {other:?}"),
    }
}

#[cfg(any(feature = "redis", feature = "postgres"))]
/// Polls `layer.ready()` until it answers `Ok`, for at most `within`;
/// answers how long that took.
async fn ready_again<St: JobStore>(layer: &AcceptedLayer<St>, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let left = within.saturating_sub(started.elapsed());
        if let Ok(Ok(())) = tokio::time::timeout(left, layer.ready()).await {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "not ready again within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn memory_store_is_healthy_and_the_layer_ready_until_a_shutdown_begins() {
    let layer = AcceptedLayer::new();
    layer.job_store().health().await.unwrap();
    layer.ready().await.unwrap();

    let shutdown = begin_shutdown(layer.clone(), Duration::from_secs(5)).await;
    let answer = layer.ready().await;
    assert!(matches!(answer, Err(NotReady::ShuttingDown)), "{answer:?}");
    let why = answer.unwrap_err();
    assert_eq!(why.to_string(), "shutting down");
    assert!(why.source().is_none());
    // The store is still healthy: draining is the layer's state, not its store's.
    layer.job_store().health().await.unwrap();

    assert_eq!(shutdown.await.unwrap(), 0);
    assert!(
        matches!(layer.ready().await, Err(NotReady::ShuttingDown)),
        "after the drain too"
    );
}

#[tokio::test]
async fn a_clone_made_before_the_shutdown_is_not_ready_either() {
    let layer = AcceptedLayer::new();
    let clone = layer.clone();
    layer.shutdown(Duration::from_secs(1)).await;
    assert!(matches!(clone.ready().await, Err(NotReady::ShuttingDown)));
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;

    use common::private_redis::PrivateRedis;
    use tower_accepted::store::RedisStore;

    /// The command timeout of these stores; the lease is three times it.
    const TIMEOUT: Duration = Duration::from_millis(500);
    /// What `ready()` may take past the command timeout on a frozen Redis:
    /// the connection manager's reconnection to a server that accepts TCP
    /// connections (the kernel does) but answers nothing, bounded by the
    /// same timeout, on a machine that runs other tests at once.
    const MARGIN: Duration = Duration::from_millis(1500);

    async fn layer(redis: &PrivateRedis) -> AcceptedLayer<RedisStore> {
        let store = RedisStore::builder(redis.url())
            .namespace("health")
            .command_timeout(TIMEOUT)
            .build()
            .await
            .unwrap();
        AcceptedLayer::new().store(store)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_store_is_ready_not_ready_while_frozen_and_ready_once_thawed() {
        let redis = PrivateRedis::start().await;
        let layer = layer(&redis).await;
        layer.job_store().health().await.unwrap();
        layer.ready().await.unwrap();

        redis.freeze();
        // Asked again and again while Redis hangs: each answer within the
        // bound, whatever the connection is doing meanwhile (timed out,
        // reconnecting).
        for _ in 0..3 {
            let (answer, elapsed) = timed_ready(&layer, Duration::from_secs(30)).await;
            assert!(elapsed <= TIMEOUT + MARGIN, "answered after {elapsed:?}");
            assert_store_not_ready(answer, elapsed);
        }

        redis.thaw();
        let took = ready_again(&layer, Duration::from_secs(10)).await;
        assert!(took < Duration::from_secs(10), "ready again after {took:?}");
        layer.job_store().health().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shutdown_wins_over_a_healthy_redis() {
        let redis = PrivateRedis::start().await;
        let layer = layer(&redis).await;
        layer.ready().await.unwrap();
        layer.shutdown(Duration::from_secs(1)).await;
        assert!(matches!(layer.ready().await, Err(NotReady::ShuttingDown)));
        layer.job_store().health().await.unwrap();
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    use common::postgres::{Schema, store};
    use common::private_postgres::PrivatePostgres;
    use tower_accepted::store::PostgresStore;

    /// The statement timeout of the private server's store.
    const TIMEOUT: Duration = Duration::from_millis(500);
    /// What `ready()` may take past the statement timeout, on a machine
    /// that runs other tests at once (the bound itself covers taking a
    /// connection from the pool and the statement).
    const MARGIN: Duration = Duration::from_millis(1000);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_store_on_the_shared_server_is_healthy_and_ready() {
        let schema = Schema::new();
        let layer = AcceptedLayer::new().store(store(&schema).await);
        layer.job_store().health().await.unwrap();
        layer.ready().await.unwrap();
        // Again, on a connection that went back to the pool.
        layer.ready().await.unwrap();
    }

    /// A layer on a store of `pg` (its statements bounded by `TIMEOUT`),
    /// ready.
    async fn ready_layer_on(pg: &PrivatePostgres, schema: &str) -> AcceptedLayer<PostgresStore> {
        let store = PostgresStore::builder(pg.url(schema))
            .statement_timeout(TIMEOUT)
            .build()
            .await
            .unwrap();
        let layer = AcceptedLayer::new().store(store);
        layer.ready().await.unwrap();
        layer
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_store_is_not_ready_while_stopped_and_ready_once_started() {
        let mut pg = PrivatePostgres::start().await;
        let layer = ready_layer_on(&pg, "health").await;

        pg.stop().await;
        for _ in 0..3 {
            let (answer, elapsed) = timed_ready(&layer, Duration::from_secs(30)).await;
            assert!(elapsed <= TIMEOUT + MARGIN, "answered after {elapsed:?}");
            assert_store_not_ready(answer, elapsed);
        }

        pg.spawn().await;
        let took = ready_again(&layer, Duration::from_secs(10)).await;
        assert!(took < Duration::from_secs(10), "ready again after {took:?}");
        drop(layer);
        pg.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_store_is_not_ready_while_frozen() {
        let pg = PrivatePostgres::start().await;
        let layer = ready_layer_on(&pg, "health_frozen").await;

        pg.freeze();
        let (answer, elapsed) = timed_ready(&layer, Duration::from_secs(30)).await;
        assert!(elapsed <= TIMEOUT + MARGIN, "answered after {elapsed:?}");
        assert_store_not_ready(answer, elapsed);
        pg.thaw();
        ready_again(&layer, Duration::from_secs(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_healthz_answers_ok() {
    // The demo as `cargo run --example demo` serves it (see tests/it/demo.rs).
    let (_server, client, layer) = crate::demo::demo(Completion::SeeOther).await;
    let answer = client.get("/healthz").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "ok");
    assert!(layer.job_store().is_empty(), "a probe is never a job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_readyz_answers_ready() {
    let (_server, client, layer) = crate::demo::demo(Completion::SeeOther).await;
    let answer = client.get("/readyz").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "ready");
    assert!(
        answer
            .header("content-type")
            .is_some_and(|v| v.starts_with("text/plain"))
    );
    assert!(layer.job_store().is_empty(), "a probe is never a job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_readyz_answers_503_once_a_shutdown_began_and_healthz_still_200() {
    let (_server, client, layer) = crate::demo::demo(Completion::SeeOther).await;
    let shutdown = begin_shutdown(layer, Duration::from_secs(5)).await;
    let answer = client.get("/readyz").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.body, "not ready: shutting down");
    let alive = client.get("/healthz").await;
    assert_eq!(alive.status, StatusCode::OK, "a draining replica is alive");
    shutdown.await.unwrap();
}

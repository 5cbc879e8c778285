//! `RedisStore` when Redis fails: connections killed, the server down, the
//! server back. These tests run a private `redis-server`
//! ([`PrivateRedis`]), so that killing it disturbs no other test.
#![cfg(feature = "redis")]

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use http::StatusCode;
use tokio::sync::Notify;
use tower_accepted::{AcceptedLayer, store::RedisStore};

use common::private_redis::PrivateRedis;
use common::{HttpClient, serve};

async fn app(redis: &PrivateRedis) -> (common::Server, HttpClient) {
    let store = RedisStore::builder(redis.url())
        .namespace("faults")
        .command_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let app = Router::new()
        .route(
            "/work",
            post(|body: String| async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                body
            }),
        )
        .layer(AcceptedLayer::new().store(store));
    let server = serve(app).await;
    let client = HttpClient::new(&server);
    (server, client)
}

/// Submits until a `202` comes back (a first request after a fault may be
/// the one that finds the connection broken); returns the monitor path.
async fn submit(client: &HttpClient, body: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = client.post("/work", body.to_owned()).await;
        match answer.status {
            StatusCode::ACCEPTED => return answer.location(),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(answer.header("retry-after").is_some());
                assert!(Instant::now() < deadline, "no 202 within 15 s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("unexpected {other}: {:?}", answer.body),
        }
    }
}

async fn result_of(client: &HttpClient, monitor: &str) -> bytes::Bytes {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = client.get(&format!("{monitor}?wait=5")).await;
        if answer.status == StatusCode::SEE_OTHER {
            let result = client.get(&answer.location()).await;
            assert_eq!(result.status, StatusCode::OK);
            return result.body;
        }
        assert!(
            Instant::now() < deadline,
            "no result within 15 s: {} {:?}",
            answer.status,
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_are_made_again_and_nothing_is_lost() {
    let redis = PrivateRedis::start().await;
    let (_server, client) = app(&redis).await;
    let first = submit(&client, "before").await;
    assert_eq!(result_of(&client, &first).await, "before");

    // Drop every connection of the app: commands and pub/sub.
    redis
        .command(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        .await
        .unwrap();
    redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).await.unwrap();

    assert_eq!(result_of(&client, &first).await, "before", "a finished result survives");
    let second = submit(&client, "after").await;
    // The long poll inside `result_of` is woken through the re-made
    // subscription (or, at worst, by the lease-long safety look).
    assert_eq!(result_of(&client, &second).await, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_means_503_never_a_hang_and_back_means_serving() {
    let mut redis = PrivateRedis::start().await;
    let (_server, client) = app(&redis).await;
    let first = submit(&client, "kept").await;
    assert_eq!(result_of(&client, &first).await, "kept");

    redis.kill().await;
    for _ in 0..3 {
        let started = Instant::now();
        let refused = client.post("/work", "lost?").await;
        let problem = refused.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
        assert!(refused.header("retry-after").is_some(), "{problem}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "answered after {:?}",
            started.elapsed()
        );
        let started = Instant::now();
        let poll = client.get(&first).await;
        poll.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "answered after {:?}",
            started.elapsed()
        );
    }

    redis.spawn().await;
    // The finished job was written to the append-only file: still there.
    assert_eq!(result_of(&client, &first).await, "kept");
    let next = submit(&client, "back").await;
    assert_eq!(result_of(&client, &next).await, "back");
}

/// Issue 12: Redis frozen just as the handler returns, for far longer than
/// the few tries `finish` used to get (about 750 ms). The job used to stay
/// `running` for as long as the replica lived (its heartbeat kept renewing
/// the lease, so nobody declared it lost); now `finish` is retried until
/// Redis answers, and the job ends `succeeded` with its result within two
/// leases of the thaw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finish_during_a_freeze_lands_once_redis_is_back() {
    const LEASE: Duration = Duration::from_millis(1000);
    let mut redis = PrivateRedis::start().await;
    let store = RedisStore::builder(redis.url())
        .namespace("frozen")
        .lease(LEASE)
        .command_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let returning = Arc::new(Notify::new());
    let signal = Arc::clone(&returning);
    let app = Router::new()
        .route(
            "/work",
            post(move |body: String| async move {
                signal.notify_one();
                // The freeze lands while the handler returns.
                tokio::time::sleep(Duration::from_millis(100)).await;
                body
            }),
        )
        .layer(AcceptedLayer::new().store(store));
    let server = serve(app).await;
    let client = HttpClient::new(&server);

    let monitor = submit(&client, "replayed").await;
    tokio::time::timeout(Duration::from_secs(10), returning.notified())
        .await
        .expect("the handler runs");
    redis.freeze();
    tokio::time::sleep(Duration::from_secs(5)).await;
    redis.thaw();
    let thawed = Instant::now();

    // A lease for the heartbeat to renew the job's lease (which lapsed
    // during the freeze, as far as Redis can tell): a read before that
    // could rightly declare the job lost.
    tokio::time::sleep(LEASE).await;
    let deadline = thawed + 2 * LEASE + Duration::from_secs(8);
    let doc = loop {
        let answer = client.get(&monitor).await;
        let doc = if answer.status == StatusCode::SEE_OTHER || answer.status == StatusCode::OK {
            answer.json()
        } else {
            serde_json::Value::Null
        };
        if doc["status"] != "running" && !doc.is_null() {
            break doc;
        }
        assert!(
            Instant::now() < deadline,
            "still {} {:?} {:?} after the thaw",
            answer.status,
            answer.body,
            thawed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(result_of(&client, &monitor).await, "replayed");
    redis.kill().await;
}

/// The ids of the pub/sub connections `redis` has (`CLIENT LIST TYPE pubsub`).
async fn pubsub_ids(redis: &PrivateRedis) -> Vec<String> {
    let list = redis.command(&["CLIENT", "LIST", "TYPE", "pubsub"]).await.unwrap();
    let list: String = redis::from_redis_value(list).unwrap();
    list.lines()
        .filter_map(|line| line.split(' ').find_map(|field| field.strip_prefix("id=")))
        .map(str::to_owned)
        .collect()
}

/// Issue 12: the listener finds a connection that stopped answering
/// without closing. A frozen Redis keeps its connections open and answers
/// nothing; thawed, it answers again on them, so a listener that only
/// waited for messages kept its old connection, blind for the whole
/// freeze. The listener pings, takes the silence past its bound for a dead
/// connection and subscribes on a new one: after the thaw, Redis has one
/// subscriber, and not the one it had before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_replaces_a_subscription_that_stops_answering() {
    let redis = PrivateRedis::start().await;
    let _store = RedisStore::builder(redis.url())
        .namespace("liveness")
        .command_timeout(Duration::from_millis(500))
        .pubsub_liveness(Duration::from_millis(100), Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let before = pubsub_ids(&redis).await;
    assert_eq!(before.len(), 1, "one subscriber: {before:?}");
    // Answered pings keep the connection: several intervals pass, and the
    // subscriber is the same.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pubsub_ids(&redis).await, before, "a live subscription is kept");

    // Longer than a ping's interval and bound together.
    redis.freeze();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    redis.thaw();

    let after = common::until_some("a new subscription after the freeze", || async {
        let ids = pubsub_ids(&redis).await;
        if ids.len() == 1 && ids != before {
            Ok(ids)
        } else {
            Err(ids)
        }
    })
    .await;
    assert_ne!(after, before);
}

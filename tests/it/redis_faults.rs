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
/// `running` for as long as the replica lived (its renewals kept the
/// lease, so nobody declared it lost); now `finish` is retried until
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

    // A lease for the renewals to catch up after the thaw (reads declare
    // nothing lost; only a sweep would).
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

/// Issue 12 ("phantom create"): Redis holds its writes (`CLIENT PAUSE
/// WRITE`) three times longer than the store's command timeout, so the
/// create script runs once the pause ends, after the first try's reply
/// timed out. The store used to answer that create with an error (the
/// layer: `503`) and forget the id, leaving a created job nobody ran. Now
/// the create is run again (the script is idempotent for its id) and
/// succeeds; the job is this replica's, with its lease, which the replica
/// renews: two leases later a sweep finds nothing lapsed, and it is still
/// `pending`, not `lost`. A keyed create the same way
/// answers `New`, and a second run with the same key finds that job. And a
/// create that gives up (writes held longer than its tries) leaves no key
/// of its job behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_reply_timed_out_is_tried_again_and_kept() {
    use tower_accepted::store::{CreatedOnce, IdempotencyKey, JobRecord, JobStatus, JobStore, Lookup};
    const LEASE: Duration = Duration::from_millis(1000);
    // Its 200 ms command timeout is the test's point: a renewal that a
    // chaos run's load holds up for longer would fail it, so it takes
    // turns with them.
    let _heavy = crate::common::replica::one_heavy_test_at_a_time().await;
    let mut redis = PrivateRedis::start().await;
    let store = RedisStore::builder(redis.url())
        .namespace("phantom")
        .lease(LEASE)
        .command_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();

    // Loads the create script: a create held by the pause then runs when
    // the pause ends (rather than failing as an unknown script).
    let warm = tower_accepted::store::JobId::new();
    store.create(JobRecord::pending(warm)).await.unwrap();
    assert!(store.delete(warm).await.unwrap());

    let plain = tower_accepted::store::JobId::new();
    redis.command(&["CLIENT", "PAUSE", "600", "WRITE"]).await.unwrap();
    let created = tokio::time::timeout(Duration::from_secs(10), store.create(JobRecord::pending(plain))).await;
    assert!(matches!(created, Ok(Ok(()))), "{created:?}");

    let keyed = tower_accepted::store::JobId::new();
    let key = IdempotencyKey::new(None, "k-1", "print-1");
    redis.command(&["CLIENT", "PAUSE", "600", "WRITE"]).await.unwrap();
    let created = tokio::time::timeout(
        Duration::from_secs(10),
        store.create_once(JobRecord::pending(keyed), key.clone()),
    )
    .await;
    assert!(matches!(created, Ok(Ok(CreatedOnce::New))), "{created:?}");
    let again = store
        .create_once(JobRecord::pending(tower_accepted::store::JobId::new()), key)
        .await
        .unwrap();
    assert!(
        matches!(&again, CreatedOnce::Existing(record) if record.id == keyed),
        "{again:?}"
    );

    // The creator holds both claims and renews them, as the layer does,
    // for two leases: every renewal finds the lease the create took, and a
    // sweep then finds nothing lapsed.
    let claims = vec![
        tower_accepted::store::Claim::first(plain),
        tower_accepted::store::Claim::first(keyed),
    ];
    let until = std::time::Instant::now() + 2 * LEASE;
    while std::time::Instant::now() < until {
        assert_eq!(store.renew(claims.clone()).await.unwrap(), [true, true]);
        tokio::time::sleep(LEASE / 3).await;
    }
    assert_eq!(store.sweep().await.unwrap(), tower_accepted::store::Swept::new(0, 0));
    for id in [plain, keyed] {
        match store.get(id).await.unwrap() {
            Lookup::Found(record) => assert_eq!(record.status, JobStatus::Pending, "{record:?}"),
            other => panic!("{id}: {other:?}"),
        }
        assert!(store.delete(id).await.unwrap());
    }

    // Writes held far longer than the tries span (about 1.2 s here): the
    // create gives up, and its delete, queued behind its tries on the same
    // connection, removes what they created once the pause ends.
    let given_up = tower_accepted::store::JobId::new();
    redis.command(&["CLIENT", "PAUSE", "2500", "WRITE"]).await.unwrap();
    let created = tokio::time::timeout(Duration::from_secs(10), store.create(JobRecord::pending(given_up))).await;
    assert!(matches!(created, Ok(Err(_))), "{created:?}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let left = redis.command(&["KEYS", &format!("*{given_up}*")]).await.unwrap();
    assert_eq!(left, redis::Value::Array(Vec::new()), "a job was left behind");
    redis.kill().await;
}

/// Issue 12 through the layer: a keyed `POST` while Redis is frozen three
/// times longer than the command timeout, then the client's retry with the same
/// key. The retry's job runs to `succeeded`. (It used to be the phantom
/// the first `POST` created before its `503`: `pending`, never run, until
/// declared `lost`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_post_during_a_freeze_then_its_retry_runs_the_job() {
    let mut redis = PrivateRedis::start().await;
    let store = RedisStore::builder(redis.url())
        .namespace("phantom-http")
        .lease(Duration::from_millis(1000))
        .command_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let app = Router::new()
        .route("/work", post(|body: String| async move { body }))
        .layer(AcceptedLayer::new().store(store));
    let server = serve(app).await;
    let client = HttpClient::new(&server);
    let key = [("idempotency-key", "retry-me")];
    // A first job loads the scripts: a create sent during the freeze then
    // runs at the thaw (rather than failing as an unknown script).
    let warm = submit(&client, "warm").await;
    assert_eq!(result_of(&client, &warm).await, "warm");

    // Frozen (`SIGSTOP`) rather than paused: the create reaches the
    // server's socket and runs at the thaw, whatever the client did with
    // its connection meanwhile.
    redis.freeze();
    let (first, ()) = tokio::join!(client.send(http::Method::POST, "/work", &key, "once"), async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        redis.thaw();
    });
    assert!(
        first.status == StatusCode::ACCEPTED || first.status == StatusCode::SERVICE_UNAVAILABLE,
        "{} {:?}",
        first.status,
        first.body
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let retry = client.send(http::Method::POST, "/work", &key, "once").await;
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{:?}", retry.body);
    let monitor = retry.location();
    let deadline = Instant::now() + Duration::from_secs(10);
    let doc = loop {
        let doc = client.get(&monitor).await.json();
        if doc["status"] != "pending" && doc["status"] != "running" {
            break doc;
        }
        assert!(Instant::now() < deadline, "still {doc} after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(result_of(&client, &monitor).await, "once");
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

//! A pending completion callback survives its replica: two `replicas`
//! processes sharing one store (a Redis namespace, or a PostgreSQL schema);
//! the receiver fails the first attempt; the replica that finished the job
//! is killed (SIGKILL) right after it; the other delivers, under the same
//! `webhook-id`, within the claim's hold and the backoff.
#![cfg(all(feature = "callbacks", any(feature = "redis", feature = "postgres")))]

use crate::common;

use std::time::Duration;

use serde_json::json;

use common::http::assert_accepted;
use common::receiver::{Receiver, Reply};
use common::replica::{Completions, Replica, client, one_heavy_test_at_a_time};
use common::wait::until_some;

/// The secret both replicas sign with, as replicas of one application do.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Two replicas with `store_env` (and a 1 s lease, the secret); a job with
/// a callback submitted on the first, which runs it; the first killed
/// after the receiver failed the first attempt; the second delivers.
async fn another_replica_delivers_the_callback_of_a_killed_one(store_env: &[(&str, &str)]) {
    let mut env = vec![("LEASE_MS", "1000"), ("WEBHOOK_SECRET", SECRET)];
    env.extend_from_slice(store_env);
    let completions = Completions::default();
    let mut a = Replica::start(&env, completions.clone()).await;
    let b = Replica::start(&env, completions.clone()).await;
    let receiver = Receiver::start(&[Reply::Status(500)], Reply::Status(200)).await;

    let hook = receiver.url("/hook");
    let answer = client(&a)
        .send(
            http::Method::POST,
            "/echo?delay_ms=100",
            &[("callback-url", &hook)],
            "x",
        )
        .await;
    let monitor = assert_accepted(&answer);
    let id = monitor.rsplit('/').next().unwrap().to_owned();

    let first = receiver.wait_for(1).await;
    // The job ran on `a` (it had runners free). Once `a` recorded the
    // failed first attempt (the receiver's 500), kill it, before it can
    // make the second. (Killed between its POST and the record, the
    // attempt would not count: `b` would make it again after the hold,
    // as attempt 1.)
    assert_eq!(completions.of(&id), [1], "the job ran once");
    until_some("the first attempt recorded", || async {
        let doc = client(&a).get(&monitor).await.json();
        if doc["callback"] == json!({"state": "pending", "attempts": 1}) {
            Ok(())
        } else {
            Err(doc)
        }
    })
    .await;
    a.kill().await;

    // The retry is due 2.5 to 5 s after the first (first retry 5 s); had
    // `a` died before recording the attempt, the hold (2 × 5 s + 5 s)
    // lapses first. `b` polls every second.
    let hooks = until_some("the second attempt, from b", || async {
        let hooks = receiver.hooks();
        if hooks.len() >= 2 { Ok(hooks) } else { Err(hooks.len()) }
    })
    .await;
    assert_eq!(hooks[1].header("webhook-id"), first[0].header("webhook-id"));
    assert_eq!(hooks[1].header("webhook-id"), format!("msg_{id}"));
    assert_eq!(hooks[1].json()["status"], "succeeded");

    let doc = until_some("the delivery recorded", || async {
        let doc = client(&b).get(&monitor).await.json();
        if doc["callback"]["state"] == "delivered" {
            Ok(doc)
        } else {
            Err(doc)
        }
    })
    .await;
    assert_eq!(doc["callback"], json!({"state": "delivered", "attempts": 2}));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.hooks().len(), 2, "delivered once more, not twice");
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_another_replica_delivers_the_callback_of_a_killed_one() {
    let _heavy = one_heavy_test_at_a_time().await;
    let ns = common::redis::namespace();
    let url = common::redis::redis_url();
    let env = [("REDIS_URL", url.as_str()), ("NAMESPACE", ns.as_str())];
    tokio::time::timeout(
        Duration::from_secs(300),
        another_replica_delivers_the_callback_of_a_killed_one(&env),
    )
    .await
    .expect("the test took too long");
    common::redis::assert_every_key_expires(&ns).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_another_replica_delivers_the_callback_of_a_killed_one() {
    let _heavy = one_heavy_test_at_a_time().await;
    // Dropped (with its tables) when the test ends, also when it fails.
    let schema = common::postgres::Schema::new();
    let url = common::postgres::database_url();
    let env = [("DATABASE_URL", url.as_str()), ("SCHEMA", schema.name.as_str())];
    tokio::time::timeout(
        Duration::from_secs(300),
        another_replica_delivers_the_callback_of_a_killed_one(&env),
    )
    .await
    .expect("the test took too long");
}

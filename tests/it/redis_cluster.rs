//! Redis Cluster (issue 12): a private three-master cluster
//! ([`PrivateCluster`]); `RedisStore::cluster_builder` passes the store
//! suite and the expiry suite on it, durable jobs spread between two
//! replicas on it, every key it leaves has a time to live, and namespaces
//! spread over its masters.
#![cfg(feature = "redis")]

use crate::common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::cluster::ClusterClient;

use common::private_cluster::PrivateCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_cluster_serves_three_masters() {
    let began = Instant::now();
    let cluster = PrivateCluster::start().await;
    eprintln!("private cluster {:?} formed in {:?}", cluster.ports(), began.elapsed());

    let client = ClusterClient::builder(cluster.urls()).build().unwrap();
    let mut conn = client.get_async_connection().await.unwrap();

    // Keys of three hash tags, kept, and three that expire.
    let kept = ["{a}x", "{b}x", "{c}x"];
    let expiring = ["{a}y", "{b}y", "{c}y"];
    for key in kept {
        let () = conn.set(key, format!("value of {key}")).await.unwrap();
    }
    for key in expiring {
        let () = redis::cmd("SET")
            .arg(key)
            .arg("soon gone")
            .arg("PX")
            .arg(60_000)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    for key in kept {
        let value: String = conn.get(key).await.unwrap();
        assert_eq!(value, format!("value of {key}"));
    }

    // They live on at least two of the masters.
    let mut nodes = HashSet::new();
    for key in kept {
        let node = cluster.node_of(key).await;
        assert!(
            cluster.ports().contains(&node),
            "{key} on {node}, not one of {:?}",
            cluster.ports()
        );
        nodes.insert(node);
    }
    assert!(nodes.len() >= 2, "the keys {kept:?} all live on {nodes:?}");

    // A script (EVALSHA, loaded on a NOSCRIPT) runs on the node of its key.
    let written: String = redis::Script::new("return redis.call('SET', KEYS[1], ARGV[1])")
        .key("{t}k")
        .arg("v")
        .invoke_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(written, "OK");
    let value: String = conn.get("{t}k").await.unwrap();
    assert_eq!(value, "v");
    let node = cluster.node_of("{t}k").await;
    let mut direct = redis::Client::open(format!("redis://127.0.0.1:{node}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let value: String = direct.get("{t}k").await.unwrap();
    assert_eq!(value, "v", "the script's key is on node {node}, the master of its slot");

    // Only the keys without PX have no time to live.
    let mut expected: Vec<String> = kept.iter().map(ToString::to_string).collect();
    expected.push("{t}k".to_owned());
    expected.sort();
    assert_eq!(cluster.keys_without_ttl("*").await, expected);
    assert_eq!(cluster.keys_without_ttl("{a}*").await, ["{a}x"]);

    drop(conn);
    drop(cluster);
    assert!(began.elapsed() < Duration::from_secs(60), "took {:?}", began.elapsed());
}

/// A store on the private cluster in `ns`.
async fn cluster_store(cluster: &PrivateCluster, ns: &str, lease: Duration) -> tower_accepted::store::RedisStore {
    tower_accepted::store::RedisStore::cluster_builder(cluster.urls())
        .namespace(ns)
        .lease(lease)
        .build()
        .await
        .expect("a store on the private cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_suite_on_a_cluster() {
    let cluster = PrivateCluster::start().await;
    let store = cluster_store(&cluster, "suite", Duration::from_millis(1000)).await;
    tower_accepted::store::suite::run_all_on(std::sync::Arc::new(store)).await;
    assert_eq!(
        cluster.keys_without_ttl("*").await,
        Vec::<String>::new(),
        "every key has a time to live"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_expiry_suite_on_a_cluster() {
    use common::redis::{EXPIRY_TOMBSTONE_TTL, EXPIRY_TTL, expiry_store};

    let cluster = PrivateCluster::start().await;
    let store = expiry_store(
        tower_accepted::store::RedisStore::cluster_builder(cluster.urls()),
        "expiry",
    )
    .await;
    let conn = ClusterClient::builder(cluster.urls())
        .build()
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    let renewer = tokio::spawn(common::redis::renew_every_claim_on(store.clone(), conn));
    tower_accepted::store::suite::expiry(&store, EXPIRY_TTL, EXPIRY_TOMBSTONE_TTL).await;
    renewer.abort();
    assert_eq!(cluster.keys_without_ttl("*").await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_jobs_spread_between_replicas_on_a_cluster_and_every_key_expires() {
    use axum::Router;
    use axum::routing::post;
    use tower_accepted::AcceptedLayer;

    let cluster = PrivateCluster::start().await;
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for (name, max_running) in [("a", 1), ("b", 4)] {
        let store = cluster_store(&cluster, "spread", Duration::from_millis(1500)).await;
        let layer = AcceptedLayer::new().store(store).durable(true).max_running(max_running);
        let held = std::sync::Arc::clone(&gate);
        let app = Router::new()
            .route(
                "/work",
                post(move || async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    name
                }),
            )
            .route("/held", common::gate::held(&held, name))
            .layer(layer.clone());
        layer.run_jobs_with(app.clone());
        let server = common::serve(app).await;
        clients.push(common::HttpClient::new(&server));
        servers.push(server);
    }
    let a = &clients[0];
    let held = common::submit(a, "/held", "").await;
    let mut queued = Vec::new();
    for _ in 0..4 {
        queued.push(common::submit(a, "/work", "").await);
    }
    for monitor in &queued {
        assert_eq!(a.until_done(monitor).await.status_word(), "succeeded", "{monitor}");
        let result = a.get(&format!("{monitor}/result")).await;
        assert_eq!(&result.body[..], b"b", "{monitor} ran on the idle replica");
    }
    gate.add_permits(1);
    assert_eq!(a.until_done(&held).await.status_word(), "succeeded");
    assert_eq!(cluster.keys_without_ttl("*").await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_lives_in_one_slot_and_namespaces_spread_over_masters() {
    use tower_accepted::store::{JobId, JobRecord, JobStore};

    let cluster = PrivateCluster::start().await;
    let mut masters = HashSet::new();
    for n in 0..12 {
        let ns = format!("app-{n}");
        let store = cluster_store(&cluster, &ns, Duration::from_secs(5)).await;
        for _ in 0..3 {
            store
                .create(JobRecord::pending(JobId::new()).with_owner(Some("alice".into())))
                .await
                .unwrap();
        }
        // Every key of the namespace on the master of `{ns}`'s slot.
        let home = cluster.node_of(&format!("{{{ns}}}")).await;
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{home}"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{{{ns}}}*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            keys.len(),
            3 + 1 + 1,
            "three jobs, the lease set and alice's index on one node: {keys:?}"
        );
        masters.insert(home);
    }
    assert!(masters.len() >= 2, "twelve namespaces on one master: {masters:?}");
}

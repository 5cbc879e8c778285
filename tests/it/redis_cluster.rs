//! Redis Cluster: a private three-master cluster ([`PrivateCluster`]) that
//! the cluster client of the `redis` crate talks to, keys spread over its
//! masters, scripts run on the node of their key.
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

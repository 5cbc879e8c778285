//! Replicas as processes (issue 12, "Accepted means done"): three
//! `replicas` examples on a private `redis-server` with an append-only
//! file (and again on a private three-master Redis Cluster), one killed
//! and restarted, one stopped gracefully and restarted,
//! Redis frozen for 5 s; every durable job ends `succeeded`, its result
//! recorded once by the attempt the job names; and a killed replica's
//! jobs that are not durable end `lost` within two leases.

#![cfg(feature = "redis")]

use crate::common;

use std::time::Duration;

use tower_accepted::store::{JobId, JobStatus, RedisStore};

use common::http::assert_accepted;
use common::private_cluster::PrivateCluster;
use common::private_redis::PrivateRedis;
use common::replica::{Completions, Replica, check_every_job_recorded_once, client, spread_echo_jobs, until_record};

const LEASE_MS: u64 = 1000;

/// Every key of the private Redis with its time to live in ms.
async fn keys_without_ttl(redis: &PrivateRedis) -> Vec<String> {
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    let mut without = Vec::new();
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.unwrap();
        if ttl < 0 && ttl != -2 {
            without.push(key);
        }
    }
    without
}

/// Where the replicas keep their jobs: a private Redis, or a private
/// three-master cluster.
enum Backend {
    Single(PrivateRedis),
    Cluster(PrivateCluster),
}

impl Backend {
    /// The replicas' environment that points them at it.
    fn env(&self) -> (&'static str, String) {
        match self {
            Self::Single(redis) => ("REDIS_URL", redis.url()),
            Self::Cluster(cluster) => ("REDIS_CLUSTER_URLS", cluster.urls().join(",")),
        }
    }

    /// A store of the test's own on it, in `ns`.
    async fn store(&self, ns: &str) -> RedisStore {
        let builder = match self {
            Self::Single(redis) => RedisStore::builder(redis.url()),
            Self::Cluster(cluster) => RedisStore::cluster_builder(cluster.urls()),
        };
        builder.namespace(ns).build().await.unwrap()
    }

    /// The lease the replicas run with. On a cluster, a client that lost a
    /// frozen master needs a second or two after it thawed to find it again
    /// (its commands time out, it refreshes the slots and reconnects); a
    /// 1 s lease lapsed meanwhile, once more, and a job killed once and
    /// caught in the freeze ran out of its 3 attempts. The freeze (5 s)
    /// still outlasts the lease.
    fn lease_ms(&self) -> u64 {
        match self {
            Self::Single(_) => LEASE_MS,
            Self::Cluster(_) => 3 * LEASE_MS,
        }
    }

    /// Freezes for `pause` the server that holds `ns` (on a cluster, the
    /// master of its slot).
    async fn freeze_for(&self, ns: &str, pause: Duration) {
        match self {
            Self::Single(redis) => {
                redis.freeze();
                tokio::time::sleep(pause).await;
                redis.thaw();
            }
            Self::Cluster(cluster) => {
                let home = cluster.node_of(&format!("{{{ns}}}")).await;
                cluster.freeze(home);
                tokio::time::sleep(pause).await;
                cluster.thaw(home);
            }
        }
    }

    async fn keys_without_ttl(&self) -> Vec<String> {
        match self {
            Self::Single(redis) => keys_without_ttl(redis).await,
            Self::Cluster(cluster) => cluster.keys_without_ttl("*").await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_run_every_durable_job_once_recorded_through_kills_restarts_and_a_frozen_redis() {
    chaos(Backend::Single(PrivateRedis::start().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_a_three_master_redis_cluster() {
    chaos(Backend::Cluster(PrivateCluster::start().await)).await;
}

/// Three replicas on `backend`, 300 durable jobs, a replica killed and
/// restarted, another stopped gracefully and restarted, the store frozen
/// for 5 s: every job succeeds, its result made by the attempt it names.
async fn chaos(backend: Backend) {
    let _heavy = common::replica::one_heavy_test_at_a_time().await;
    let (target, url) = backend.env();
    let lease = backend.lease_ms().to_string();
    let env = [
        (target, url.as_str()),
        ("NAMESPACE", "chaos"),
        ("LEASE_MS", lease.as_str()),
        ("MAX_RUNNING", "8"),
    ];
    let completions = Completions::default();
    let mut a = Replica::start(&env, completions.clone()).await;
    let mut b = Replica::start(&env, completions.clone()).await;
    let c = Replica::start(&env, completions.clone()).await;

    // 300 durable jobs, spread over the three, each 100 ms to 1.5 s long.
    let jobs = spread_echo_jobs([&a, &b, &c]).await;

    // A replica killed mid-run and started again; another stopped
    // gracefully and started again (a rolling restart); Redis frozen once.
    tokio::time::sleep(Duration::from_millis(800)).await;
    a.kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.restart().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.terminate(Duration::from_secs(30)).await;
    b.restart().await;
    backend.freeze_for("chaos", Duration::from_secs(5)).await;

    let store = backend.store("chaos").await;
    let poller = client(&c);
    let (ran_again, finished) = check_every_job_recorded_once(&store, &poller, &jobs, &completions).await;
    println!("300 durable jobs succeeded; {ran_again} ran again; {finished} handler runs finished");
    assert_eq!(
        backend.keys_without_ttl().await,
        Vec::<String>::new(),
        "every key has a time to live"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_jobs_that_are_not_durable_end_lost_within_two_leases() {
    let redis = PrivateRedis::start().await;
    let url = redis.url();
    let lease = LEASE_MS.to_string();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("NAMESPACE", "lost"),
        ("LEASE_MS", lease.as_str()),
        ("MAX_RUNNING", "4"),
    ];
    let completions = Completions::default();
    let mut a = Replica::start(&env, completions.clone()).await;
    let b = Replica::start(&env, completions.clone()).await;
    // `/fail` is not durable: 4 running and 6 queued on A.
    let mut ids = Vec::new();
    for _ in 0..10 {
        let monitor = assert_accepted(&client(&a).post("/fail?delay_ms=30000", "").await);
        ids.push(monitor.rsplit('/').next().unwrap().parse::<JobId>().unwrap());
    }
    let store = RedisStore::builder(url.as_str())
        .namespace("lost")
        .build()
        .await
        .unwrap();
    until_record(&store, ids[0], Duration::from_secs(20), |r| {
        r.status == JobStatus::Running
    })
    .await;
    a.kill().await;
    let killed_ms = common::redis::now_ms();
    for id in &ids {
        let record = until_record(&store, *id, Duration::from_secs(20), |r| r.status.is_terminal()).await;
        assert_eq!(record.status, JobStatus::Failed, "{record:?}");
        assert_eq!(record.error.as_ref().map(|e| e.code.as_str()), Some("lost"));
        let after = record.updated_at_ms.saturating_sub(killed_ms);
        assert!(after <= 2 * LEASE_MS, "ended lost {after} ms after the kill");
    }
    // B, which swept them, answers for them.
    let doc = client(&b).get(&format!("/jobs/{}", ids[0])).await.json();
    assert_eq!(doc["error"]["code"], "lost", "{doc}");
    assert_eq!(keys_without_ttl(&redis).await, Vec::<String>::new());
}

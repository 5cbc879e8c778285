//! `RedisStore` when Redis fails: connections killed, the server down, the
//! server back. These tests run a private `redis-server` on a free port (with
//! an append-only file, so that a restart keeps what was written), so that
//! killing it disturbs no other test.
#![cfg(feature = "redis")]

use crate::common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use http::StatusCode;
use tokio::process::{Child, Command};
use tower_accepted::{AcceptedLayer, store::RedisStore};

use common::{HttpClient, serve};

/// A `redis-server` of this test's own.
struct PrivateRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("tower-accepted-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Self { port, dir, child: None };
        redis.spawn().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(Instant::now() < deadline, "the private redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    async fn command(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let mut conn = redis::Client::open(self.url())?
            .get_multiplexed_async_connection()
            .await?;
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut conn).await
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

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

//! Event-stream fan-out benchmark: `cargo bench --bench events` (add
//! `--features redis` for the scenario across replicas).
//!
//! One job, `BENCH_STREAMS` (1,000) open event streams of it, and
//! `BENCH_ROUNDS` (20) changes of its message, one at a time: for each
//! change, how long from the handler's `set_message` until each stream has
//! read the event, and until the last one has. Issue 15's condition is the
//! last: a change reaches all 1,000 streams of one replica within 100 ms.
//!
//! Scenarios:
//! - `memory`: the job and its streams on one replica, `MemoryStore`;
//! - `redis` (feature `redis`): the job runs on replica A, its streams are
//!   open on replica B (both in this process, each with its own
//!   `RedisStore` on one namespace at `REDIS_URL`, default
//!   `redis://127.0.0.1:6379`): the change reaches B through Redis pub/sub.
//!
//! The server runs on a runtime of `BENCH_THREADS` (1) worker threads, the
//! streams' readers (plain TCP, no HTTP client library) on a runtime of
//! their own with one thread, as a second process would; both share this
//! machine's two cores. `BENCH_SCENARIOS` picks a subset.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Extension, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};
use tower_accepted::store::JobStore;
use tower_accepted::{AcceptedLayer, Job};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn runtime(threads: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// `POST /job`: a job that sets its message to `round N` each time the
/// bench sends N, and ends when it sends 0.
fn app<St: JobStore>(layer: AcceptedLayer<St>, rounds: watch::Receiver<u32>) -> Router {
    Router::new()
        .route(
            "/job",
            post(move |Extension(job): Extension<Job>| {
                let mut rounds = rounds.clone();
                async move {
                    while rounds.changed().await.is_ok() {
                        let round = *rounds.borrow_and_update();
                        if round == 0 {
                            break;
                        }
                        job.set_message(format!("round {round}"));
                    }
                    "done"
                }
            }),
        )
        .layer(layer.max_event_streams(100_000))
}

/// Serves `app` on 127.0.0.1 from `rt`.
fn serve(rt: &Runtime, app: Router) -> SocketAddr {
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    })
}

/// Submits the job on `addr`; its monitor's path.
async fn submit(addr: SocketAddr) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"POST /job HTTP/1.1\r\nhost: bench\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.expect("read");
    let location = answer
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .expect("a 202 with a Location");
    location.trim().to_owned()
}

/// Opens a stream of `path` on `addr` and reports, for every round, when
/// it read the event of that round.
async fn stream(
    addr: SocketAddr,
    path: String,
    seen: mpsc::UnboundedSender<(u32, Instant)>,
    ready: mpsc::UnboundedSender<()>,
) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path}/events HTTP/1.1\r\nhost: bench\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut next = 1u32;
    let mut announced = false;
    loop {
        let Ok(read) = tcp.read(&mut chunk).await else { return };
        if read == 0 {
            return;
        }
        let now = Instant::now();
        buffer.extend_from_slice(&chunk[..read]);
        if !announced && buffer.windows(6).any(|w| w == b"data: ") {
            announced = true;
            let _ = ready.send(());
        }
        // Every round's event names it in the message.
        loop {
            let marker = format!("\"message\":\"round {next}\"");
            let Some(at) = find(&buffer, marker.as_bytes()) else {
                break;
            };
            let _ = seen.send((next, now));
            buffer.drain(..at + marker.len());
            next += 1;
        }
        if buffer.len() > 64 * 1024 {
            buffer.clear();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What one scenario measured: per round, the delay of every stream.
struct Measured {
    rounds: Vec<Vec<Duration>>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Opens `streams` streams on `stream_addr` of a job submitted on
/// `job_addr`, and changes the job `rounds` times.
fn measure(client: &Runtime, job_addr: SocketAddr, stream_addr: SocketAddr, tx: &watch::Sender<u32>) -> Measured {
    let streams: usize = env("BENCH_STREAMS", 1_000);
    let rounds: u32 = env("BENCH_ROUNDS", 20);
    client.block_on(async {
        let monitor = submit(job_addr).await;
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let (ready_tx, mut ready) = mpsc::unbounded_channel();
        for _ in 0..streams {
            tokio::spawn(stream(stream_addr, monitor.clone(), seen_tx.clone(), ready_tx.clone()));
        }
        for _ in 0..streams {
            tokio::time::timeout(Duration::from_secs(30), ready.recv())
                .await
                .expect("every stream opens within 30 s");
        }
        let mut measured = Measured { rounds: Vec::new() };
        for round in 1..=rounds {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let started = Instant::now();
            tx.send_replace(round);
            let mut delays = Vec::with_capacity(streams);
            while delays.len() < streams {
                let (r, at) = tokio::time::timeout(Duration::from_secs(10), seen.recv())
                    .await
                    .expect("every stream sees the change within 10 s")
                    .expect("the streams go on");
                if r == round {
                    delays.push(at.saturating_duration_since(started));
                }
            }
            delays.sort();
            measured.rounds.push(delays);
        }
        tx.send_replace(0);
        measured
    })
}

fn report(name: &str, measured: &Measured) {
    let mut lasts: Vec<Duration> = measured.rounds.iter().map(|r| *r.last().expect("a stream")).collect();
    let mut all: Vec<Duration> = measured.rounds.iter().flatten().copied().collect();
    lasts.sort();
    all.sort();
    let streams = measured.rounds.first().map_or(0, Vec::len);
    println!(
        "{name:<8} {streams:>6} streams {:>3} changes | every stream: p50 {:>6.1} ms  p99 {:>6.1} ms | the last stream of a change: median {:>6.1} ms  worst {:>6.1} ms",
        measured.rounds.len(),
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99)),
        ms(percentile(&lasts, 0.5)),
        ms(*lasts.last().expect("a round")),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs nothing.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let threads: usize = env("BENCH_THREADS", 1);
    let scenarios: String = env("BENCH_SCENARIOS", "memory,redis".to_owned());
    let server = runtime(threads);
    let client = runtime(1);
    if scenarios.split(',').any(|s| s == "memory") {
        let (tx, rx) = watch::channel(0);
        let addr = serve(&server, app(AcceptedLayer::new(), rx));
        let measured = measure(&client, addr, addr, &tx);
        report("memory", &measured);
    }
    #[cfg(feature = "redis")]
    if scenarios.split(',').any(|s| s == "redis") {
        use tower_accepted::store::RedisStore;
        let url: String = env("REDIS_URL", "redis://127.0.0.1:6379".to_owned());
        let namespace = format!("bench-events-{}", std::process::id());
        let store = || {
            server
                .block_on(RedisStore::builder(url.clone()).namespace(&namespace).build())
                .expect("Redis answers")
        };
        let (tx, rx) = watch::channel(0);
        let a = serve(&server, app(AcceptedLayer::new().store(store()), rx.clone()));
        let b = serve(&server, app(AcceptedLayer::new().store(store()), rx));
        let measured = measure(&client, a, b, &tx);
        report("redis", &measured);
    }
}

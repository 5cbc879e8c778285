//! In-process cost of the layer (criterion): `cargo bench --bench overhead`.
//!
//! - `submit`: a `POST` through `Accepted` (body read, job recorded, task
//!   spawned, `202` and its status document written, and the job itself run
//!   to its end on the same runtime) next to `direct`, the wrapped service
//!   called without the layer, and `floor`, a service that answers a static
//!   `202` with `Location`, `Retry-After` and a small JSON body;
//! - `monitor`: `GET /jobs/{id}` of a running job (`200`) and of a finished
//!   one (`303`); `result`: `GET /jobs/{id}/result` of a finished job (the
//!   stored 100-byte response replayed);
//! - `store`: `MemoryStore` `get`, `insert` (create) and `finish` while it
//!   holds 10³, 10⁵ and 10⁶ jobs: the figures must stay flat (O(1)); what
//!   grows is the cost of cache misses in a larger table, which
//!   `hashmap_get` (a plain `HashMap` of as many entries) shows alone.
//!
//! After criterion's own report a summary prints each figure as a ratio to
//! `floor` (and `submit` to `direct`), measured in the same run.
//!
//! `OVERHEAD_PROFILE=submit|direct|floor|monitor|finished|result` runs that
//! case alone `OVERHEAD_ITERS` times (default 200,000) without criterion,
//! for a profiler: `valgrind --tool=callgrind target/release/deps/overhead-…`;
//! with `OVERHEAD_TELEMETRY=1`, under a `tracing` subscriber at `INFO` and a
//! Prometheus recorder.

#[path = "common/telemetry.rs"]
mod telemetry;

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tower_accepted::store::Claim;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt};
use tower_accepted::{
    AcceptedLayer, RequestBody,
    store::{JobId, JobRecord, JobStore, MemoryStore, Outcome},
};

type Body = Full<Bytes>;

/// The wrapped handler's answer: 100 bytes of JSON.
const RESULT: &[u8; 100] =
    br#"{"report":"done","pages":12,"bytes":123456,"note":"a result of exactly one hundred bytes ........."}"#;

fn runtime() -> Runtime {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => panic!("no runtime: {e}"),
    }
}

fn request(method: &str, uri: &str) -> Request<Body> {
    let body = if method == "POST" {
        Bytes::from_static(br#"{"pages":12,"format":"pdf"}"#)
    } else {
        Bytes::new()
    };
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method.parse().unwrap_or_default();
    *request.uri_mut() = uri.parse().unwrap_or_default();
    let headers = request.headers_mut();
    headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:3000"));
    if method == "POST" {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("27"));
    }
    request
}

/// A static `202` with `Location`, `Retry-After` and a small JSON body.
fn floor_service() -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
    tower::service_fn(|_request: Request<Body>| async {
        let body = r#"{"id":"9b2f3c1e-5d6a-4b7c-8d9e-0f1a2b3c4d5e","status":"pending","created_at":"2026-11-22T10:00:00Z","updated_at":"2026-11-22T10:00:00Z"}"#;
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = StatusCode::ACCEPTED;
        let headers = response.headers_mut();
        headers.insert(
            header::LOCATION,
            HeaderValue::from_static("/jobs/9b2f3c1e-5d6a-4b7c-8d9e-0f1a2b3c4d5e"),
        );
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok::<_, Infallible>(response)
    })
}

/// The wrapped service: answers at once with 100 bytes of JSON.
async fn handler<B>(_request: Request<B>) -> Result<Response<Body>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(RESULT)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// Calls `service` `iters` times; spawned jobs run as they would on a
/// server's runtime (every 64 calls, and all of them before the clock stops).
async fn drive<S, B>(iters: u64, service: &S, make: &dyn Fn() -> Request<Body>) -> Duration
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for i in 0..iters {
        match service.clone().oneshot(make()).await {
            Ok(response) => drop(std::hint::black_box(response)),
            Err(e) => panic!("the service failed: {e:?}"),
        }
        if i % 64 == 63 {
            tokio::task::yield_now().await;
        }
    }
    tokio::task::yield_now().await;
    start.elapsed()
}

/// The services and job ids the cases need, on one runtime.
struct Setup {
    rt: Runtime,
    submit: AcceptedLayer<MemoryStore>,
    routes: AcceptedLayer<MemoryStore>,
    running: String,
    finished: String,
}

impl Setup {
    fn new() -> Self {
        let rt = runtime();
        // Jobs expire quickly, so that the store holds a steady number of
        // them (and expiry's cost is counted) however long criterion runs.
        let submit = AcceptedLayer::new()
            .store(
                MemoryStore::builder()
                    .capacity(1 << 24)
                    .ttl(Duration::from_millis(200))
                    .build(),
            )
            .max_running(1 << 24)
            .max_queued(1 << 24);
        let routes = AcceptedLayer::new();
        let (running, finished) = rt.block_on(async {
            let stuck = routes.layer(tower::service_fn(|request: Request<RequestBody<Body>>| async {
                std::future::pending::<()>().await;
                handler(request).await
            }));
            let quick = routes.layer(tower::service_fn(handler::<RequestBody<Body>>));
            let running = location(stuck.oneshot(request("POST", "/stuck")).await);
            let finished = location(quick.oneshot(request("POST", "/quick")).await);
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            (running, finished)
        });
        Self {
            rt,
            submit,
            routes,
            running,
            finished,
        }
    }

    /// Runs case `name` `iters` times.
    fn run(&self, name: &str, iters: u64) -> Duration {
        let direct = tower::service_fn(handler::<Body>);
        let accepted = self.submit.layer(tower::service_fn(handler::<RequestBody<Body>>));
        let routes = self.routes.layer(tower::service_fn(handler::<RequestBody<Body>>));
        let result = format!("{}/result", self.finished);
        self.rt.block_on(async {
            match name {
                "floor" => drive(iters, &floor_service(), &|| request("POST", "/reports")).await,
                "direct" => drive(iters, &direct, &|| request("POST", "/reports")).await,
                "submit" => drive(iters, &accepted, &|| request("POST", "/reports")).await,
                "monitor" => drive(iters, &routes, &|| request("GET", &self.running)).await,
                "finished" => drive(iters, &routes, &|| request("GET", &self.finished)).await,
                "result" => drive(iters, &routes, &|| request("GET", &result)).await,
                _ => panic!("no case {name}"),
            }
        })
    }
}

fn location<B>(response: Result<Response<B>, Infallible>) -> String {
    match response {
        Ok(response) => response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_default(),
        Err(e) => match e {},
    }
}

fn layer_cases(c: &mut Criterion, setup: &Setup) {
    let mut group = c.benchmark_group("submit");
    for case in ["floor", "direct", "submit"] {
        group.bench_function(case, |b| b.iter_custom(|iters| setup.run(case, iters)));
    }
    group.finish();
    let mut group = c.benchmark_group("monitor");
    for case in ["monitor", "finished"] {
        let name = if case == "monitor" { "running" } else { "finished" };
        group.bench_function(name, |b| b.iter_custom(|iters| setup.run(case, iters)));
    }
    group.finish();
    let mut group = c.benchmark_group("result");
    group.bench_function("replay", |b| b.iter_custom(|iters| setup.run("result", iters)));
    group.finish();
}

/// A response of 100 bytes, as the runner stores it.
fn stored() -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(RESULT));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A store holding `n` pending jobs, and their ids.
fn filled(rt: &Runtime, n: usize) -> (MemoryStore, Vec<JobId>) {
    let store = MemoryStore::builder().capacity(1 << 22).build();
    let ids: Vec<JobId> = (0..n).map(|_| JobId::new()).collect();
    rt.block_on(async {
        for &id in &ids {
            if let Err(e) = store.create(JobRecord::pending(id)).await {
                panic!("cannot fill the store: {e}");
            }
        }
    });
    (store, ids)
}

const BATCH: u64 = 1024;

fn store_cases(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("store");
    for n in [1_000usize, 100_000, 1_000_000] {
        let (store, ids) = filled(&rt, n);
        group.bench_with_input(BenchmarkId::new("get", n), &n, |b, _| {
            let mut next = 0usize;
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        next = (next + 7919) % ids.len();
                        let found = store.get(ids[next]).await;
                        std::hint::black_box(&found);
                    }
                    start.elapsed()
                })
            })
        });
        // New jobs are created in batches, timed, then removed, untimed, so
        // that the store keeps its size.
        group.bench_with_input(BenchmarkId::new("insert", n), &n, |b, _| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let batch = left.min(BATCH);
                        left -= batch;
                        let records: Vec<JobRecord> = (0..batch).map(|_| JobRecord::pending(JobId::new())).collect();
                        let ids: Vec<JobId> = records.iter().map(|r| r.id).collect();
                        let start = Instant::now();
                        for record in records {
                            let _ = std::hint::black_box(store.create(record).await);
                        }
                        total += start.elapsed();
                        for id in ids {
                            let _ = store.delete(id).await;
                        }
                    }
                    total
                })
            })
        });
        group.bench_with_input(BenchmarkId::new("finish", n), &n, |b, _| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let batch = left.min(BATCH);
                        left -= batch;
                        let ids: Vec<JobId> = (0..batch).map(|_| JobId::new()).collect();
                        for &id in &ids {
                            let _ = store.create(JobRecord::pending(id)).await;
                        }
                        let outcomes: Vec<Outcome> = (0..batch).map(|_| Outcome::Response(stored())).collect();
                        let start = Instant::now();
                        for (&id, outcome) in ids.iter().zip(outcomes) {
                            let _ = std::hint::black_box(store.finish(Claim::first(id), outcome).await);
                        }
                        total += start.elapsed();
                        for id in ids {
                            let _ = store.delete(id).await;
                        }
                    }
                    total
                })
            })
        });
        drop(store);
        // The same lookups in a plain `HashMap` of as many 128-byte entries:
        // what memory alone costs at this size (cache and TLB misses).
        let map: std::collections::HashMap<JobId, [u64; 14]> = ids.iter().map(|&id| (id, [0; 14])).collect();
        group.bench_with_input(BenchmarkId::new("hashmap_get", n), &n, |b, _| {
            let mut next = 0usize;
            b.iter(|| {
                next = (next + 7919) % ids.len();
                std::hint::black_box(map.get(&ids[next]).map(|e| e[0]))
            })
        });
    }
    group.finish();
}

/// Where criterion keeps its estimates.
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.ancestors().nth(3).map(PathBuf::from))
    });
    target.unwrap_or_else(|| PathBuf::from("target")).join("criterion")
}

/// The median time of one benchmark, in ns, from criterion's estimates.
fn median_ns(id: &str) -> Option<f64> {
    let path = criterion_dir().join(id).join("new").join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["median"]["point_estimate"].as_f64()
}

fn summary() {
    let Some(floor) = median_ns("submit/floor") else {
        return;
    };
    println!("\nsummary (medians; ratio to submit/floor, a static 202, in this run)");
    println!("{:<22} {:>10} {:>8}", "case", "ns", "× floor");
    let ids = [
        "submit/floor",
        "submit/direct",
        "submit/submit",
        "monitor/running",
        "monitor/finished",
        "result/replay",
    ];
    for id in ids {
        if let Some(ns) = median_ns(id) {
            println!("{id:<22} {ns:>10.0} {:>8.2}", ns / floor);
        }
    }
    if let (Some(submit), Some(direct)) = (median_ns("submit/submit"), median_ns("submit/direct")) {
        println!(
            "a submission costs {:.0} ns more than calling the service directly",
            submit - direct
        );
    }
    for op in ["get", "insert", "finish", "hashmap_get"] {
        let figures: Vec<String> = ["1000", "100000", "1000000"]
            .iter()
            .filter_map(|n| median_ns(&format!("store/{op}/{n}")).map(|ns| format!("{ns:.0} ns")))
            .collect();
        if !figures.is_empty() {
            println!("store {op:<7} at 10³, 10⁵, 10⁶ jobs: {}", figures.join(", "));
        }
    }
}

fn main() {
    if let Ok(case) = std::env::var("OVERHEAD_PROFILE") {
        // As an app in production has them: a subscriber at `INFO`,
        // formatting into a sink, and a Prometheus recorder.
        if std::env::var("OVERHEAD_TELEMETRY").as_deref() == Ok("1") {
            telemetry::install();
        }
        let iters = std::env::var("OVERHEAD_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000u64);
        let setup = Setup::new();
        let time = setup.run(&case, iters);
        println!("{case}: {:.0} ns per call", time.as_nanos() as f64 / iters as f64);
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args();
    let setup = Setup::new();
    layer_cases(&mut c, &setup);
    drop(setup);
    store_cases(&mut c);
    c.final_summary();
    summary();
}

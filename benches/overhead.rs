//! In-process cost of the layer, as ratios to a hand-made `202` measured in
//! the same run: `cargo bench --bench overhead`.
//!
//! - `floor`: a service that answers a static `202` with `Location`,
//!   `Retry-After` and a small JSON body (what any layer must at least do);
//! - `submit`: a `POST` through `Accepted` (body read, job created, task
//!   spawned, status document written);
//! - `poll`: `GET /jobs/{id}` of a pending job.
//!
//! `BENCH_ITERS` sets the iterations per scenario (default 50,000).

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use tower_accepted::{AcceptedLayer, MemoryStore};

type Body = Full<Bytes>;

fn floor_service() -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
    tower::service_fn(|_request: Request<Body>| async {
        let mut response = Response::new(Full::new(Bytes::from_static(br#"{"id":"0","status":"pending"}"#)));
        *response.status_mut() = StatusCode::ACCEPTED;
        let headers = response.headers_mut();
        headers.insert(header::LOCATION, "/jobs/0".parse().unwrap());
        headers.insert(header::RETRY_AFTER, 1.into());
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        Ok::<_, Infallible>(response)
    })
}

fn request(method: &str, uri: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::from_static(b"{\"pages\":1}")))
        .unwrap()
}

async fn measure<S, B>(iters: u32, mut make: impl FnMut() -> Request<Body>, service: S) -> Duration
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    // Warm up allocator and caches.
    for _ in 0..iters / 10 {
        let _ = service.clone().oneshot(make()).await.unwrap();
    }
    let start = Instant::now();
    for i in 0..iters {
        let response = service.clone().oneshot(make()).await.unwrap();
        std::hint::black_box(response);
        if i % 256 == 0 {
            // Let spawned jobs run, as a server's runtime would.
            tokio::task::yield_now().await;
        }
    }
    start.elapsed() / iters
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let iters: u32 = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let floor = measure(iters, || request("POST", "/reports"), floor_service()).await;

    let store = MemoryStore::builder().capacity(10_000_000).build();
    let layer = AcceptedLayer::new()
        .store(store)
        .max_running(1_000_000)
        .max_queued(1_000_000);
    let inner = tower::service_fn(|_request| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
    });
    let accepted = layer.layer(inner);
    let submit = measure(iters, || request("POST", "/reports"), accepted.clone()).await;

    // A job that never ends, to poll.
    let blocked = layer.clone().layer(tower::service_fn(|_request| async {
        std::future::pending::<()>().await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    }));
    let response = blocked.clone().oneshot(request("POST", "/slow")).await.unwrap();
    let location = response.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let poll = measure(iters, || request("GET", &location), accepted).await;

    println!("{:<8} {:>12} {:>8}", "scenario", "ns/request", "ratio");
    for (name, time) in [("floor", floor), ("submit", submit), ("poll", poll)] {
        let ratio = time.as_secs_f64() / floor.as_secs_f64();
        println!("{name:<8} {:>12} {ratio:>8.2}", time.as_nanos());
    }
}

//! The applications under test: the floor, the hand-written alternative and
//! the layer.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{self, HeaderValue};
use axum::http::{Response, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use tower_accepted::{AcceptedLayer, store::JobStore};
use uuid::Uuid;

/// How long the wrapped handler works on a job: `BENCH_JOB_MS`, default
/// 50 ms.
pub fn job() -> Duration {
    static JOB: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *JOB.get_or_init(|| {
        let ms = std::env::var("BENCH_JOB_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50);
        Duration::from_millis(ms)
    })
}

/// The handler's response body: 100 bytes of JSON.
pub const RESULT: &[u8; 100] =
    br#"{"report":"done","pages":12,"bytes":123456,"note":"a result of exactly one hundred bytes ........."}"#;

/// The submitted body.
pub const REQUEST_BODY: &[u8] = br#"{"pages":12,"format":"pdf"}"#;

/// A status document of the same shape and size as the layer's `202` body.
const FLOOR_BODY: &str = r#"{"id":"9b2f3c1e-5d6a-4b7c-8d9e-0f1a2b3c4d5e","status":"pending","created_at":"2026-11-22T10:00:00Z","updated_at":"2026-11-22T10:00:00Z"}"#;

/// `floor`: a static `202` with `Location`, `Retry-After` and a small JSON
/// body; no layer, no job. Nothing that answers a 202 can be cheaper.
pub fn floor() -> Router {
    async fn accepted() -> Response<Body> {
        let mut response = Response::new(Body::from(FLOOR_BODY));
        *response.status_mut() = StatusCode::ACCEPTED;
        let headers = response.headers_mut();
        headers.insert(
            header::LOCATION,
            HeaderValue::from_static("/jobs/9b2f3c1e-5d6a-4b7c-8d9e-0f1a2b3c4d5e"),
        );
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
    Router::new().route("/reports", post(accepted))
}

/// The header in which the handler tells how long it really worked, in µs
/// (tokio's timer wheel has 1 ms ticks: a 50 ms sleep lasts 50 to 52 ms), so
/// that a flow's overhead is its latency less its own job's work.
pub const WORKED: &str = "x-worked-us";

/// The job's work: sleeps `job()`; returns how long that really took.
async fn labour() -> Duration {
    let started = Instant::now();
    tokio::time::sleep(job()).await;
    started.elapsed()
}

/// The wrapped handler: works `job()`, answers `RESULT`.
async fn work(_body: Bytes) -> Response<Body> {
    let worked = labour().await;
    let mut response = Response::new(Body::from(Bytes::from_static(RESULT)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(WORKED, HeaderValue::from(worked.as_micros() as u64));
    response
}

/// A handler that never finishes (in a benchmark's time): its jobs stay
/// `running` or `pending`.
async fn stuck() -> &'static str {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    "late"
}

/// `submit`, `poll`, `flow`: the handlers behind `AcceptedLayer`.
pub fn accepted<St: JobStore>(layer: AcceptedLayer<St>) -> Router {
    Router::new()
        .route("/reports", post(work))
        .route("/stuck", post(stuck))
        .layer(layer)
}

// --- `handwritten`: what a user would write instead of the layer, as well as
// they can: a sharded map of results, `tokio::spawn`, a `202`.

/// Ids are random: hashing only folds their bytes.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(word)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
}

type Shard = Mutex<HashMap<Uuid, Option<Bytes>, BuildHasherDefault<IdHasher>>>;

#[derive(Clone)]
struct Jobs(Arc<[Shard]>);

async fn handwritten_submit(State(jobs): State<Jobs>, body: Bytes) -> Response<Body> {
    let id = Uuid::new_v4();
    let shard = usize::from(id.as_bytes()[0]) % jobs.0.len();
    jobs.0[shard].lock().unwrap_or_else(|e| e.into_inner()).insert(id, None);
    let done = jobs.clone();
    tokio::spawn(async move {
        labour().await;
        drop(body);
        let result = Bytes::from_static(RESULT);
        done.0[shard]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Some(result));
    });
    let mut buf = Uuid::encode_buffer();
    let id = id.hyphenated().encode_lower(&mut buf);
    let mut location = String::with_capacity(42);
    location.push_str("/jobs/");
    location.push_str(id);
    let mut body = String::with_capacity(64);
    body.push_str(r#"{"id":""#);
    body.push_str(id);
    body.push_str(r#"","status":"pending"}"#);
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::ACCEPTED;
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::try_from(location) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `handwritten`: `tokio::spawn` + a sharded map + a `202` handler.
pub fn handwritten() -> Router {
    let shards: Arc<[Shard]> = (0..64).map(|_| Mutex::default()).collect();
    Router::new()
        .route("/reports", post(handwritten_submit))
        .with_state(Jobs(shards))
}

//! Memory per job: `cargo bench --bench memory`.
//!
//! A counting global allocator measures what the store and the runner hold:
//! - bytes per stored finished job (a 100-byte result with one header) with
//!   10⁶ jobs in a [`MemoryStore`], over the 100 bytes of the result itself;
//! - bytes per pending job with 10⁵ jobs submitted through the layer and
//!   running (their tasks parked in the handler): the task, the request it
//!   holds, the job handle and the store's record;
//! - the count of live allocations back near where it started once every
//!   job has expired (the store's clock is tokio's: a paused runtime and
//!   `tokio::time::advance` make an hour pass at once);
//! - allocations per submission run to its end, next to calling the same
//!   service directly.
//!
//! `MEMORY_FINISHED` and `MEMORY_PENDING` change the job counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use tower_accepted::{
    AcceptedLayer, RequestBody,
    store::{Claim, JobId, JobRecord, JobStore, MemoryStore, Outcome},
};

/// Counts the bytes and blocks the program holds.
struct Counting;

static BYTES: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters only observe sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout, as the caller promised.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        BYTES.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as the caller gave it.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Live bytes and blocks now.
fn held() -> (isize, isize) {
    (BYTES.load(Ordering::Relaxed), BLOCKS.load(Ordering::Relaxed))
}

/// The 100-byte result, as the runner stores it (one `Content-Type`).
const RESULT: &[u8; 100] =
    br#"{"report":"done","pages":12,"bytes":123456,"note":"a result of exactly one hundred bytes ........."}"#;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn paused_runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("no runtime: {e}"),
    }
}

/// Bytes per stored finished job, and the live allocations after expiry.
fn finished(n: usize) {
    let rt = paused_runtime();
    rt.block_on(async {
        let store = MemoryStore::builder()
            .capacity(n + 1)
            .ttl(Duration::from_secs(3600))
            .tombstones(0, Duration::ZERO)
            .build();
        // The stored bodies are copies, as a response read from a socket
        // would be: each one is its own allocation.
        let (bytes0, blocks0) = held();
        for _ in 0..n {
            let id = JobId::new();
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let mut response = Response::new(Bytes::copy_from_slice(RESULT));
            *response.status_mut() = StatusCode::OK;
            *response.headers_mut() = headers;
            let created = store.create(JobRecord::pending(id)).await;
            let finished = store.finish(Claim::first(id), Outcome::Response(response)).await;
            assert!(created.is_ok() && matches!(finished, Ok(true)));
        }
        let (bytes1, blocks1) = held();
        let per_job = (bytes1 - bytes0) as f64 / n as f64;
        println!(
            "finished job, {n} stored: {per_job:.0} bytes per job ({:.0} over its 100-byte result), \
             {:.2} allocations per job",
            per_job - RESULT.len() as f64,
            (blocks1 - blocks0) as f64 / n as f64
        );
        tokio::time::advance(Duration::from_secs(3601)).await;
        store.purge_expired();
        let (bytes2, blocks2) = held();
        println!(
            "after expiry: {} live allocations over the start ({} bytes, tables kept for reuse), {} jobs left",
            blocks2 - blocks0,
            bytes2 - bytes0,
            store.len()
        );
        drop(store);
        let (bytes3, blocks3) = held();
        println!(
            "store dropped: {} live allocations over the start ({} bytes)",
            blocks3 - blocks0,
            bytes3 - bytes0
        );
    });
}

/// Bytes per pending job: the layer's task, the request, the handle and the
/// record, with every handler parked.
fn pending(n: usize) {
    let rt = paused_runtime();
    rt.block_on(async {
        // Room for the warm-up's jobs too.
        let room = n + 2000;
        let layer = AcceptedLayer::new()
            .store(MemoryStore::builder().capacity(room).build())
            .max_running(room)
            .max_queued(room);
        let service = layer.layer(tower::service_fn(|_request: Request<RequestBody<Full<Bytes>>>| async {
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }));
        let request = || {
            let mut request = Request::new(Full::new(Bytes::from_static(br#"{"pages":12,"format":"pdf"}"#)));
            *request.method_mut() = http::Method::POST;
            *request.uri_mut() = http::Uri::from_static("/reports");
            let headers = request.headers_mut();
            headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:3000"));
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("27"));
            request
        };
        // Warm up: the runtime's and the store's first allocations.
        for _ in 0..1000 {
            let _ = service.clone().oneshot(request()).await;
        }
        tokio::task::yield_now().await;
        let (bytes0, blocks0) = held();
        for i in 0..n {
            match service.clone().oneshot(request()).await {
                Ok(response) if response.status() == StatusCode::ACCEPTED => {}
                _ => panic!("submission {i} was not accepted"),
            }
            if i % 1024 == 0 {
                tokio::task::yield_now().await;
            }
        }
        // Every task runs to its handler's `pending`.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        let (bytes1, blocks1) = held();
        println!(
            "pending job, {n} running: {:.0} bytes per job, {:.2} allocations per job \
             (request: 3 headers and a 27-byte body)",
            (bytes1 - bytes0) as f64 / n as f64,
            (blocks1 - blocks0) as f64 / n as f64
        );
        let ended = layer.shutdown(Duration::ZERO).await;
        // What the requests themselves weigh (headers, extensions, body),
        // which the handlers hold while they run.
        let (bytes2, _) = held();
        let requests: Vec<_> = (0..n).map(|_| request()).collect();
        let (bytes3, _) = held();
        let per_request = (bytes3 - bytes2) as f64 / n as f64 - std::mem::size_of::<Request<Full<Bytes>>>() as f64;
        drop(requests);
        println!(
            "  of which the request the handler holds: {per_request:.0} bytes on the heap; \
             the layer's own share: {:.0} bytes per pending job ({ended} ended by the shutdown)",
            (bytes1 - bytes0) as f64 / n as f64 - per_request
        );
    });
}

/// The wrapped service: a 100-byte answer at once.
async fn answer<B>(_request: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(RESULT)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// Allocations per submission run to its end (a 100-byte answer at once),
/// and per call of the same service without the layer.
fn allocations_per_job(n: usize) {
    let rt = paused_runtime();
    rt.block_on(async {
        let layer = AcceptedLayer::new()
            .store(MemoryStore::builder().capacity(2 * n + 2000).build())
            .max_running(2 * n)
            .max_queued(2 * n);
        let layered = layer.layer(tower::service_fn(answer::<RequestBody<Full<Bytes>>>));
        let direct = tower::service_fn(answer::<Full<Bytes>>);
        let request = || {
            let mut request = Request::new(Full::new(Bytes::from_static(br#"{"pages":12,"format":"pdf"}"#)));
            *request.method_mut() = http::Method::POST;
            *request.uri_mut() = http::Uri::from_static("/reports");
            request
        };
        let mut counts = [0f64; 2];
        for (round, count) in counts.iter_mut().enumerate() {
            // A warm-up batch, then the counted one.
            for counted in [false, true] {
                let before = ALLOCATIONS.load(Ordering::Relaxed);
                for _ in 0..n {
                    if round == 0 {
                        let _ = direct.oneshot(request()).await;
                    } else {
                        let _ = layered.clone().oneshot(request()).await;
                    }
                }
                // Every job runs to its end.
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
                if counted {
                    *count = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64;
                }
            }
        }
        println!(
            "allocations per submission run to its end: {:.1} (the service called directly: {:.1})",
            counts[1], counts[0]
        );
    });
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let finished_jobs = env("MEMORY_FINISHED", 1_000_000);
    let pending_jobs = env("MEMORY_PENDING", 100_000);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    finished(finished_jobs);
    pending(pending_jobs);
    allocations_per_job(10_000);
    println!("{} allocations in all", ALLOCATIONS.load(Ordering::Relaxed) - before);
}

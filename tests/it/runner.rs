//! The runner (DESIGN.md §1–3): panics, service errors, timeouts, result
//! limits, cancellation, body limits, capacity, load, graceful shutdown and
//! progress — over real HTTP where the behaviour is about HTTP.

use crate::common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Extension, Router};
use bytes::Bytes;
use common::{Answer, HttpClient, serve};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tower::{Layer, ServiceExt, service_fn};
use tower_accepted::{AcceptedLayer, BoxError, Job, RequestBody};

/// Generous bound for anything that should happen "soon".
const SOON: Duration = Duration::from_secs(10);

/// What handlers report to the test.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// The handler started, as job `id`.
    Started(String),
    /// The handler's future was dropped (its drop guard ran).
    Dropped(String),
    /// The job's `cancelled()` signal fired.
    Cancelled(String),
    /// The handler returned.
    Finished(String),
}

/// The receiving end of the handlers' events, remembering every one seen.
struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
    seen: Vec<Event>,
}

impl Events {
    fn drain(&mut self) {
        while let Ok(event) = self.rx.try_recv() {
            self.seen.push(event);
        }
    }

    /// Whether `event` has been reported already (without waiting).
    fn has(&mut self, event: &Event) -> bool {
        self.drain();
        self.seen.contains(event)
    }

    /// Waits (up to [`SOON`]) for `event`.
    async fn wait_for(&mut self, event: Event) {
        let deadline = tokio::time::Instant::now() + SOON;
        while !self.has(&event) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(e)) => self.seen.push(e),
                Ok(None) => panic!("the event channel closed while waiting for {event:?}"),
                Err(_) => panic!("no {event:?} within {SOON:?}; seen {:?}", self.seen),
            }
        }
    }
}

/// What the test hands its handlers.
#[derive(Clone)]
struct Ctx {
    events: mpsc::UnboundedSender<Event>,
    /// Gated handlers take a permit of this before they answer.
    gate: Arc<Semaphore>,
    /// How many times a handler was called at all.
    calls: Arc<AtomicUsize>,
}

fn ctx() -> (Ctx, Events) {
    let (events, rx) = mpsc::unbounded_channel();
    let ctx = Ctx {
        events,
        gate: Arc::new(Semaphore::new(0)),
        calls: Arc::default(),
    };
    (ctx, Events { rx, seen: Vec::new() })
}

/// Reports [`Event::Dropped`] when the handler's future is dropped, and
/// watches the job's `cancelled()` signal from a task of its own.
struct DropGuard {
    events: mpsc::UnboundedSender<Event>,
    id: String,
}

impl DropGuard {
    fn new(ctx: &Ctx, job: &Job) -> Self {
        let id = job.id().to_string();
        let (watched, events) = (job.clone(), ctx.events.clone());
        tokio::spawn(async move {
            watched.cancelled().await;
            let _ = events.send(Event::Cancelled(watched.id().to_string()));
        });
        let _ = ctx.events.send(Event::Started(id.clone()));
        Self {
            events: ctx.events.clone(),
            id,
        }
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        let _ = self.events.send(Event::Dropped(self.id.clone()));
    }
}

/// Sleeps for a minute: only a timeout, a cancel or a shutdown ends it.
async fn stuck(State(ctx): State<Ctx>, Extension(job): Extension<Job>) -> &'static str {
    ctx.calls.fetch_add(1, Ordering::SeqCst);
    let _guard = DropGuard::new(&ctx, &job);
    tokio::time::sleep(Duration::from_secs(60)).await;
    "too late"
}

/// Waits for a permit of the gate, then answers with the request body.
async fn gated(State(ctx): State<Ctx>, Extension(job): Extension<Job>, body: Bytes) -> String {
    ctx.calls.fetch_add(1, Ordering::SeqCst);
    let guard = DropGuard::new(&ctx, &job);
    ctx.gate.acquire().await.unwrap().forget();
    let _ = ctx.events.send(Event::Finished(guard.id.clone()));
    format!("gated: {}", String::from_utf8_lossy(&body))
}

/// Answers at once with the request body.
async fn echo(State(ctx): State<Ctx>, body: Bytes) -> Bytes {
    ctx.calls.fetch_add(1, Ordering::SeqCst);
    body
}

/// An app with the runner's test handlers behind `layer`.
fn app<St: tower_accepted::store::JobStore>(ctx: &Ctx, layer: &AcceptedLayer<St>) -> Router {
    Router::new()
        .route("/stuck", post(stuck))
        .route("/gated", post(gated))
        .route("/echo", post(echo))
        .layer(layer.clone())
        .with_state(ctx.clone())
}

/// The id at the end of a monitor path.
fn id_of(monitor: &str) -> String {
    monitor.rsplit('/').next().unwrap().to_owned()
}

/// Submits a job and checks the `202`; returns its monitor path.
async fn submit(client: &HttpClient, path: &str, body: impl Into<Bytes>) -> String {
    let answer = client.post(path, body).await;
    assert_accepted(&answer)
}

/// Asserts a `202` (see [`common::assert_accepted`]) for a job under `/jobs/`.
fn assert_accepted(answer: &Answer) -> String {
    let monitor = common::assert_accepted(answer);
    assert!(monitor.starts_with("/jobs/"), "{monitor}");
    monitor
}

/// The status document of a monitor answer that has no stored response,
/// asserting `200` and the status.
fn doc_with_status(answer: &Answer, status: &str) -> serde_json::Value {
    assert_eq!(answer.status, StatusCode::OK, "body: {:?}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let doc = answer.json();
    assert_eq!(doc["status"], status, "{doc}");
    doc
}

/// A failed job without a response: the monitor's document and the result
/// route's problem.
async fn assert_failed(client: &HttpClient, monitor: &str, code: &str, result_status: StatusCode) {
    let done = client.until_done(monitor).await;
    let doc = doc_with_status(&done, "failed");
    assert_eq!(doc["error"]["code"], code, "{doc}");
    assert!(doc["error"]["message"].is_string(), "{doc}");
    assert!(
        doc.get("result").is_none() && doc.get("result_status").is_none(),
        "{doc}"
    );
    assert!(done.header("location").is_none());
    let problem = client
        .get(&format!("{monitor}/result"))
        .await
        .assert_problem(result_status);
    assert_eq!(problem["code"], code, "{problem}");
}

#[tokio::test]
async fn a_panic_fails_the_job_and_the_server_goes_on() {
    async fn panics() -> &'static str {
        panic!("secret-payload: the handler blew up")
    }
    let (ctx, _events) = ctx();
    let layer = AcceptedLayer::new();
    let app = Router::new()
        .route("/panics", post(panics))
        .route("/echo", post(echo))
        .layer(layer.clone())
        .with_state(ctx.clone());
    let server = serve(app).await;
    let client = HttpClient::new(&server);

    let monitor = submit(&client, "/panics", "x").await;
    assert_failed(&client, &monitor, "panicked", StatusCode::INTERNAL_SERVER_ERROR).await;
    // Nothing of the panic leaks by default.
    let done = client.get(&monitor).await;
    assert!(
        !String::from_utf8_lossy(&done.body).contains("secret-payload"),
        "{:?}",
        done.body
    );
    let result = client.get(&format!("{monitor}/result")).await;
    assert!(
        !String::from_utf8_lossy(&result.body).contains("secret-payload"),
        "{:?}",
        result.body
    );

    // The server keeps serving, jobs and all.
    let monitor = submit(&client, "/echo", "after the panic").await;
    let done = client.until_done(&monitor).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.json()["status"], "succeeded");
    assert_eq!(client.get(&done.location()).await.body, "after the panic");
    // And a second panic is handled the same way.
    let monitor = submit(&client, "/panics", "y").await;
    assert_failed(&client, &monitor, "panicked", StatusCode::INTERNAL_SERVER_ERROR).await;
}

/// Sends `request` to a clone of `service` in-process and reads the answer
/// whole.
async fn call<S, B>(service: &S, request: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes)
where
    S: tower::Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let response = service.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, body.collect().await.unwrap().to_bytes())
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).body(Full::default()).unwrap()
}

#[tokio::test]
async fn a_service_error_fails_the_job() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let inner = service_fn(move |request: Request<RequestBody<Full<Bytes>>>| {
        let calls = Arc::clone(&counted);
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let body = request.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "payload");
            Err::<Response<Full<Bytes>>, BoxError>("boom: internal detail".into())
        }
    });
    let layer = AcceptedLayer::new();
    let service = layer.layer(inner);

    let request = Request::post("/work").body(Full::new(Bytes::from("payload"))).unwrap();
    let (status, headers, body) = call(&service, request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body:?}");
    let monitor = headers["location"].to_str().unwrap().to_owned();

    let (status, _, body) = call(&service, get(&format!("{monitor}?wait=5"))).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(doc["error"]["code"], "error", "{doc}");
    assert!(!doc.to_string().contains("internal detail"), "{doc}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let (status, headers, body) = call(&service, get(&format!("{monitor}/result"))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(headers["content-type"], "application/problem+json");
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["code"], "error", "{problem}");
    assert_eq!(problem["status"], 500);
}

#[tokio::test]
async fn a_timeout_fails_the_job_drops_the_handler_and_signals_cancellation() {
    let (ctx, mut events) = ctx();
    let layer = AcceptedLayer::new().timeout(Duration::from_millis(200));
    let server = serve(app(&ctx, &layer)).await;
    let client = HttpClient::new(&server);

    let monitor = submit(&client, "/stuck", "").await;
    let id = id_of(&monitor);
    events.wait_for(Event::Started(id.clone())).await;
    // When it ends is tested on the paused clock, below.
    assert_failed(&client, &monitor, "timeout", StatusCode::GATEWAY_TIMEOUT).await;
    // The handler's future is gone before the job is seen as ended.
    assert!(events.has(&Event::Dropped(id.clone())), "seen {:?}", events.seen);
    events.wait_for(Event::Cancelled(id.clone())).await;
    assert!(!events.has(&Event::Finished(id)));
}

/// The timeout's timing, on tokio's paused clock and in process: the job
/// runs until exactly the configured timeout after its handler started,
/// then ends `failed` with `timeout`, its handler dropped and its
/// cancellation signalled.
#[tokio::test(start_paused = true)]
async fn a_timeout_ends_the_job_exactly_when_it_is_due() {
    use common::oneshot::{assert_took, call};
    use http::Method;

    const TIMEOUT: Duration = Duration::from_millis(200);
    let (ctx, mut events) = ctx();
    let app = app(&ctx, &AcceptedLayer::new().timeout(TIMEOUT));
    let (accepted, _) = call(&app, Method::POST, "/stuck", &[]).await;
    let monitor = assert_accepted(&accepted);
    let id = id_of(&monitor);
    events.wait_for(Event::Started(id.clone())).await;
    let started = tokio::time::Instant::now();

    // A millisecond before the timeout, the job still runs.
    tokio::time::sleep_until(started + TIMEOUT - Duration::from_millis(1)).await;
    let (answer, _) = call(&app, Method::GET, &monitor, &[]).await;
    doc_with_status(&answer, "running");
    assert!(!events.has(&Event::Dropped(id.clone())), "seen {:?}", events.seen);
    assert!(!events.has(&Event::Cancelled(id.clone())), "seen {:?}", events.seen);

    // A long poll from there answers when the job ends: at the timeout.
    let (done, _) = call(&app, Method::GET, &format!("{monitor}?wait=5"), &[]).await;
    assert_took(started.elapsed(), TIMEOUT, "the job's end");
    let doc = doc_with_status(&done, "failed");
    assert_eq!(doc["error"]["code"], "timeout", "{doc}");
    assert!(doc["error"]["message"].is_string(), "{doc}");
    assert!(
        doc.get("result").is_none() && doc.get("result_status").is_none(),
        "{doc}"
    );
    assert!(done.header("location").is_none());
    let (result, _) = call(&app, Method::GET, &format!("{monitor}/result"), &[]).await;
    let problem = result.assert_problem(StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(problem["code"], "timeout", "{problem}");
    // The handler's future is gone before the job is seen as ended.
    assert!(events.has(&Event::Dropped(id.clone())), "seen {:?}", events.seen);
    events.wait_for(Event::Cancelled(id.clone())).await;
    assert!(!events.has(&Event::Finished(id)));
}

#[tokio::test]
async fn a_result_over_the_limit_fails_the_job() {
    async fn sized(body: Bytes) -> Vec<u8> {
        let size: usize = std::str::from_utf8(&body).unwrap().parse().unwrap();
        vec![b'r'; size]
    }
    let layer = AcceptedLayer::new().max_result_size(1024);
    let server = serve(Router::new().route("/sized", post(sized)).layer(layer.clone())).await;
    let client = HttpClient::new(&server);

    let too_large = submit(&client, "/sized", "1025").await;
    assert_failed(
        &client,
        &too_large,
        "result_too_large",
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    let much_too_large = submit(&client, "/sized", "100000").await;
    assert_failed(
        &client,
        &much_too_large,
        "result_too_large",
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;

    // Exactly at the limit is fine.
    let fits = submit(&client, "/sized", "1024").await;
    let done = client.until_done(&fits).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let result = client.get(&done.location()).await;
    assert_eq!(result.status, StatusCode::OK);
    assert_eq!(result.body.len(), 1024);
}

#[tokio::test]
async fn delete_cancels_a_running_job() {
    let (ctx, mut events) = ctx();
    let layer = AcceptedLayer::new();
    let server = serve(app(&ctx, &layer)).await;
    let client = HttpClient::new(&server);

    let monitor = submit(&client, "/stuck", "").await;
    let id = id_of(&monitor);
    events.wait_for(Event::Started(id.clone())).await;
    doc_with_status(&client.get(&monitor).await, "running");

    let deleted = client.delete(&monitor).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "body: {:?}", deleted.body);
    events.wait_for(Event::Dropped(id.clone())).await;
    events.wait_for(Event::Cancelled(id.clone())).await;

    let doc = doc_with_status(&client.get(&monitor).await, "canceled");
    assert!(doc.get("result").is_none(), "{doc}");
    client
        .get(&format!("{monitor}/result"))
        .await
        .assert_problem(StatusCode::CONFLICT);
    // The record stays (canceled) until it expires.
    assert_eq!(layer.job_store().len(), 1);
    assert!(!events.has(&Event::Finished(id)));
}

fn problem_doc(status: StatusCode, head: &str, body: &Bytes, expected: StatusCode) -> serde_json::Value {
    assert_eq!(status, expected, "{head}{body:?}");
    assert!(head.contains("content-type: application/problem+json"), "{head}");
    let doc: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(doc["status"], expected.as_u16(), "{doc}");
    assert!(doc["detail"].is_string() && doc["title"].is_string(), "{doc}");
    doc
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_no_job() {
    let (ctx, _events) = ctx();
    let layer = AcceptedLayer::new().max_body_size(1000);
    let server = serve(app(&ctx, &layer)).await;
    let client = HttpClient::new(&server);

    // A whole body of 2,000 bytes (with its Content-Length).
    let answer = client.post("/echo", vec![b'a'; 2000]).await;
    answer.assert_problem(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(layer.job_store().len(), 0);

    // A chunked body without a declared length, 2,000 bytes in 4 chunks.
    let chunk = format!("1f4\r\n{}\r\n", "b".repeat(500));
    let mut chunked = b"POST /echo HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(chunk.as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, head, body) = common::tcp::raw_exchange(server.addr, &[&chunked], Duration::ZERO).await;
    problem_doc(status, &head, &body, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(layer.job_store().len(), 0);

    // A declared Content-Length over the limit is refused before any of the
    // body is sent.
    let head_only = b"POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: 5000\r\n\r\n";
    let (status, head, body) = common::tcp::raw_exchange(server.addr, &[head_only], Duration::ZERO).await;
    problem_doc(status, &head, &body, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(layer.job_store().len(), 0);
    assert_eq!(ctx.calls.load(Ordering::SeqCst), 0, "the handler never ran");

    // At the limit, a job.
    let monitor = submit(&client, "/echo", vec![b'c'; 1000]).await;
    assert_eq!(layer.job_store().len(), 1);
    let done = client.until_done(&monitor).await;
    assert_eq!(client.get(&done.location()).await.body.len(), 1000);
}

#[tokio::test]
async fn a_slow_body_gets_408_and_no_job() {
    let (ctx, _events) = ctx();
    let layer = AcceptedLayer::new().body_timeout(Duration::from_millis(200));
    let server = serve(app(&ctx, &layer)).await;

    let head = b"POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: 100\r\n\r\n";
    let part = [b'd'; 10];
    let started = Instant::now();
    // The head and 10 of the 100 bytes, then nothing.
    let (status, head, body) = common::tcp::raw_exchange(server.addr, &[head, &part], Duration::from_millis(20)).await;
    problem_doc(status, &head, &body, StatusCode::REQUEST_TIMEOUT);
    assert!(started.elapsed() < SOON);
    assert_eq!(layer.job_store().len(), 0);
    assert_eq!(ctx.calls.load(Ordering::SeqCst), 0, "the handler never ran");
}

#[tokio::test]
async fn capacity_is_bounded_by_running_and_queued_limits() {
    let (ctx, mut events) = ctx();
    let layer = AcceptedLayer::new().max_running(1).max_queued(1);
    let server = serve(app(&ctx, &layer)).await;
    let client = HttpClient::new(&server);

    let first = submit(&client, "/gated", "first").await;
    events.wait_for(Event::Started(id_of(&first))).await;
    doc_with_status(&client.get(&first).await, "running");

    let second = submit(&client, "/gated", "second").await;
    let doc = doc_with_status(&client.get(&second).await, "pending");
    assert!(doc.get("error").is_none(), "{doc}");
    let pending = client.get(&second).await;
    assert!(pending.header("retry-after").is_some());
    assert!(
        !events.has(&Event::Started(id_of(&second))),
        "the second job waits for a runner"
    );

    let third = client.post("/gated", "third").await;
    third.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    let retry: u64 = third.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!(retry >= 1);
    assert_eq!(layer.job_store().len(), 2, "no job for the refused submission");

    // Let both finish.
    ctx.gate.add_permits(2);
    for (monitor, body) in [(&first, "gated: first"), (&second, "gated: second")] {
        let done = client.until_done(monitor).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{:?}", done.body);
        assert_eq!(done.json()["status"], "succeeded");
        assert_eq!(client.get(&done.location()).await.body, body);
    }
    assert_eq!(ctx.calls.load(Ordering::SeqCst), 2);

    // There is room again.
    let fourth = submit(&client, "/gated", "fourth").await;
    ctx.gate.add_permits(1);
    let done = client.until_done(&fourth).await;
    assert_eq!(client.get(&done.location()).await.body, "gated: fourth");
}

/// 1,000 jobs in flight at once, none lost: all accepted before any may end,
/// never more than `max_running` handlers at once and that limit reached,
/// each with its own id and its own result.
///
/// The requests go over 32 keep-alive connections (32 clients, each with
/// its own pool and one request at a time), not one per job: 1,000 sockets
/// in one process come close to the common limit of 1,024 open files.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_jobs_all_finish_with_their_own_result() {
    const JOBS: usize = 1000;
    const CONNECTIONS: usize = 32;
    const MAX_RUNNING: usize = 64;
    /// Handlers running now, and the most seen at once.
    static RUNNING: AtomicUsize = AtomicUsize::new(0);
    static MOST: AtomicUsize = AtomicUsize::new(0);
    /// Handlers wait until the test opens this gate: no job can end before
    /// all 1,000 are accepted.
    async fn work(State(open): State<tokio::sync::watch::Receiver<bool>>, body: Bytes) -> String {
        let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
        MOST.fetch_max(now, Ordering::SeqCst);
        let n: u64 = std::str::from_utf8(&body)
            .unwrap()
            .trim_start_matches("request-")
            .parse()
            .unwrap();
        let mut open = open;
        open.wait_for(|open| *open).await.expect("the gate");
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        format!("result for request-{n}")
    }
    let (gate, open) = tokio::sync::watch::channel(false);
    let layer = AcceptedLayer::new().max_running(MAX_RUNNING).max_queued(JOBS);
    let app = Router::new()
        .route("/work", post(work))
        .layer(layer.clone())
        .with_state(open);
    let server = serve(app).await;
    // Each worker takes the jobs `w, w + 32, …` on a connection of its own.
    let clients: Vec<HttpClient> = (0..CONNECTIONS).map(|_| HttpClient::at(server.addr)).collect();
    let jobs_of = |w: usize| (w..JOBS).step_by(CONNECTIONS);

    let submissions: Vec<_> = (0..CONNECTIONS)
        .map(|w| {
            let client = clients[w].clone();
            tokio::spawn(async move {
                let mut monitors = Vec::new();
                for i in jobs_of(w) {
                    monitors.push((i, submit(&client, "/work", format!("request-{i}")).await));
                }
                monitors
            })
        })
        .collect();
    let mut monitors = Vec::with_capacity(JOBS);
    for submission in submissions {
        monitors.extend(submission.await.unwrap());
    }
    let unique: HashSet<_> = monitors.iter().map(|(_, monitor)| monitor).collect();
    assert_eq!(unique.len(), JOBS, "every job has its own id");
    assert_eq!(layer.job_store().len(), JOBS);
    // All 1,000 are in flight: as many running as allowed, the rest queued.
    common::until("max_running handlers running", || {
        RUNNING.load(Ordering::SeqCst) == MAX_RUNNING
    })
    .await;
    // Only now may any job end.
    gate.send(true).unwrap();

    let polls: Vec<_> = (0..CONNECTIONS)
        .map(|w| {
            let client = clients[w].clone();
            let mine: Vec<_> = monitors.iter().filter(|(i, _)| i % CONNECTIONS == w).cloned().collect();
            tokio::spawn(async move {
                for (i, monitor) in mine {
                    let done = client.until_done(&monitor).await;
                    assert_eq!(done.status, StatusCode::SEE_OTHER, "job {i}: {:?}", done.body);
                    assert_eq!(done.json()["status"], "succeeded", "job {i}");
                    let result = client.get(&done.location()).await;
                    assert_eq!(result.status, StatusCode::OK, "job {i}");
                    assert_eq!(result.body, format!("result for request-{i}"), "job {i}");
                }
            })
        })
        .collect();
    for poll in polls {
        poll.await.unwrap();
    }
    assert_eq!(layer.job_store().len(), JOBS, "none lost");
    let most = MOST.load(Ordering::SeqCst);
    assert_eq!(
        most, MAX_RUNNING,
        "{most} handlers ran at once; the limit is {MAX_RUNNING}"
    );
    assert_eq!(RUNNING.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn graceful_shutdown_lets_jobs_finish_then_ends_the_rest() {
    let (ctx, mut events) = ctx();
    let layer = AcceptedLayer::new();
    let server = serve(app(&ctx, &layer)).await;
    let client = HttpClient::new(&server);

    let quick = submit(&client, "/gated", "quick").await;
    let stuck = submit(&client, "/stuck", "").await;
    events.wait_for(Event::Started(id_of(&quick))).await;
    events.wait_for(Event::Started(id_of(&stuck))).await;

    let deadline = Duration::from_secs(3);
    let shutdown = common::shutdown::begin_shutdown(layer.clone(), deadline).await;

    // New submissions are refused at once, without a job.
    let refused = client.post("/echo", "too late").await;
    refused.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.header("retry-after").is_some());
    assert!(!shutdown.is_finished(), "the refusal came before the deadline");
    assert_eq!(layer.job_store().len(), 2);

    // A job that finishes within the deadline succeeds.
    ctx.gate.add_permits(1);
    let done = client.until_done(&quick).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{:?}", done.body);
    assert_eq!(done.json()["status"], "succeeded");

    // The one still running at the deadline is ended.
    let ended = tokio::time::timeout(deadline + SOON, shutdown)
        .await
        .expect("shutdown resolves after its deadline")
        .unwrap();
    assert_eq!(ended, 1, "one job was ended by the shutdown");
    let stuck_id = id_of(&stuck);
    assert!(
        events.has(&Event::Dropped(stuck_id.clone())),
        "the stuck handler was dropped: {:?}",
        events.seen
    );
    events.wait_for(Event::Cancelled(stuck_id.clone())).await;
    assert!(!events.has(&Event::Finished(stuck_id)));

    // Job routes keep answering.
    assert_failed(&client, &stuck, "shutdown", StatusCode::INTERNAL_SERVER_ERROR).await;
    let done = client.get(&quick).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(client.get(&done.location()).await.body, "gated: quick");
    // And submissions stay refused.
    client
        .post("/echo", "still too late")
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ctx.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn progress_and_message_show_in_the_monitor() {
    async fn reporting(State(ctx): State<Ctx>, Extension(job): Extension<Job>) -> &'static str {
        job.set_progress(0.5);
        job.set_message("half");
        let _ = ctx.events.send(Event::Started(job.id().to_string()));
        ctx.gate.acquire().await.unwrap().forget();
        job.set_progress(1.0);
        job.set_message("all done");
        "reported"
    }
    let (ctx, mut events) = ctx();
    let layer = AcceptedLayer::new();
    let app = Router::new()
        .route("/reporting", post(reporting))
        .layer(layer.clone())
        .with_state(ctx.clone());
    let server = serve(app).await;
    let client = HttpClient::new(&server);

    let monitor = submit(&client, "/reporting", "").await;
    events.wait_for(Event::Started(id_of(&monitor))).await;
    // The runner writes reports to the store in the background.
    let deadline = Instant::now() + SOON;
    let doc = loop {
        let answer = client.get(&monitor).await;
        let doc = doc_with_status(&answer, "running");
        assert!(answer.header("retry-after").is_some());
        if doc.get("progress").is_some() {
            break doc;
        }
        assert!(Instant::now() < deadline, "no progress in the monitor: {doc}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(doc["progress"], 0.5, "{doc}");
    assert_eq!(doc["message"], "half", "{doc}");

    ctx.gate.add_permits(1);
    let done = client.until_done(&monitor).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let doc = done.json();
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(doc["progress"], 1.0, "{doc}");
    assert_eq!(doc["message"], "all done", "{doc}");
    assert_eq!(client.get(&done.location()).await.body, "reported");
}

#[tokio::test]
async fn the_job_handle_names_the_job() {
    async fn whoami(Extension(job): Extension<Job>) -> String {
        job.id().to_string()
    }
    let layer = AcceptedLayer::new();
    let server = serve(Router::new().route("/whoami", post(whoami)).layer(layer.clone())).await;
    let client = HttpClient::new(&server);
    let monitor = submit(&client, "/whoami", "").await;
    let done = client.until_done(&monitor).await;
    let result = client.get(&done.location()).await;
    assert_eq!(String::from_utf8(result.body.to_vec()).unwrap(), id_of(&monitor));
}

#[tokio::test]
async fn a_failing_response_body_fails_the_job() {
    let inner = service_fn(|_: Request<RequestBody<Full<Bytes>>>| async {
        Ok::<_, BoxError>(Response::new(common::body::Broken::new("the disk went away")))
    });
    let service = AcceptedLayer::new().layer(inner);
    let request = Request::post("/work").body(Full::default()).unwrap();
    let (status, headers, _) = call(&service, request).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let monitor = headers["location"].to_str().unwrap().to_owned();
    let (status, _, body) = call(&service, get(&format!("{monitor}?wait=5"))).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(doc["error"]["code"], "error", "{doc}");
    assert!(!doc.to_string().contains("disk"), "{doc}");
    let (status, _, body) = call(&service, get(&format!("{monitor}/result"))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body:?}");
    assert!(!String::from_utf8_lossy(&body).contains("partial"));
}

#[tokio::test]
async fn canceling_frees_capacity_and_a_canceled_pending_job_never_starts() {
    let (ctx, mut events) = ctx();
    let layer = AcceptedLayer::new().max_running(1).max_queued(1);
    let server = serve(app(&ctx, &layer)).await;
    let client = HttpClient::new(&server);

    let running = submit(&client, "/stuck", "").await;
    events.wait_for(Event::Started(id_of(&running))).await;
    let pending = submit(&client, "/gated", "pending").await;
    doc_with_status(&client.get(&pending).await, "pending");
    client
        .post("/echo", "full")
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE);

    // Cancel the pending job first: it ends canceled without running.
    assert_eq!(client.delete(&pending).await.status, StatusCode::NO_CONTENT);
    doc_with_status(&client.get(&pending).await, "canceled");

    // Then the running one; its runner is free again.
    assert_eq!(client.delete(&running).await.status, StatusCode::NO_CONTENT);
    events.wait_for(Event::Dropped(id_of(&running))).await;
    doc_with_status(&client.get(&running).await, "canceled");

    let next = submit(&client, "/echo", "room again").await;
    let done = client.until_done(&next).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{:?}", done.body);
    assert_eq!(client.get(&done.location()).await.body, "room again");
    ctx.gate.add_permits(10);
    // The canceled pending job never ran its handler.
    assert!(!events.has(&Event::Started(id_of(&pending))), "seen {:?}", events.seen);
    doc_with_status(&client.get(&pending).await, "canceled");
    // `stuck` once and `echo` once.
    assert_eq!(ctx.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn shutdown_ends_queued_jobs_too() {
    let (ctx, mut events) = ctx();
    let layer = AcceptedLayer::new().max_running(1).max_queued(4);
    let server = serve(app(&ctx, &layer)).await;
    let client = HttpClient::new(&server);

    let running = submit(&client, "/stuck", "").await;
    events.wait_for(Event::Started(id_of(&running))).await;
    let queued = submit(&client, "/gated", "queued").await;
    doc_with_status(&client.get(&queued).await, "pending");

    let ended = tokio::time::timeout(SOON, layer.shutdown(Duration::from_millis(200)))
        .await
        .expect("shutdown resolves");
    assert_eq!(ended, 2, "the running and the queued job were ended");
    assert_failed(&client, &running, "shutdown", StatusCode::INTERNAL_SERVER_ERROR).await;
    assert_failed(&client, &queued, "shutdown", StatusCode::INTERNAL_SERVER_ERROR).await;
    assert!(events.has(&Event::Dropped(id_of(&running))));
    assert!(
        !events.has(&Event::Started(id_of(&queued))),
        "the queued job never started"
    );
}

#[tokio::test]
async fn a_client_that_disconnects_mid_body_creates_no_job() {
    let (ctx, _events) = ctx();
    let store = common::store::Hooked::new(common::store::Counts::default());
    let layer = AcceptedLayer::new().store(store.clone());
    let (app, finished) = common::server::count_finished(app(&ctx, &layer));
    let server = serve(app).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    drop(stream);
    // The server is done with the broken request (its future answered or
    // was dropped): a job, had there been one, was created by then.
    common::until("the server to be done with the broken request", || {
        finished.count() == 1
    })
    .await;
    assert_eq!(store.hooks.creates(), 0, "the store was asked to create a job");
    assert_eq!(store.inner.len(), 0);
    let client = HttpClient::new(&server);
    let monitor = submit(&client, "/echo", "whole").await;
    assert_eq!(client.until_done(&monitor).await.status, StatusCode::SEE_OTHER);
    assert_eq!(store.hooks.creates(), 1);
    assert_eq!(store.inner.len(), 1);
    assert_eq!(
        ctx.calls.load(Ordering::SeqCst),
        1,
        "only the whole request reached the handler"
    );
}

/// Makes `create` wait for a permit, as a store over the network takes its
/// time: it holds a submission between its admission and the start of its
/// job.
struct SlowCreate {
    gate: Arc<Semaphore>,
    entered: Arc<tokio::sync::Notify>,
}

impl common::store::Hooks for SlowCreate {
    async fn before_create(&self) {
        self.entered.notify_one();
        self.gate.acquire().await.unwrap().forget();
    }
}

/// A submission admitted just before `shutdown` began, still being written
/// to a (slow) store when it begins. Either it is refused (`503`) or it is
/// one of the jobs the shutdown waits for and ends; but once `shutdown` has
/// resolved ("when no job is left") no handler may start, or the job is lost
/// when the process exits right after.
#[tokio::test]
async fn no_job_starts_after_shutdown_resolved() {
    let (ctx, mut events) = ctx();
    let gate = Arc::new(Semaphore::new(0));
    let entered = Arc::new(tokio::sync::Notify::new());
    let store = common::store::Hooked::new(SlowCreate {
        gate: Arc::clone(&gate),
        entered: Arc::clone(&entered),
    });
    let layer = AcceptedLayer::new().store(store);
    let app = Router::new()
        .route("/gated", post(gated))
        .layer(layer.clone())
        .with_state(ctx.clone());
    let server = serve(app).await;
    let client = HttpClient::new(&server);

    let submitting = client.clone();
    let submission = tokio::spawn(async move { submitting.post("/gated", "in flight").await });
    // The submission is admitted and in the store's `create`.
    tokio::time::timeout(SOON, entered.notified())
        .await
        .expect("the submission reached the store");

    let (began, began_rx) = tokio::sync::oneshot::channel();
    let shutting = layer.clone();
    let shutdown = tokio::spawn(async move {
        let mut shutdown = std::pin::pin!(shutting.shutdown(Duration::from_millis(200)));
        let ended = tokio::select! {
            biased;
            ended = &mut shutdown => Some(ended),
            () = std::future::ready(()) => None,
        };
        let _ = began.send(());
        match ended {
            Some(ended) => ended,
            None => shutdown.await,
        }
    });
    began_rx.await.unwrap();
    // The store finishes writing the job while the shutdown is under way.
    gate.add_permits(1);
    let ended = tokio::time::timeout(SOON, shutdown)
        .await
        .expect("shutdown resolves")
        .unwrap();
    events.drain();
    let started_before = events.seen.iter().any(|e| matches!(e, Event::Started(_)));

    // Whatever is left would now run to the end.
    ctx.gate.add_permits(1);
    let answer = submission.await.unwrap();
    let done = (answer.status == StatusCode::ACCEPTED).then_some(answer.location());
    let done = match done {
        Some(monitor) => Some(client.until_done(&monitor).await),
        None => None,
    };
    events.drain();
    let started_after = !started_before && events.seen.iter().any(|e| matches!(e, Event::Started(_)));
    assert!(
        !started_after,
        "a handler started after shutdown() had resolved (returning {ended}); its job ended as {:?}",
        done.as_ref().map(Answer::json)
    );
    match done {
        Some(done) => {
            let doc = doc_with_status(&done, "failed");
            assert_eq!(doc["error"]["code"], "shutdown", "{doc}");
            assert_eq!(ended, 1);
        }
        None => {
            answer.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(ended, 0);
        }
    }
    assert!(
        events.seen.iter().all(|e| !matches!(e, Event::Finished(_))),
        "{:?}",
        events.seen
    );
}

/// A builder call on a clone of a layer (here one that changes its limits,
/// so that it gets a runner of its own) does not take the clone's jobs out
/// of the original's shutdown: `shutdown` on the original refuses new work
/// on both and ends the clone's job still running at its deadline. (Before,
/// the clone's runner was forked: its job ran on and it kept accepting.)
#[tokio::test]
async fn shutdown_reaches_layers_made_from_clones() {
    let (ctx, mut events) = ctx();
    let layer = AcceptedLayer::new();
    let tuned = layer.clone().max_running(2).max_queued(2);
    let same_limits = layer.clone().timeout(Duration::from_secs(600));
    let server = serve(app(&ctx, &tuned)).await;
    let other = serve(app(&ctx, &same_limits)).await;
    let client = HttpClient::new(&server);
    let other_client = HttpClient::new(&other);

    let stuck = submit(&client, "/stuck", "").await;
    let also_stuck = submit(&other_client, "/stuck", "").await;
    events.wait_for(Event::Started(id_of(&stuck))).await;
    events.wait_for(Event::Started(id_of(&also_stuck))).await;

    let ended = tokio::time::timeout(Duration::from_secs(10), layer.shutdown(Duration::from_millis(200)))
        .await
        .expect("the shutdown resolves after its deadline");
    assert_eq!(ended, 2, "the jobs of both layers made from the original were ended");
    for (client, monitor) in [(&client, &stuck), (&other_client, &also_stuck)] {
        let done = client.until_done(monitor).await;
        assert_eq!(done.json()["error"]["code"], "shutdown");
        let refused = client.post("/echo", "too late").await;
        refused.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    }
}

//! HTTP details fixed by the "Hardening" issue, each over real HTTP on
//! 127.0.0.1: `Prefer` with quoted strings, percent-decoded query
//! parameters, `Preference-Applied` only when a wait happened, recomputed
//! `Content-Length` on replay, `404` for a result removed between two store
//! reads, `Retry-After` counted from the start of a run, jittered `503`s,
//! upgrades and `CONNECT` passed through, only the layer's own routes
//! claimed, job routes answered while the wrapped service is saturated,
//! extreme settings, and concurrent `DELETE`s of one job.
//!
//! Every test is bounded in time ([`within`]); no test asserts a wall-clock
//! upper bound tighter than a few seconds.

use crate::common;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use common::store::{Hooked, Hooks};
use common::{Answer, HttpClient, serve, serve_hyper};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, Semaphore};
use tower::{ServiceBuilder, service_fn};
use tower_accepted::{
    AcceptedLayer, Job, RequestBody,
    store::{JobId, JobStore, MemoryStore},
};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Runs a whole test, failing it if it takes longer than `secs` seconds.
async fn within<F: Future>(secs: u64, test: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), test).await {
        Ok(output) => output,
        Err(_) => panic!("the test did not end within {secs} s"),
    }
}

/// Awaits one answer that must come within 5 s (a job route that must not
/// wait for anything).
async fn soon<F: Future>(what: &str, answer: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(5), answer).await {
        Ok(output) => output,
        Err(_) => panic!("{what} did not answer within 5 s"),
    }
}

/// Asserts a `202 Accepted`; returns the job's monitor path.
fn accepted(answer: &Answer) -> String {
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
    let monitor = answer.location();
    assert!(monitor.starts_with("/jobs/"), "{monitor}");
    monitor
}

/// The status word of a status document.
fn status_of(answer: &Answer) -> String {
    answer.json()["status"].as_str().unwrap_or_default().to_owned()
}

/// Polls `monitor` until its document satisfies `until` (see
/// [`common::poll_until`]); returns that answer.
async fn poll_until(client: &HttpClient, monitor: &str, until: impl Fn(&serde_json::Value) -> bool) -> Answer {
    common::poll_until(client, monitor, "the awaited state", until).await
}

/// A `Retry-After` in whole seconds.
fn retry_after(answer: &Answer) -> u64 {
    let value = answer
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {answer:?}"));
    value
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is not whole seconds: {value:?}"))
}

/// Sleeps `ms` milliseconds, then answers with a text body.
async fn sleep_then(Path(ms): Path<u64>) -> String {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("slept {ms} ms")
}

/// Never ends (within any test); canceled by `DELETE`.
async fn forever() -> &'static str {
    std::future::pending().await
}

/// The routes most tests use: `/sleep/{ms}` and `/forever`.
fn routes() -> Router {
    Router::new()
        .route("/sleep/{ms}", post(sleep_then))
        .route("/forever", post(forever))
}

/// Any bearer token stands for a user, as in tests/owners.rs.
fn bearer(parts: &http::request::Parts) -> Option<String> {
    let value = parts.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::to_owned)
}

// ---------------------------------------------------------------------------
// 1. `Prefer` with quoted strings (RFC 9110 §5.6)
// ---------------------------------------------------------------------------

/// Quick handler that says it answered itself.
async fn quick() -> impl IntoResponse {
    tokio::time::sleep(Duration::from_millis(50)).await;
    ([("x-handler", "quick")], "quick answer")
}

/// With `respond_async_only`, only a real `respond-async` preference defers
/// a request: the words `respond-async` inside a quoted value
/// (`handling="lenient, respond-async, strict"`) are part of that value, so
/// the request is answered synchronously by the handler itself.
///
/// Before the fix `Prefer` was split on every comma, so the middle piece
/// ` respond-async` of the quoted string was taken for the preference and
/// the request got a `202`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quoted_respond_async_in_prefer_does_not_defer() {
    within(60, async {
        let app = Router::new()
            .route("/quick", post(quick))
            .layer(AcceptedLayer::new().respond_async_only());
        let server = serve(app).await;
        let client = HttpClient::new(&server);

        // The real preference defers: the setup does defer.
        let deferred = client
            .send(Method::POST, "/quick", &[("prefer", "respond-async")], Bytes::new())
            .await;
        accepted(&deferred);
        assert_eq!(deferred.header("preference-applied"), Some("respond-async"));

        for prefer in [
            r#"handling="lenient, respond-async, strict""#,
            r#"handling="strict, respond-async""#,
            r#"foo="a;b, respond-async ,c""#,
            r#"foo="x\", respond-async, y""#,
        ] {
            let answer = client
                .send(Method::POST, "/quick", &[("prefer", prefer)], Bytes::new())
                .await;
            assert_eq!(answer.status, StatusCode::OK, "Prefer: {prefer} → {answer:?}");
            assert_eq!(answer.header("x-handler"), Some("quick"), "Prefer: {prefer}");
            assert_eq!(answer.body, "quick answer", "Prefer: {prefer}");
            assert!(answer.header("location").is_none(), "Prefer: {prefer} was deferred");
        }
    })
    .await;
}

/// A `wait` preference after a quoted value with commas is honoured: a fast
/// handler's own response comes back directly with
/// `Preference-Applied: wait=5`. A `wait` spelled inside the quoted string
/// (`foo="a, wait=0", wait=5`) is not a preference; a quoted `wait="3"` is
/// honoured too.
///
/// Before the fix the quoted `wait=0` was read as the first `wait` (the one
/// that counts), so the request got a `202` instead of the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_wait_after_quoted_values_is_honoured() {
    within(60, async {
        let app = Router::new().route("/quick", post(quick)).layer(AcceptedLayer::new());
        let server = serve(app).await;
        let client = HttpClient::new(&server);

        for (prefer, applied) in [
            (r#"foo="a, wait=0", wait=5"#, "wait=5"),
            (r#"foo="a,b", wait=5"#, "wait=5"),
            (r#"foo="x;wait=0;y" , wait=5"#, "wait=5"),
            (r#"wait="3""#, "wait=3"),
        ] {
            let answer = client
                .send(Method::POST, "/quick", &[("prefer", prefer)], Bytes::new())
                .await;
            assert_eq!(answer.status, StatusCode::OK, "Prefer: {prefer} → {answer:?}");
            assert_eq!(answer.body, "quick answer", "Prefer: {prefer}");
            assert_eq!(answer.header("x-handler"), Some("quick"), "Prefer: {prefer}");
            assert_eq!(answer.header("preference-applied"), Some(applied), "Prefer: {prefer}");
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// 2. Percent-decoded query parameters
// ---------------------------------------------------------------------------

/// `?wait=` is percent-decoded: `?wait=0%2E5` is a long poll of half a
/// second (not a `400`), and `?w%61it=x` names `wait` with a bad value (a
/// `400`, not an ignored unknown parameter).
///
/// Before the fix the raw text `0%2E5` was parsed (a `400`) and `w%61it`
/// was not recognised as `wait` (a plain `200`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_wait_is_percent_decoded() {
    within(60, async {
        let server = serve(routes().layer(AcceptedLayer::new())).await;
        let client = HttpClient::new(&server);
        let monitor = accepted(&client.post("/forever", Bytes::new()).await);

        let started = Instant::now();
        let answer = client.get(&format!("{monitor}?wait=0%2E5")).await;
        let waited = started.elapsed();
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(status_of(&answer), "running");
        assert!(
            waited >= Duration::from_millis(450),
            "`wait=0%2E5` was not a long poll of 0.5 s: {waited:?}"
        );

        for query in ["w%61it=x", "%77ait=%2D1", "wait=1%2E2%2E3"] {
            let answer = client.get(&format!("{monitor}?{query}")).await;
            answer.assert_problem(StatusCode::BAD_REQUEST);
        }
        assert_eq!(client.delete(&monitor).await.status, StatusCode::NO_CONTENT);
    })
    .await;
}

/// `GET /jobs?limit=%32` is a page of two jobs, and the `next` cursor sent
/// back percent-encoded (every byte as `%XX`) gives the rest.
///
/// Before the fix `limit=%32` was a `400` (`%32` is not digits), and so was
/// an encoded cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_limit_and_cursor_are_percent_decoded() {
    within(60, async {
        let server = serve(routes().layer(AcceptedLayer::new().owner(bearer))).await;
        let client = HttpClient::new(&server);
        let alice = [("authorization", "Bearer alice")];
        let mut submitted = BTreeSet::new();
        for _ in 0..3 {
            let answer = client.send(Method::POST, "/sleep/10", &alice, Bytes::new()).await;
            accepted(&answer);
            submitted.insert(answer.json()["id"].as_str().unwrap().to_owned());
        }
        let ids = |answer: &Answer| -> Vec<String> {
            answer.json()["jobs"]
                .as_array()
                .unwrap_or_else(|| panic!("no `jobs`: {answer:?}"))
                .iter()
                .map(|doc| doc["id"].as_str().unwrap().to_owned())
                .collect()
        };

        let first = client.send(Method::GET, "/jobs?limit=%32", &alice, Bytes::new()).await;
        assert_eq!(first.status, StatusCode::OK, "{first:?}");
        let first_ids = ids(&first);
        assert_eq!(first_ids.len(), 2, "limit=%32 is a limit of 2: {first:?}");
        let plain = client.send(Method::GET, "/jobs?limit=2", &alice, Bytes::new()).await;
        assert_eq!(ids(&plain), first_ids, "the same page as limit=2");

        let cursor = first.json()["next"]
            .as_str()
            .unwrap_or_else(|| panic!("a next cursor: {first:?}"))
            .to_owned();
        let encoded: String = cursor.bytes().map(|b| format!("%{b:02X}")).collect();
        let second = client
            .send(
                Method::GET,
                &format!("/jobs?limit=%32&cursor={encoded}"),
                &alice,
                Bytes::new(),
            )
            .await;
        assert_eq!(second.status, StatusCode::OK, "an encoded cursor works: {second:?}");
        let second_ids = ids(&second);
        assert_eq!(second_ids.len(), 1, "{second:?}");
        let all: BTreeSet<String> = first_ids.into_iter().chain(second_ids).collect();
        assert_eq!(all, submitted, "the two pages are the three jobs");
    })
    .await;
}

// ---------------------------------------------------------------------------
// 3. `Preference-Applied: wait` only when the monitor waited
// ---------------------------------------------------------------------------

/// A monitor `GET` with `Prefer: wait=5` says `Preference-Applied: wait=5`
/// only when the server waited: not for a job that had already ended (it
/// answers at once), but for a running job that ends during the wait.
///
/// Before the fix the header was sent whenever `Prefer: wait` was, even for
/// a job that had ended long before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_prefer_wait_is_applied_only_when_it_waited() {
    within(60, async {
        let gate = Arc::new(Semaphore::new(0));
        let held = Arc::clone(&gate);
        let app = routes()
            .route(
                "/gated",
                post(move || {
                    let held = Arc::clone(&held);
                    async move {
                        held.acquire().await.unwrap().forget();
                        "released"
                    }
                }),
            )
            .layer(AcceptedLayer::new());
        let server = serve(app).await;
        let client = HttpClient::new(&server);
        let prefer = [("prefer", "wait=5")];

        // An ended job: no wait, so nothing applied.
        let ended = accepted(&client.post("/sleep/10", Bytes::new()).await);
        assert_eq!(client.until_done(&ended).await.status, StatusCode::SEE_OTHER);
        let answer = client.send(Method::GET, &ended, &prefer, Bytes::new()).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{answer:?}");
        assert_eq!(
            answer.header("preference-applied"),
            None,
            "the job had ended: nothing was waited for"
        );

        // A running job that ends during the wait: applied.
        let running = accepted(&client.post("/gated", Bytes::new()).await);
        let polling = client.clone();
        let path = running.clone();
        let poll = tokio::spawn(async move { polling.send(Method::GET, &path, &prefer, Bytes::new()).await });
        // The long poll is under way well before the job ends.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        gate.add_permits(1);
        let answer = poll.await.unwrap();
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{answer:?}");
        assert_eq!(status_of(&answer), "succeeded");
        assert_eq!(answer.header("preference-applied"), Some("wait=5"));
    })
    .await;
}

// ---------------------------------------------------------------------------
// 4. Replayed `Content-Length` (plain hyper)
// ---------------------------------------------------------------------------

/// The wrapped service of the `Content-Length` tests: `HEAD` answers
/// `Content-Length: 1234` without a body (as a `HEAD` answer may);
/// `GET /long` and `GET /short` answer `hello` with a `Content-Length` of 99
/// and of 2.
async fn lying_lengths(request: Request<RequestBody<Incoming>>) -> Result<Response<Full<Bytes>>, Infallible> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (length, body) = match (request.method(), request.uri().path()) {
        (&Method::HEAD, _) => ("1234", Bytes::new()),
        (_, "/short") => ("2", Bytes::from_static(b"hello")),
        _ => ("99", Bytes::from_static(b"hello")),
    };
    let response = Response::builder()
        .header("content-length", length)
        .header("x-handler", "lying")
        .body(Full::new(body))
        .unwrap();
    Ok(response)
}

/// A deferred `HEAD` whose handler answers `Content-Length: 1234` without a
/// body: its replayed result says `Content-Length: 0`, for `GET` and for
/// `HEAD` of the result (the length of the body replayed, not the one the
/// handler named for a body it did not have).
///
/// Before the fix the handler's header was replayed: `HEAD` of the result
/// said `Content-Length: 1234`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_head_answer_has_the_length_of_its_empty_body() {
    within(60, async {
        let service = ServiceBuilder::new()
            .layer(AcceptedLayer::new())
            .service(service_fn(lying_lengths));
        let server = serve_hyper(service).await;
        let client = HttpClient::new(&server);

        let submitted = client.send(Method::HEAD, "/report", &[], Bytes::new()).await;
        assert_eq!(submitted.status, StatusCode::ACCEPTED, "{submitted:?}");
        assert!(submitted.body.is_empty());
        let monitor = submitted.header("location").expect("a Location").to_owned();
        let done = client.until_done(&monitor).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:?}");
        let result_path = done.header("location").expect("the result's Location").to_owned();

        let result = client.get(&result_path).await;
        assert_eq!(result.status, StatusCode::OK, "{result:?}");
        assert_eq!(result.header("x-handler"), Some("lying"));
        assert!(result.body.is_empty(), "{result:?}");
        assert_eq!(result.header("content-length"), Some("0"), "GET of the result");

        let head = client.send(Method::HEAD, &result_path, &[], Bytes::new()).await;
        assert_eq!(head.status, StatusCode::OK, "{head:?}");
        assert_eq!(head.header("x-handler"), Some("lying"));
        assert_eq!(head.header("content-length"), Some("0"), "HEAD of the result");
    })
    .await;
}

/// A handler whose `Content-Length` is wrong for its `GET` body (too large
/// or too small): the replayed result carries the length of the body stored,
/// and the whole body arrives, for `GET` and `HEAD` of the result.
///
/// Before the fix the wrong header was replayed with the real body, and the
/// exchange broke (hyper refuses a body that contradicts its header: the
/// client got an incomplete message).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_wrong_content_length_is_corrected() {
    within(60, async {
        let service = ServiceBuilder::new()
            .layer(AcceptedLayer::new())
            .service(service_fn(lying_lengths));
        let server = serve_hyper(service).await;
        let client = HttpClient::new(&server);

        for path in ["/long", "/short"] {
            let submitted = client.get(path).await;
            assert_eq!(submitted.status, StatusCode::ACCEPTED, "{path}: {submitted:?}");
            let monitor = submitted.header("location").expect("a Location").to_owned();
            let done = client.until_done(&monitor).await;
            assert_eq!(done.status, StatusCode::SEE_OTHER, "{path}: {done:?}");
            let result_path = done.header("location").expect("the result's Location").to_owned();

            let result = client.get(&result_path).await;
            assert_eq!(result.status, StatusCode::OK, "{path}: {result:?}");
            assert_eq!(result.body, "hello", "{path}");
            assert_eq!(result.header("content-length"), Some("5"), "{path}: GET of the result");
            let head = client.send(Method::HEAD, &result_path, &[], Bytes::new()).await;
            assert!(head.body.is_empty());
            assert_eq!(head.header("content-length"), Some("5"), "{path}: HEAD of the result");
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// 5. A result removed between the result route's two reads is a `404`
// ---------------------------------------------------------------------------

/// Deletes the job before `response` reads it, as a `DELETE` racing with
/// the result route would between its two reads (`get`, then `response`).
#[derive(Clone)]
struct DeleteFirst;

impl Hooks for DeleteFirst {
    async fn before_response(&self, store: &MemoryStore, id: JobId) {
        store.delete(id).await.expect("delete");
    }
}

/// A finished job deleted between the result route's two store reads
/// answers `404` (it was forgotten, as after a `DELETE`), not `410` (which
/// means expired).
///
/// Before the fix any result missing at the second read answered `410`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_deleted_between_the_two_reads_is_404() {
    within(60, async {
        let store = Hooked::new(DeleteFirst);
        let server = serve(routes().layer(AcceptedLayer::new().store(store.clone()))).await;
        let client = HttpClient::new(&server);
        let monitor = accepted(&client.post("/sleep/10", Bytes::new()).await);
        let done = client.until_done(&monitor).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:?}");
        assert_eq!(store.inner.len(), 1, "the finished job is kept");

        let result = client.get(&done.location()).await;
        let problem = result.assert_problem(StatusCode::NOT_FOUND);
        assert_eq!(problem["status"], 404);
        assert!(store.inner.is_empty(), "the job was deleted");
        // And it stays unknown.
        client.get(&monitor).await.assert_problem(StatusCode::NOT_FOUND);
    })
    .await;
}

// ---------------------------------------------------------------------------
// 6. `Retry-After` counted from the start of the run
// ---------------------------------------------------------------------------

/// The `Retry-After` estimated from progress counts from when the job
/// started running, not from its creation: job B waits ~3 s in the queue
/// behind job A (`max_running(1)`), then reports half its work done at once;
/// its monitor's `Retry-After` is then 1 or 2 s, not the ~3 s that counting
/// the time in the queue would give.
///
/// Before the fix the estimate counted from creation: ≥ 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_estimate_counts_from_the_start_of_the_run() {
    within(60, async {
        let gate = Arc::new(Semaphore::new(0));
        let entered = Arc::new(Notify::new());
        let (held, signal) = (Arc::clone(&gate), Arc::clone(&entered));
        let app = Router::new()
            .route(
                "/hold",
                post(move || {
                    let (held, signal) = (Arc::clone(&held), Arc::clone(&signal));
                    async move {
                        signal.notify_one();
                        held.acquire().await.unwrap().forget();
                        "released"
                    }
                }),
            )
            .route(
                "/half",
                post(|Extension(job): Extension<Job>| async move {
                    job.set_progress(0.5);
                    std::future::pending::<&'static str>().await
                }),
            )
            .layer(
                AcceptedLayer::new()
                    .max_running(1)
                    .max_retry_after(Duration::from_secs(30)),
            );
        let server = serve(app).await;
        let client = HttpClient::new(&server);

        let a = accepted(&client.post("/hold", Bytes::new()).await);
        soon("job A's handler", entered.notified()).await;
        let b = accepted(&client.post("/half", Bytes::new()).await);
        // B waits in the queue for the only runner.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let queued = client.get(&b).await;
        assert_eq!(status_of(&queued), "pending", "{queued:?}");
        gate.add_permits(1);
        assert_eq!(client.until_done(&a).await.status, StatusCode::SEE_OTHER);

        let running = poll_until(&client, &b, |doc| doc.get("progress").is_some()).await;
        assert_eq!(status_of(&running), "running");
        assert_eq!(running.json()["progress"].as_f64(), Some(0.5));
        let seconds = retry_after(&running);
        assert!(
            (1..=2).contains(&seconds),
            "Retry-After {seconds}: the time in the queue was counted as work"
        );
        assert_eq!(client.delete(&b).await.status, StatusCode::NO_CONTENT);
    })
    .await;
}

// ---------------------------------------------------------------------------
// 7. Jittered `Retry-After` on `503`
// ---------------------------------------------------------------------------

/// Submissions refused for capacity get `503` with a `Retry-After` drawn
/// from `retry_after` to twice it (5 to 10 s here, within the 30 s maximum),
/// so that refused clients do not all come back in the same second: 40
/// refusals are all within [5, 10] and not all the same.
///
/// Before the fix every `503` said exactly `Retry-After: 5`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_503_retry_after_is_jittered() {
    within(60, async {
        let layer = AcceptedLayer::new()
            .max_running(1)
            .max_queued(0)
            .retry_after(Duration::from_secs(5));
        let server = serve(routes().layer(layer.clone())).await;
        let client = HttpClient::new(&server);
        let running = accepted(&client.post("/forever", Bytes::new()).await);

        let mut seen = Vec::new();
        for _ in 0..40 {
            let refused = client.post("/sleep/10", Bytes::new()).await;
            refused.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
            seen.push(retry_after(&refused));
        }
        assert!(seen.iter().all(|s| (5..=10).contains(s)), "{seen:?}");
        let distinct: BTreeSet<u64> = seen.iter().copied().collect();
        assert!(distinct.len() >= 2, "the same Retry-After 40 times: {seen:?}");
        assert_eq!(layer.job_store().len(), 1, "no job for a refused submission");
        assert_eq!(client.delete(&running).await.status, StatusCode::NO_CONTENT);
    })
    .await;
}

// ---------------------------------------------------------------------------
// 8. Upgrades and `CONNECT` pass through
// ---------------------------------------------------------------------------

/// An upgrade request (`Connection: upgrade`, `Upgrade: websocket`) is not
/// deferred by default: it reaches the handler at once, whose own answer
/// comes back, and no job is made. (Its answer hands the connection over,
/// so it cannot wait in a store.)
///
/// Before the fix only `OPTIONS` passed through: the upgrade got a `202`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_requests_pass_through() {
    within(60, async {
        let layer = AcceptedLayer::new();
        let app = Router::new()
            .route("/ws", get(|| async { ([("x-handler", "ws")], "no websockets here") }))
            .layer(layer.clone());
        let server = serve(app).await;
        let client = HttpClient::new(&server);
        let headers = [("connection", "upgrade"), ("upgrade", "websocket")];
        let answer = client.send(Method::GET, "/ws", &headers, Bytes::new()).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.header("x-handler"), Some("ws"));
        assert_eq!(answer.body, "no websockets here");
        assert!(layer.job_store().is_empty(), "no job for an upgrade");

        // The same request without the upgrade is deferred (GET is, by default).
        accepted(&client.get("/ws").await);
        assert_eq!(layer.job_store().len(), 1);
    })
    .await;
}

/// A `CONNECT` request is not deferred by default: the application's own
/// answer comes back (here its fallback's `403`), not a `202`, and no job
/// is made. Sent as raw bytes, since HTTP clients only send `CONNECT` to
/// proxies.
///
/// Before the fix `CONNECT` was deferred like any other method: a `202`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_requests_pass_through() {
    within(60, async {
        let layer = AcceptedLayer::new();
        let app = Router::new()
            .fallback(|| async { (StatusCode::FORBIDDEN, [("x-handler", "fallback")], "no tunnels") })
            .layer(layer.clone());
        let server = serve(app).await;

        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
            .await
            .unwrap();
        let head = common::tcp::read_head(&mut stream).await;
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let status_line = head.lines().next().unwrap_or_default();
        assert!(
            status_line.starts_with("http/1.1 403"),
            "not the handler's answer: {head}"
        );
        assert!(head.contains("x-handler: fallback"), "{head}");
        assert!(layer.job_store().is_empty(), "no job for a CONNECT");
    })
    .await;
}

// ---------------------------------------------------------------------------
// 9. The layer claims only its own routes
// ---------------------------------------------------------------------------

/// The application's routes under `/jobs` and the counters of their calls.
fn jobs_prefix_app(layer: AcceptedLayer, calls: &Arc<AtomicUsize>) -> Router {
    let (stats, create) = (Arc::clone(calls), Arc::clone(calls));
    Router::new()
        .route(
            "/jobs/stats",
            get(move || {
                stats.fetch_add(1, Ordering::SeqCst);
                async { ([("x-handler", "stats")], "42 jobs") }
            }),
        )
        .route(
            "/jobs",
            post(move || {
                create.fetch_add(1, Ordering::SeqCst);
                async { (StatusCode::CREATED, [("x-handler", "create")], "created by the app") }
            }),
        )
        .route("/work", post(quick))
        .layer(layer.defer_if(|parts| parts.uri.path() == "/work"))
}

/// By default the layer claims only its own routes: `GET /jobs/stats` and
/// `POST /jobs` reach the application's handlers (synchronously, with their
/// own answers) while `/work` is still deferred and its monitor answered by
/// the layer. With `claim_prefix(true)` the same requests get the layer's
/// `404` problem and `405` problem with `Allow: GET, HEAD`.
///
/// Before the fix every path under `/jobs/` and every method on `/jobs` was
/// the layer's: the application's handlers were never reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_claims_only_its_routes_unless_told_to_claim_the_prefix() {
    within(60, async {
        // Default: the application's routes under the prefix are its own.
        let calls = Arc::new(AtomicUsize::new(0));
        let server = serve(jobs_prefix_app(AcceptedLayer::new(), &calls)).await;
        let client = HttpClient::new(&server);
        let stats = client.get("/jobs/stats").await;
        assert_eq!(stats.status, StatusCode::OK, "{stats:?}");
        assert_eq!(stats.header("x-handler"), Some("stats"));
        assert_eq!(stats.body, "42 jobs");
        let created = client.post("/jobs", Bytes::new()).await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        assert_eq!(created.header("x-handler"), Some("create"));
        assert_eq!(created.body, "created by the app");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // The layer's own routes still work.
        let monitor = accepted(&client.post("/work", Bytes::new()).await);
        assert_eq!(client.until_done(&monitor).await.status, StatusCode::SEE_OTHER);

        // Claimed: the layer answers the whole prefix.
        let calls = Arc::new(AtomicUsize::new(0));
        let server = serve(jobs_prefix_app(AcceptedLayer::new().claim_prefix(true), &calls)).await;
        let client = HttpClient::new(&server);
        client.get("/jobs/stats").await.assert_problem(StatusCode::NOT_FOUND);
        let refused = client.post("/jobs", Bytes::new()).await;
        refused.assert_problem(StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(refused.header("allow"), Some("GET, HEAD"));
        assert_eq!(calls.load(Ordering::SeqCst), 0, "the application was not reached");
        let monitor = accepted(&client.post("/work", Bytes::new()).await);
        assert_eq!(client.until_done(&monitor).await.status, StatusCode::SEE_OTHER);
    })
    .await;
}

// ---------------------------------------------------------------------------
// 10. Job routes answer while the wrapped service is not ready
// ---------------------------------------------------------------------------

/// The wrapped service of the saturation test: `/hold` says it entered,
/// then waits for a permit of the gate; anything else answers at once.
#[derive(Clone)]
struct Holding {
    gate: Arc<Semaphore>,
    entered: Arc<Notify>,
}

impl Holding {
    async fn call(self, request: Request<RequestBody<Incoming>>) -> Result<Response<Full<Bytes>>, Infallible> {
        if request.uri().path() == "/hold" {
            self.entered.notify_one();
            self.gate.acquire().await.unwrap().forget();
        }
        Ok(Response::new(Full::new(Bytes::from(format!(
            "answered {}",
            request.uri().path()
        )))))
    }
}

/// Behind `AcceptedLayer`, a `ConcurrencyLimit` of 1 whose only permit a
/// running job holds: the job routes (monitor, result not ready, unknown
/// id, `DELETE`) still answer within 5 s, and a second submission is
/// accepted with `202`, waits inside, and runs once the first job lets the
/// permit go (here: canceled by the `DELETE`).
///
/// Before the fix the layer was ready only when the wrapped service was, so
/// every request, job routes included, waited for the held permit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_routes_answer_while_the_wrapped_service_is_saturated() {
    within(60, async {
        let holding = Holding {
            gate: Arc::new(Semaphore::new(0)),
            entered: Arc::new(Notify::new()),
        };
        let entered = Arc::clone(&holding.entered);
        let service = ServiceBuilder::new()
            .layer(AcceptedLayer::new())
            .concurrency_limit(1)
            .service(service_fn(move |request| holding.clone().call(request)));
        let server = serve_hyper(service).await;
        let client = HttpClient::new(&server);

        let first = soon(
            "the first submission",
            client.send(Method::POST, "/hold", &[], Bytes::new()),
        )
        .await;
        assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
        let first = first.header("location").expect("a Location").to_owned();
        soon("the first job's handler", entered.notified()).await;

        // The only permit is held: a second submission is still accepted.
        let second = soon(
            "the second submission",
            client.send(Method::POST, "/next", &[], Bytes::new()),
        )
        .await;
        assert_eq!(second.status, StatusCode::ACCEPTED, "{second:?}");
        let second = second.header("location").expect("a Location").to_owned();

        let monitor = soon("the monitor", client.get(&first)).await;
        assert_eq!(monitor.status, StatusCode::OK, "{monitor:?}");
        assert_eq!(status_of(&monitor), "running");
        let result = soon("the result", client.get(&format!("{first}/result"))).await;
        result.assert_problem(StatusCode::NOT_FOUND);
        assert!(result.header("retry-after").is_some(), "{result:?}");
        let unknown = format!("/jobs/{}", Uuid::new_v4());
        soon("an unknown id", client.get(&unknown))
            .await
            .assert_problem(StatusCode::NOT_FOUND);
        // The second job waits inside for the permit.
        let waiting = soon("a long poll", client.get(&format!("{second}?wait=1"))).await;
        assert!(
            matches!(status_of(&waiting).as_str(), "pending" | "running"),
            "the second job ran while the permit was held: {waiting:?}"
        );

        // Cancel the first job: its permit is let go, and the second runs.
        let deleted = soon("DELETE", client.send(Method::DELETE, &first, &[], Bytes::new())).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{deleted:?}");
        assert_eq!(status_of(&client.get(&first).await), "canceled");
        let done = client.until_done(&second).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:?}");
        let result = client.get(done.header("location").expect("a Location")).await;
        assert_eq!(result.body, "answered /next");
    })
    .await;
}

// ---------------------------------------------------------------------------
// 11. Extreme settings
// ---------------------------------------------------------------------------

/// The layer's durations at their extremes (`Duration::MAX` timeouts and
/// waits, no grace period).
fn extreme(layer: AcceptedLayer) -> AcceptedLayer {
    layer
        .timeout(Duration::MAX)
        .body_timeout(Duration::MAX)
        .max_wait(Duration::MAX)
        .max_long_poll(Duration::MAX)
        .grace_period(Duration::ZERO)
}

/// Durations at their extremes (`Duration::MAX` timeouts, waits, time to
/// live and tombstone time to live; no grace period) never panic: a whole
/// job life works over HTTP — submission, long poll of a running job, a
/// long poll with a huge `?wait=`, result, `DELETE`, cancel, and a huge
/// `Prefer: wait` answered directly by a fast job. A job that does expire
/// (a short time to live) with tombstones kept `Duration::MAX` answers
/// `410` on every job route.
///
/// Before the fix the tombstone of an expired job was dated
/// `expiry + tombstone_ttl` with `Instant` arithmetic, which panicked for
/// `Duration::MAX` (the request got no answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_settings_never_panic() {
    within(60, async {
        let store = MemoryStore::builder()
            .ttl(Duration::MAX)
            .tombstones(10, Duration::MAX)
            .build();
        let server = serve(routes().layer(extreme(AcceptedLayer::new()).store(store))).await;
        let client = HttpClient::new(&server);

        // Submit, long-poll while it runs, fetch, forget.
        let monitor = accepted(&client.post("/sleep/3000", "a body").await);
        let started = Instant::now();
        let polled = client.get(&format!("{monitor}?wait=1")).await;
        assert_eq!(polled.status, StatusCode::OK, "{polled:?}");
        assert!(
            matches!(status_of(&polled).as_str(), "pending" | "running"),
            "{polled:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(900), "the long poll waited");
        let done = client.get(&format!("{monitor}?wait=99999999999")).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:?}");
        let result = client.get(&done.location()).await;
        assert_eq!(result.status, StatusCode::OK, "{result:?}");
        assert_eq!(result.body, "slept 3000 ms");
        assert_eq!(client.delete(&monitor).await.status, StatusCode::NO_CONTENT);
        client.get(&monitor).await.assert_problem(StatusCode::NOT_FOUND);

        // A running job canceled under the extreme settings.
        let canceled = accepted(&client.post("/forever", Bytes::new()).await);
        assert_eq!(client.delete(&canceled).await.status, StatusCode::NO_CONTENT);
        assert_eq!(status_of(&client.get(&canceled).await), "canceled");

        // A huge `Prefer: wait` on a fast job: its own answer, directly.
        let direct = client
            .send(
                Method::POST,
                "/sleep/10",
                &[("prefer", "wait=99999999999")],
                Bytes::new(),
            )
            .await;
        assert_eq!(direct.status, StatusCode::OK, "{direct:?}");
        assert_eq!(direct.body, "slept 10 ms");
        assert_eq!(direct.header("preference-applied"), Some("wait=99999999999"));

        // The server is still whole.
        let last = accepted(&client.post("/sleep/10", Bytes::new()).await);
        assert_eq!(client.until_done(&last).await.status, StatusCode::SEE_OTHER);

        // A job that expires, its tombstone kept "forever": `410`s.
        let store = MemoryStore::builder()
            .ttl(Duration::from_millis(200))
            .tombstones(10, Duration::MAX)
            .build();
        let server = serve(routes().layer(extreme(AcceptedLayer::new()).store(store))).await;
        let client = HttpClient::new(&server);
        let monitor = accepted(&client.post("/sleep/10", Bytes::new()).await);
        assert_eq!(client.until_done(&monitor).await.status, StatusCode::SEE_OTHER);
        tokio::time::sleep(Duration::from_millis(800)).await;
        for _ in 0..2 {
            client.get(&monitor).await.assert_problem(StatusCode::GONE);
            client
                .get(&format!("{monitor}/result"))
                .await
                .assert_problem(StatusCode::GONE);
            client.delete(&monitor).await.assert_problem(StatusCode::GONE);
            // Another job's submission and life go on beside the tombstone.
            let other = accepted(&client.post("/sleep/10", Bytes::new()).await);
            assert_eq!(client.until_done(&other).await.status, StatusCode::SEE_OTHER);
        }
    })
    .await;
}

/// The polling interval, and waits asked for in `Prefer` beyond what a
/// `u64` of seconds holds (`wait=` with 30 digits, read as `Duration::MAX`)
/// under `max_wait`/`max_long_poll(Duration::MAX)`, never panic:
/// `retry_after`/`max_retry_after(Duration::MAX)` configure a layer, a fast
/// job is answered directly and a monitor long poll answers when its job
/// ends, each with a `Preference-Applied: wait=N` that did not wrap to a
/// small number. (Before, `whole_seconds` computed `d.as_secs() + 1`: an
/// overflow, a panic in debug builds and `wait=0` in release.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_max_intervals_and_huge_prefer_waits_never_panic() {
    within(60, async {
        let huge = format!("wait={}", "9".repeat(30));
        let applied_is_huge = |answer: &Answer| {
            let applied = answer
                .header("preference-applied")
                .and_then(|v| v.strip_prefix("wait="))
                .and_then(|n| n.parse::<u64>().ok());
            assert!(
                applied.is_some_and(|n| n >= 99_999_999_999),
                "Preference-Applied of a huge wait: {answer:?}"
            );
        };
        let gate = Arc::new(Semaphore::new(0));
        let held = Arc::clone(&gate);
        let store = Hooked::new(common::store::Counts::default());
        let layer = extreme(AcceptedLayer::new())
            .retry_after(Duration::MAX)
            .max_retry_after(Duration::MAX)
            .store(store.clone());
        let app = routes()
            .route(
                "/gated",
                post(move || {
                    let held = Arc::clone(&held);
                    async move {
                        held.acquire().await.unwrap().forget();
                        "released"
                    }
                }),
            )
            .layer(layer);
        let server = serve(app).await;
        let client = HttpClient::new(&server);

        let direct = client
            .send(Method::POST, "/sleep/10", &[("prefer", huge.as_str())], Bytes::new())
            .await;
        assert_eq!(direct.status, StatusCode::OK, "{direct:?}");
        applied_is_huge(&direct);

        let monitor = accepted(&client.post("/gated", Bytes::new()).await);
        assert!(retry_after(&client.get(&monitor).await) >= 1);
        let polling = client.clone();
        let path = monitor.clone();
        let poll = tokio::spawn(async move {
            let prefer = [("prefer", huge.as_str())];
            polling.send(Method::GET, &path, &prefer, Bytes::new()).await
        });
        // The long poll waits: the running job's watch for its end, and the
        // long poll's, are the store's only waits for this job.
        let id = monitor.rsplit('/').next().unwrap().to_owned();
        common::until("the long poll to wait for the job's end", || {
            store.hooks.waits_for(&id) >= 2
        })
        .await;
        assert_eq!(store.hooks.waits_for(&id), 2);
        assert!(!poll.is_finished(), "the long poll answered before the job ended");
        gate.add_permits(1);
        let answer = poll.await.expect("the long poll answered");
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{answer:?}");
        applied_is_huge(&answer);
    })
    .await;
}

// ---------------------------------------------------------------------------
// 12. Concurrent `DELETE`s of one job
// ---------------------------------------------------------------------------

/// Two clients canceling the same running job at once both get `204`, and
/// the job stays `canceled` (its record is kept, not erased by the second
/// `DELETE`): a `GET` afterwards shows `status: canceled` and its result is
/// a `409`. Twenty fresh jobs, so that the race is exercised.
///
/// Before the fix the `DELETE` that found the job already ended deleted it,
/// so the record was erased (`404` afterwards).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deletes_of_a_running_job_keep_it_canceled() {
    within(120, async {
        let server = serve(routes().layer(AcceptedLayer::new())).await;
        let (one, two) = (HttpClient::new(&server), HttpClient::new(&server));
        for round in 0..20 {
            let monitor = accepted(&one.post("/forever", Bytes::new()).await);
            poll_until(&one, &monitor, |doc| doc["status"] == "running").await;
            let (a, b) = tokio::join!(one.delete(&monitor), two.delete(&monitor));
            assert_eq!(a.status, StatusCode::NO_CONTENT, "round {round}: {a:?}");
            assert_eq!(b.status, StatusCode::NO_CONTENT, "round {round}: {b:?}");
            let after = one.get(&monitor).await;
            assert_eq!(after.status, StatusCode::OK, "round {round}: {after:?}");
            assert_eq!(status_of(&after), "canceled", "round {round}");
            one.get(&format!("{monitor}/result"))
                .await
                .assert_problem(StatusCode::CONFLICT);
        }
    })
    .await;
}

//! Principle 1 (DESIGN.md §1): what the client finally fetches from the
//! result route is the response the wrapped service gives synchronously —
//! same status, same end-to-end headers, same body bytes — and the handler
//! sees the same request either way.
//!
//! Every case serves the same handler twice over real HTTP: once bare (the
//! synchronous answer) and once behind `AcceptedLayer` (submit, poll until
//! done, follow the `303` to the result), and compares the two.

use crate::common;

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bytes::Bytes;
use common::{Answer, HttpClient, serve};
use http_body::Frame;
use tower_accepted::AcceptedLayer;

/// The hop-by-hop headers of RFC 9110 §7.6.1 that a replay must not carry.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// What the client saw in the synchronous and in the asynchronous case.
struct Both {
    sync: Answer,
    /// The final monitor answer (terminal status document).
    done: Answer,
    /// The result route's answer.
    replay: Answer,
}

/// Serves `app()` bare and behind the layer, sends the same request to both
/// and fetches the asynchronous result.
async fn sync_and_async(
    app: impl Fn() -> Router,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Both {
    let bare = serve(app()).await;
    let sync = HttpClient::new(&bare)
        .send(method.clone(), path, headers, body.clone())
        .await;

    let layer = AcceptedLayer::new();
    let wrapped = serve(app().layer(layer.clone())).await;
    let client = HttpClient::new(&wrapped);
    let accepted = client.send(method, path, headers, body).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "body: {:?}", accepted.body);
    let monitor = accepted.location();
    assert!(monitor.starts_with("/jobs/"), "{monitor}");
    let done = client.until_done(&monitor).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "body: {:?}", done.body);
    let result = done.location();
    assert_eq!(result, format!("{monitor}/result"));
    assert_eq!(done.json()["result"], result.as_str());
    let replay = client.get(&result).await;
    assert_eq!(layer.job_store().len(), 1);
    Both { sync, done, replay }
}

/// The names that `Connection` lists, lower case.
fn connection_names(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect()
}

/// The end-to-end headers of `headers` as a multimap (every value of a name,
/// in order), without `date` and without hop-by-hop headers.
fn end_to_end(headers: &HeaderMap) -> BTreeMap<String, Vec<Vec<u8>>> {
    let named = connection_names(headers);
    let mut map: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        if name == "date" || HOP_BY_HOP.contains(&name) || named.iter().any(|n| n == name) {
            continue;
        }
        map.entry(name.to_owned()).or_default().push(value.as_bytes().to_vec());
    }
    map
}

/// Asserts that the replay is the synchronous response and that the monitor
/// reported the job's outcome honestly.
fn assert_transparent(both: &Both) {
    let Both { sync, done, replay } = both;
    assert_same_response(sync, replay);

    // The monitor is honest about the outcome.
    let doc = done.json();
    assert_eq!(doc["result_status"], sync.status.as_u16(), "{doc}");
    if sync.status.as_u16() < 400 {
        assert_eq!(doc["status"], "succeeded", "{doc}");
        assert!(doc.get("error").is_none(), "{doc}");
    } else {
        assert_eq!(doc["status"], "failed", "{doc}");
        assert_eq!(doc["error"]["code"], "http_status", "{doc}");
    }
}

/// Asserts that `replay` is `sync`: status, end-to-end headers and body
/// bytes; and that it carries no hop-by-hop header.
fn assert_same_response(sync: &Answer, replay: &Answer) {
    assert_eq!(replay.status, sync.status);
    assert_eq!(replay.body, sync.body, "body bytes differ");

    for name in HOP_BY_HOP
        .iter()
        .copied()
        .map(str::to_owned)
        .chain(connection_names(&sync.headers))
    {
        assert!(
            !replay.headers.contains_key(name.as_str()),
            "the replay carries hop-by-hop `{name}`"
        );
    }
    let mut expected = end_to_end(&sync.headers);
    let mut actual = end_to_end(&replay.headers);
    // A body the handler streamed went out chunked; the replay knows its
    // length. Framing is not the handler's header: the length must be right.
    if sync.headers.contains_key(header::TRANSFER_ENCODING) {
        assert!(!expected.contains_key("content-length"));
        let length = actual.remove("content-length").expect("a replay has a Content-Length");
        assert_eq!(length, vec![replay.body.len().to_string().into_bytes()]);
    }
    expected.retain(|_, values| !values.is_empty());
    actual.retain(|_, values| !values.is_empty());
    assert_eq!(
        actual, expected,
        "headers differ (sync: {:?}, replay: {:?})",
        sync.headers, replay.headers
    );
}

#[tokio::test]
async fn ok_with_json() {
    async fn handler() -> impl IntoResponse {
        axum::Json(serde_json::json!({ "report": "quarterly", "pages": [1, 2, 3], "ok": true, "ünïcode": "✓" }))
    }
    let both = sync_and_async(
        || Router::new().route("/reports", post(handler)),
        Method::POST,
        "/reports",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(both.sync.status, StatusCode::OK);
    assert_eq!(both.replay.header("content-type"), Some("application/json"));
    assert_eq!(both.replay.json()["pages"][2], 3);
    assert_transparent(&both);
}

#[tokio::test]
async fn created_with_repeated_headers() {
    async fn handler() -> Response {
        Response::builder()
            .status(StatusCode::CREATED)
            .header(header::LOCATION, "/things/7")
            .header(header::SET_COOKIE, "a=1; Path=/; HttpOnly")
            .header(header::SET_COOKIE, "b=2; Path=/")
            .header(header::SET_COOKIE, "c=3")
            .header("x-request-trace", "first")
            .header("x-request-trace", "second")
            .header(header::CACHE_CONTROL, "private, max-age=60")
            .header(header::ETAG, "\"v7\"")
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from("created thing 7"))
            .unwrap()
    }
    let both = sync_and_async(
        || Router::new().route("/things", post(handler)),
        Method::POST,
        "/things",
        &[("content-type", "text/plain")],
        Bytes::from_static(b"thing"),
    )
    .await;
    assert_eq!(both.sync.status, StatusCode::CREATED);
    let cookies: Vec<_> = both.replay.headers.get_all(header::SET_COOKIE).iter().collect();
    assert_eq!(cookies, ["a=1; Path=/; HttpOnly", "b=2; Path=/", "c=3"]);
    let traces: Vec<_> = both.replay.headers.get_all("x-request-trace").iter().collect();
    assert_eq!(traces, ["first", "second"]);
    // The handler's own Location, not the layer's.
    assert_eq!(both.replay.header("location"), Some("/things/7"));
    assert_transparent(&both);
}

#[tokio::test]
async fn bad_request_is_replayed() {
    async fn handler() -> impl IntoResponse {
        (
            StatusCode::BAD_REQUEST,
            [
                (header::CONTENT_TYPE, "application/problem+json"),
                (header::HeaderName::from_static("x-reason"), "pages"),
            ],
            r#"{"title":"pages must be positive","status":400}"#,
        )
    }
    let both = sync_and_async(
        || Router::new().route("/reports", post(handler)),
        Method::POST,
        "/reports",
        &[],
        Bytes::from_static(b"{\"pages\":-1}"),
    )
    .await;
    assert_eq!(both.sync.status, StatusCode::BAD_REQUEST);
    assert_eq!(both.replay.json()["title"], "pages must be positive");
    assert_transparent(&both);
}

#[tokio::test]
async fn server_error_is_replayed() {
    async fn handler() -> impl IntoResponse {
        (StatusCode::INTERNAL_SERVER_ERROR, "the database is on fire")
    }
    let both = sync_and_async(
        || Router::new().route("/reports", post(handler)),
        Method::POST,
        "/reports",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(both.sync.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(both.replay.body, "the database is on fire");
    assert_transparent(&both);
}

#[tokio::test]
async fn no_content_is_replayed() {
    async fn handler() -> impl IntoResponse {
        (
            StatusCode::NO_CONTENT,
            [(header::HeaderName::from_static("x-deleted"), "3")],
        )
    }
    let both = sync_and_async(
        || Router::new().route("/things/{id}", any(handler)),
        Method::DELETE,
        "/things/3",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(both.sync.status, StatusCode::NO_CONTENT);
    assert!(both.replay.body.is_empty());
    assert_eq!(both.replay.header("x-deleted"), Some("3"));
    assert_transparent(&both);
}

/// Every byte value, then every byte value backwards.
fn all_bytes() -> Vec<u8> {
    (0..=255u8).chain((0..=255u8).rev()).collect()
}

#[tokio::test]
async fn binary_body_is_replayed_byte_for_byte() {
    async fn handler() -> impl IntoResponse {
        ([(header::CONTENT_TYPE, "application/octet-stream")], all_bytes())
    }
    let both = sync_and_async(
        || Router::new().route("/blob", get(handler)),
        Method::GET,
        "/blob",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(both.sync.body.as_ref(), all_bytes().as_slice());
    assert_eq!(both.replay.body.len(), 512);
    assert_transparent(&both);
}

/// A response body that yields its chunks one frame at a time, going
/// `Pending` before each, and does not know its length.
struct Chunks {
    chunks: VecDeque<Bytes>,
    primed: bool,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if !self.primed {
            self.primed = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.primed = false;
        Poll::Ready(self.chunks.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }
}

fn streamed_parts() -> Vec<Bytes> {
    let mut parts: Vec<Bytes> = (0..8).map(|i| Bytes::from(format!("chunk {i} of 8;"))).collect();
    parts.push(Bytes::from(vec![0u8, 255, 10, 13]));
    parts.push(Bytes::from("x".repeat(20_000)));
    parts.push(Bytes::from_static(b"end"));
    parts
}

#[tokio::test]
async fn streamed_body_is_replayed_whole() {
    async fn handler() -> impl IntoResponse {
        let body = Chunks {
            chunks: streamed_parts().into(),
            primed: false,
        };
        ([(header::CONTENT_TYPE, "text/plain")], Body::new(body))
    }
    let both = sync_and_async(
        || Router::new().route("/stream", post(handler)),
        Method::POST,
        "/stream",
        &[],
        Bytes::new(),
    )
    .await;
    // The synchronous answer really streamed.
    assert_eq!(both.sync.header("transfer-encoding"), Some("chunked"));
    let whole: Vec<u8> = streamed_parts().concat();
    assert_eq!(both.sync.body.as_ref(), whole.as_slice());
    assert_transparent(&both);
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_replayed() {
    async fn handler() -> Response {
        Response::builder()
            .header(header::CONNECTION, "x-foo")
            .header("x-foo", "private to this hop")
            .header("keep-alive", "timeout=5, max=100")
            .header("x-kept", "end to end")
            .body(Body::from("hello"))
            .unwrap()
    }
    let both = sync_and_async(
        || Router::new().route("/hop", post(handler)),
        Method::POST,
        "/hop",
        &[],
        Bytes::new(),
    )
    .await;
    // The synchronous answer does carry them (hyper passes them on), so the
    // comparison below is meaningful.
    assert_eq!(both.sync.header("x-foo"), Some("private to this hop"));
    assert_eq!(both.sync.header("keep-alive"), Some("timeout=5, max=100"));
    assert_eq!(both.replay.status, StatusCode::OK);
    assert_eq!(both.replay.body, "hello");
    assert_eq!(both.replay.header("x-kept"), Some("end to end"));
    for name in ["connection", "x-foo", "keep-alive"] {
        assert!(
            both.replay.header(name).is_none(),
            "`{name}` must not be replayed: {:?}",
            both.replay.headers
        );
    }
    assert_transparent(&both);
}

/// A request as the handler saw it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: Method,
    path: String,
    query: Option<String>,
    headers: BTreeMap<String, Vec<Vec<u8>>>,
    body: Bytes,
}

type Recorder = Arc<Mutex<Vec<Seen>>>;

async fn record(State(recorder): State<Recorder>, request: Request) -> impl IntoResponse {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let mut headers: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        // The host names a different port for each server.
        if name != header::HOST {
            headers
                .entry(name.as_str().to_owned())
                .or_default()
                .push(value.as_bytes().to_vec());
        }
    }
    let seen = Seen {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers,
        body: body.clone(),
    };
    recorder.lock().unwrap().push(seen);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        body,
    )
}

#[tokio::test]
async fn the_handler_sees_the_same_request() {
    let sync_seen: Recorder = Arc::default();
    let async_seen: Recorder = Arc::default();
    let recorders = [Arc::clone(&sync_seen), Arc::clone(&async_seen)];
    let next = std::sync::atomic::AtomicUsize::new(0);
    let app = || {
        let recorder = Arc::clone(&recorders[next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)]);
        Router::new().route("/docs/{name}", any(record)).with_state(recorder)
    };
    let body = Bytes::from(all_bytes());
    let headers = [
        ("content-type", "application/vnd.example+octet-stream"),
        ("x-tag", "one"),
        ("x-tag", "two"),
        ("accept", "application/octet-stream"),
        ("authorization", "Bearer token-123"),
    ];
    let both = sync_and_async(
        app,
        Method::PUT,
        "/docs/report%201?draft=true&n=%C3%A9",
        &headers,
        body.clone(),
    )
    .await;
    assert_transparent(&both);
    assert_eq!(both.replay.body, body);

    let sync_seen = sync_seen.lock().unwrap().clone();
    let async_seen = async_seen.lock().unwrap().clone();
    assert_eq!(sync_seen.len(), 1);
    assert_eq!(async_seen.len(), 1, "the handler ran once as a job");
    let (sync_seen, async_seen) = (&sync_seen[0], &async_seen[0]);
    assert_eq!(sync_seen.method, Method::PUT);
    assert_eq!(sync_seen.path, "/docs/report%201");
    assert_eq!(sync_seen.query.as_deref(), Some("draft=true&n=%C3%A9"));
    assert_eq!(sync_seen.headers["x-tag"], [b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(
        sync_seen.headers["content-type"],
        [b"application/vnd.example+octet-stream".to_vec()]
    );
    assert_eq!(sync_seen.body, body);
    assert_eq!(async_seen, sync_seen);
}

/// `Prefer: wait=N` (DESIGN.md §2, submission 4): a job done within the wait
/// is answered with its own response, which is the synchronous one too.
#[tokio::test]
async fn prefer_wait_answers_with_the_synchronous_response() {
    async fn handler() -> Response {
        Response::builder()
            .status(StatusCode::CREATED)
            .header(header::SET_COOKIE, "a=1")
            .header(header::SET_COOKIE, "b=2")
            .header(header::CONNECTION, "x-foo")
            .header("x-foo", "hop")
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::new(Chunks {
                chunks: streamed_parts().into(),
                primed: false,
            }))
            .unwrap()
    }
    let app = || Router::new().route("/things", post(handler));
    let bare = serve(app()).await;
    let sync = HttpClient::new(&bare).post("/things", "x").await;
    assert_eq!(sync.status, StatusCode::CREATED);

    let layer = AcceptedLayer::new();
    let wrapped = serve(app().layer(layer.clone())).await;
    let mut direct = HttpClient::new(&wrapped)
        .send(Method::POST, "/things", &[("prefer", "wait=5")], "x")
        .await;
    assert_eq!(direct.header("preference-applied"), Some("wait=5"));
    direct.headers.remove("preference-applied");
    assert_same_response(&sync, &direct);
    // It ran as a job, which is not kept: without an Idempotency-Key nobody
    // can ask for it again.
    assert_eq!(layer.job_store().len(), 0, "a direct answer without a key is not kept");
}

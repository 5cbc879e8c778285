//! Hostile input: generated requests (proptest) against the layer, and
//! hand-written cases over raw TCP. (Every parser on arbitrary bytes is a
//! unit test of `src/fuzzing.rs`, which only tests and `cargo fuzz` build.)

use crate::common;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use tokio::io::AsyncWriteExt;
use tower::{Layer, ServiceExt};
use tower_accepted::{AcceptedLayer, RequestBody};

fn bearer(parts: &http::request::Parts) -> Option<String> {
    let value = parts.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::to_owned)
}

/// Every path under `/jobs/` is the layer's here, so that every hostile
/// path reaches its parsers (by default a path that is no job route goes to
/// the application).
fn layer() -> AcceptedLayer {
    AcceptedLayer::new()
        .claim_prefix(true)
        .owner(bearer)
        .max_wait(Duration::from_millis(20))
        .max_long_poll(Duration::from_millis(20))
        .max_body_size(64)
}

async fn inner(_request: Request<RequestBody<Full<Bytes>>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"inner"))))
}

/// Checks that an answer is a valid problem document or a valid answer of
/// the protocol, and returns a description of what failed.
fn check_answer(method: &Method, status: StatusCode, headers: &http::HeaderMap, body: &[u8]) -> Result<(), String> {
    if method == Method::HEAD {
        // The headers of the GET answer, no body.
        return if body.is_empty() && headers.contains_key("content-length") {
            Ok(())
        } else {
            Err(format!("HEAD {status}: body {body:?}"))
        };
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let json = || serde_json::from_slice::<serde_json::Value>(body).map_err(|e| format!("{status}: bad JSON {e}"));
    match content_type {
        "application/problem+json" => {
            let doc = json()?;
            let ok = doc["status"] == status.as_u16()
                && doc["type"].is_string()
                && doc["title"].is_string()
                && doc["detail"].is_string()
                // Nothing here may fail on the server's side: the wrapped
                // service always answers, and no limit (running, queued,
                // store) is within reach of the generated requests. A 5xx
                // is a bug, not an answer.
                && status.is_client_error();
            if !ok {
                return Err(format!("{status}: bad problem {doc}"));
            }
        }
        "application/json" => {
            let doc = json()?;
            let listing = doc["jobs"].is_array();
            let status_doc = doc["id"]
                .as_str()
                .is_some_and(|id| id.parse::<tower_accepted::store::JobId>().is_ok());
            if !(listing || status_doc) {
                return Err(format!("{status}: not a status document {doc}"));
            }
            if status == StatusCode::ACCEPTED && headers.get("location").is_none() {
                return Err("202 without Location".into());
            }
        }
        _ if status == StatusCode::NO_CONTENT && body.is_empty() => {}
        _ if status == StatusCode::OK && body == b"inner" => {}
        _ => {
            return Err(format!(
                "{status} {content_type:?}: unexpected answer {:?}",
                String::from_utf8_lossy(body)
            ));
        }
    }
    Ok(())
}

fn segment() -> impl Strategy<Value = String> {
    let pool = prop::sample::select(vec![
        "a",
        "f",
        "0",
        "9",
        "-",
        "%",
        "%2e",
        "%2F",
        "%00",
        ".",
        "..",
        "/",
        "//",
        "{",
        "}",
        "~",
        "A",
        "result",
        "jobs",
        "9b2f3c1e-1111-4222-8333-444455556666",
        "9B2F3C1E-1111-4222-8333-444455556666",
    ]);
    prop::collection::vec(pool, 0..8).prop_map(|parts| parts.concat())
}

fn query() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec!["wait", "limit", "cursor", "x", ""]);
    let value = prop::sample::select(vec![
        "",
        "0",
        "1",
        "0.001",
        "-1",
        "1e3",
        "abc",
        "99999999999999999999999",
        "%20",
        "0000019a9b2f3c1e9b2f3c1e00004000800000000000000000",
    ]);
    prop::collection::vec((name, value), 0..4).prop_map(|pairs| {
        pairs
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn header_text() -> impl Strategy<Value = String> {
    // Visible ASCII, spaces and tabs: what a header value may hold as text.
    prop::collection::vec(
        prop::sample::select((0x20u8..0x7f).chain([b'\t']).collect::<Vec<_>>()),
        0..40,
    )
    .prop_map(|bytes| String::from_utf8(bytes).unwrap_or_default())
}

#[derive(Debug, Clone)]
struct Generated {
    method: Method,
    path: String,
    query: String,
    prefer: Option<String>,
    key: Option<String>,
    user: Option<String>,
    body: Vec<u8>,
}

fn generated() -> impl Strategy<Value = Generated> {
    let method = prop::sample::select(vec![
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::DELETE,
        Method::PUT,
        Method::PATCH,
        Method::OPTIONS,
    ]);
    let prefix = prop::sample::select(vec!["/jobs/", "/jobs", "/", "/jobs//", "/reports/", "/jobs/x/"]);
    (
        method,
        prefix,
        segment(),
        query(),
        prop::option::of(header_text()),
        prop::option::of(header_text()),
        prop::option::of(prop::sample::select(vec!["alice", "bob", ""])),
        prop::collection::vec(any::<u8>(), 0..100),
    )
        .prop_map(|(method, prefix, segment, query, prefer, key, user, body)| Generated {
            method,
            path: format!("{prefix}{segment}"),
            query,
            prefer,
            key,
            user: user.map(str::to_owned),
            body,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn generated_requests_get_valid_answers(request in generated()) {
        let uri = if request.query.is_empty() { request.path.clone() } else { format!("{}?{}", request.path, request.query) };
        // Only what `http` accepts as a URI reaches a server at all.
        let Ok(uri) = uri.parse::<Uri>() else { return Ok(()) };
        let mut builder = Request::builder().method(request.method.clone()).uri(uri);
        if let Some(prefer) = &request.prefer {
            builder = builder.header("prefer", prefer.as_str());
        }
        if let Some(key) = &request.key {
            builder = builder.header("idempotency-key", key.as_str());
        }
        if let Some(user) = &request.user {
            builder = builder.header("authorization", format!("Bearer {user}"));
        }
        let http_request = builder.body(Full::new(Bytes::from(request.body.clone()))).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (status, headers, body) = runtime.block_on(async {
            let service = layer().layer(tower::service_fn(inner));
            let response = tokio::time::timeout(Duration::from_secs(10), service.oneshot(http_request))
                .await
                .expect("an answer within 10 s")
                .unwrap();
            let (parts, body) = response.into_parts();
            (parts.status, parts.headers, body.collect().await.unwrap().to_bytes())
        });
        let checked = check_answer(&request.method, status, &headers, &body);
        prop_assert!(checked.is_ok(), "{:?} -> {:?}", request, checked);
    }
}

/// Sends raw bytes on a fresh connection and returns the status line.
async fn raw(server: &common::Server, request: &[u8]) -> String {
    common::tcp::status_line(server.addr, request).await
}

fn app() -> axum::Router {
    axum::Router::new()
        .route("/work", axum::routing::post(|| async { "done" }))
        .layer(layer().max_long_poll(Duration::from_secs(30)))
}

#[tokio::test]
async fn hand_written_hostile_requests() {
    let server = common::serve(app()).await;
    let client = common::HttpClient::new(&server);
    let long_id = format!("/jobs/{}", "a".repeat(10_000));
    for path in [
        long_id.as_str(),
        "/jobs/..%2f..%2fetc%2fpasswd",
        "/jobs/../jobs/x",
        "/jobs//9b2f3c1e-1111-4222-8333-444455556666",
        "/jobs/9b2f3c1e-1111-4222-8333-444455556666%00",
        "/jobs/%E2%82%AC",
        "/jobs/{9b2f3c1e-1111-4222-8333-444455556666}",
    ] {
        let answer = client.get(path).await;
        assert!(
            matches!(answer.status, StatusCode::NOT_FOUND | StatusCode::URI_TOO_LONG),
            "{path}: {}",
            answer.status
        );
        if answer.status == StatusCode::NOT_FOUND {
            answer.assert_problem(StatusCode::NOT_FOUND);
        }
    }
    // Non-UTF-8 bytes in the path never reach the layer as text: the server
    // refuses them, and goes on serving.
    let line = raw(
        &server,
        b"GET /jobs/\xff\xfe HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 4"), "{line}");
    // A huge Prefer and a thousand repeated ones.
    let huge = format!("wait={}", "9".repeat(60_000));
    let answer = client
        .send(Method::POST, "/work", &[("prefer", huge.as_str())], "")
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let mut many = String::from("POST /work HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n");
    for _ in 0..1000 {
        many.push_str("prefer: wait=1\r\n");
    }
    many.push_str("\r\n");
    let line = raw(&server, many.as_bytes()).await;
    assert!(
        line.starts_with("HTTP/1.1 202") || line.starts_with("HTTP/1.1 431"),
        "{line}"
    );
    // Still serving.
    assert_eq!(client.post("/work", "").await.status, StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_go_away_leave_nothing_behind() {
    use tokio::io::AsyncReadExt;

    let metrics = tokio::runtime::Handle::current().metrics();
    // A job held running until the end, so that its long polls really wait.
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let held = std::sync::Arc::clone(&gate);
    let app = axum::Router::new()
        .route("/work", axum::routing::post(|| async { "done" }))
        .route(
            "/held",
            axum::routing::post(move || {
                let held = std::sync::Arc::clone(&held);
                async move {
                    let _permit = held.acquire().await;
                    "released"
                }
            }),
        )
        .layer(layer().max_long_poll(Duration::from_secs(30)));
    let server = common::serve(app).await;
    // Before any client came: the server's accept loop, nothing else. (A
    // baseline taken after a client left could still count its connection.)
    let baseline = metrics.num_alive_tasks();
    let client = common::HttpClient::new(&server);
    let monitor = client.post("/held", "").await.location();
    drop(client);

    // Each client sends its request and goes away (its FIN, as a dropped
    // socket sends), but keeps reading: the end of what it reads is the
    // server closing the connection, so the check below cannot pass before
    // the server even took the connections in.
    let mut gone = Vec::new();
    for _ in 0..20 {
        // A long poll (of a job that is running: it would wait 30 s) whose
        // client leaves at once.
        let request = format!("GET {monitor}?wait=30 HTTP/1.1\r\nhost: x\r\n\r\n");
        // A body that stops half way.
        let half = b"POST /work HTTP/1.1\r\nhost: x\r\ncontent-length: 50\r\n\r\nhalf";
        for bytes in [request.as_bytes(), &half[..]] {
            let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
            stream.write_all(bytes).await.unwrap();
            stream.shutdown().await.unwrap();
            gone.push(stream);
        }
    }
    for (i, mut stream) in gone.into_iter().enumerate() {
        let mut sink = Vec::new();
        // An error (a reset) is a close too.
        let closed = tokio::time::timeout(common::wait::WAIT_WITHIN, stream.read_to_end(&mut sink)).await;
        assert!(
            closed.is_ok(),
            "client {i}: the server kept the connection open for {:?}",
            common::wait::WAIT_WITHIN
        );
    }
    // The held job ends now; its task is the last that may count.
    gate.add_permits(1);
    common::until_some("every task of the clients that left to end", || {
        let alive = metrics.num_alive_tasks();
        async move {
            if alive <= baseline {
                Ok(())
            } else {
                Err(format!("{alive} tasks alive, {baseline} before the clients came"))
            }
        }
    })
    .await;
}

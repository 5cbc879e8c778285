//! The layer on plain hyper 1, without axum: a `tower::service_fn` handler
//! behind `AcceptedLayer`, served by hyper's HTTP/1 connection builder.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tower::{Layer, ServiceBuilder, service_fn};
use tower_accepted::{AcceptedLayer, Job, RequestBody};

/// The wrapped service: echoes the request body after a short delay, with
/// its content type, its length, the method and the job's id.
async fn handler(request: Request<RequestBody<Incoming>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let job = parts.extensions.get::<Job>().cloned();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let mut response = Response::new(Full::new(Bytes::from(format!("unreadable body: {e}"))));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(response);
        }
    };
    let delay = parts
        .uri
        .query()
        .and_then(|q| q.strip_prefix("delay_ms="))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(100);
    if let Some(job) = &job {
        job.set_message("echoing");
        job.set_progress(0.5);
    }
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let mut response = Response::builder()
        .status(StatusCode::CREATED)
        .header("x-method", parts.method.as_str())
        .header("x-len", body.len().to_string())
        .header(
            "x-job-id",
            job.map(|j| j.id().to_string()).unwrap_or_else(|| "none".into()),
        )
        .header("set-cookie", "a=1")
        .header("set-cookie", "b=2");
    if let Some(content_type) = parts.headers.get("content-type") {
        response = response.header("content-type", content_type);
    }
    Ok(response.body(Full::new(body)).unwrap())
}

/// Serves `layer` around the handler on 127.0.0.1 with hyper alone.
async fn serve(layer: AcceptedLayer) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let service = ServiceBuilder::new().layer(layer).service(service_fn(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

struct TestClient {
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    base: String,
}

impl TestClient {
    fn new(addr: SocketAddr) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{addr}"),
        }
    }

    async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Bytes) -> Answer {
        let mut request = Request::builder().method(method).uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body)).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(20), self.client.request(request))
            .await
            .expect("an answer within 20 s")
            .expect("the request went through");
        let (parts, body) = response.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    /// Long-polls the monitor until the job has ended.
    async fn until_done(&self, monitor: &str) -> Answer {
        for _ in 0..20 {
            let answer = self.get(&format!("{monitor}?wait=5")).await;
            if !matches!(answer.json()["status"].as_str(), Some("pending" | "running")) {
                return answer;
            }
        }
        panic!("the job at {monitor} did not end");
    }
}

#[tokio::test]
async fn submit_poll_and_fetch_on_plain_hyper() {
    let (addr, server) = serve(AcceptedLayer::new()).await;
    let client = TestClient::new(addr);
    let body: Bytes = (0..50_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();

    let accepted = client
        .send(
            Method::POST,
            "/upload",
            &[("content-type", "application/x-blob")],
            body.clone(),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
    let monitor = accepted.header("location").expect("Location").to_owned();
    assert!(monitor.starts_with("/jobs/"), "{monitor}");
    assert_eq!(accepted.header("operation-location"), Some(monitor.as_str()));
    assert!(accepted.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    let id = accepted.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(monitor, format!("/jobs/{id}"));

    let done = client.until_done(&monitor).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let doc = done.json();
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(doc["result_status"], 201);
    assert_eq!(doc["message"], "echoing");
    assert_eq!(doc["progress"], 0.5);
    let result_link = done.header("location").expect("Location of the result").to_owned();
    assert_eq!(result_link, format!("/jobs/{id}/result"));

    let result = client.get(&result_link).await;
    assert_eq!(result.status, StatusCode::CREATED);
    assert_eq!(result.header("content-type"), Some("application/x-blob"));
    assert_eq!(result.header("x-method"), Some("POST"));
    assert_eq!(result.header("x-len"), Some("50000"));
    assert_eq!(result.header("x-job-id"), Some(id.as_str()), "the handler saw its Job");
    let cookies: Vec<_> = result.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(result.body.len(), body.len());
    assert!(result.body == body, "the body came back changed");
    server.abort();
}

#[tokio::test]
async fn job_routes_answer_on_plain_hyper() {
    let (addr, server) = serve(AcceptedLayer::new()).await;
    let client = TestClient::new(addr);

    // Cancel a job that is still running.
    let accepted = client
        .send(Method::POST, "/slow?delay_ms=10000", &[], Bytes::from_static(b"x"))
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let monitor = accepted.header("location").unwrap().to_owned();
    let running = client.get(&monitor).await;
    assert_eq!(running.status, StatusCode::OK);
    assert!(running.header("retry-after").is_some());
    let early = client.get(&format!("{monitor}/result")).await;
    assert_eq!(early.status, StatusCode::NOT_FOUND);
    assert_eq!(early.header("content-type"), Some("application/problem+json"));

    let deleted = client.send(Method::DELETE, &monitor, &[], Bytes::new()).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let canceled = client.get(&monitor).await;
    assert_eq!(canceled.status, StatusCode::OK);
    assert_eq!(canceled.json()["status"], "canceled");
    let result = client.get(&format!("{monitor}/result")).await;
    assert_eq!(result.status, StatusCode::CONFLICT);
    assert_eq!(result.json()["status"], 409);

    let unknown = client.get("/jobs/00000000-0000-4000-8000-000000000000").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.header("content-type"), Some("application/problem+json"));
    assert_eq!(unknown.json()["status"], 404);
    server.abort();
}

#[tokio::test]
async fn requests_not_deferred_stream_straight_through() {
    let layer = AcceptedLayer::new().defer_if(|parts| parts.method == Method::POST);
    let (addr, server) = serve(layer).await;
    let client = TestClient::new(addr);
    let body = Bytes::from_static(b"put straight through");
    let answer = client
        .send(
            Method::PUT,
            "/direct?delay_ms=0",
            &[("content-type", "text/plain")],
            body.clone(),
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::CREATED,
        "the handler's own answer, not a 202"
    );
    assert_eq!(answer.header("location"), None);
    assert_eq!(answer.header("x-method"), Some("PUT"));
    assert_eq!(
        answer.header("x-job-id"),
        Some("none"),
        "no job for a request let through"
    );
    assert_eq!(answer.header("content-type"), Some("text/plain"));
    assert_eq!(answer.body, body);
    server.abort();
}

#[tokio::test]
async fn layer_applied_with_layer_layer() {
    // `Layer::layer` directly, the way hyper users without ServiceBuilder
    // write it; and a handler as a Clone service.
    let service = AcceptedLayer::new().layer(service_fn(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    let client = TestClient::new(addr);
    let accepted = client
        .send(Method::POST, "/x?delay_ms=0", &[], Bytes::from_static(b"hello"))
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let done = client.until_done(accepted.header("location").unwrap()).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let result = client.get(done.header("location").unwrap()).await;
    assert_eq!(result.status, StatusCode::CREATED);
    assert_eq!(result.body, "hello");
    server.abort();
}

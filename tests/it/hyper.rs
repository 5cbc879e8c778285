//! The layer on plain hyper 1, without axum: a `tower::service_fn` handler
//! behind `AcceptedLayer`, served by hyper's HTTP/1 connection builder.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tower::{Layer, ServiceBuilder, service_fn};
use tower_accepted::{AcceptedLayer, Job, RequestBody};

use crate::common::{self, HttpClient, Server};

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
async fn serve(layer: AcceptedLayer) -> Server {
    common::serve_hyper(ServiceBuilder::new().layer(layer).service(service_fn(handler))).await
}

#[tokio::test]
async fn submit_poll_and_fetch_on_plain_hyper() {
    let server = serve(AcceptedLayer::new()).await;
    let client = HttpClient::new(&server);
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
    drop(server);
}

#[tokio::test]
async fn job_routes_answer_on_plain_hyper() {
    let server = serve(AcceptedLayer::new()).await;
    let client = HttpClient::new(&server);

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
    drop(server);
}

#[tokio::test]
async fn requests_not_deferred_stream_straight_through() {
    let layer = AcceptedLayer::new().defer_if(|parts| parts.method == Method::POST);
    let server = serve(layer).await;
    let client = HttpClient::new(&server);
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
    drop(server);
}

#[tokio::test]
async fn layer_applied_with_layer_layer() {
    // `Layer::layer` directly, the way hyper users without ServiceBuilder
    // write it; and a handler as a Clone service.
    let service = AcceptedLayer::new().layer(service_fn(handler));
    // Not a `Clone` of a `ServiceBuilder` stack: the layer's own service.
    let server = common::serve_hyper(service).await;
    let client = HttpClient::new(&server);
    let accepted = client
        .send(Method::POST, "/x?delay_ms=0", &[], Bytes::from_static(b"hello"))
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let done = client.until_done(accepted.header("location").unwrap()).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let result = client.get(done.header("location").unwrap()).await;
    assert_eq!(result.status, StatusCode::CREATED);
    assert_eq!(result.body, "hello");
    drop(server);
}

//! Expiry of finished jobs and `410 Gone`, with tokio's clock paused so that
//! hours pass at once. In-process (`oneshot`): the behaviour is the store's
//! clock, not the network.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt};
use tower_accepted::{Accepted, AcceptedLayer, MemoryStore};

type Inner = tower::util::ServiceFn<fn(Request<tower_accepted::RequestBody<Body>>) -> Ready>;
type Ready = std::future::Ready<Result<Response<Body>, Infallible>>;

fn done(_request: Request<tower_accepted::RequestBody<Body>>) -> Ready {
    std::future::ready(Ok(Response::new(Body::from("finished"))))
}

fn service(ttl: Duration, tombstones: usize, tombstone_ttl: Duration) -> Accepted<Inner, MemoryStore> {
    let store = MemoryStore::builder()
        .ttl(ttl)
        .tombstones(tombstones, tombstone_ttl)
        .build();
    service_on(store)
}

fn service_on(store: MemoryStore) -> Accepted<Inner, MemoryStore> {
    AcceptedLayer::new()
        .store(store)
        .layer(tower::service_fn(done as fn(_) -> _))
}

async fn call(service: &Accepted<Inner, MemoryStore>, method: Method, uri: &str) -> (StatusCode, Bytes) {
    let request = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    let status = response.status();
    (status, response.into_body().collect().await.unwrap().to_bytes())
}

async fn submit_and_finish(service: &Accepted<Inner, MemoryStore>) -> String {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/work")
        .body(Body::empty())
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let monitor = response.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let (status, _) = call(service, Method::GET, &format!("{monitor}?wait=10")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    monitor
}

fn problem_status(body: &Bytes) -> u64 {
    let doc: serde_json::Value = serde_json::from_slice(body).unwrap();
    doc["status"].as_u64().unwrap()
}

#[tokio::test(start_paused = true)]
async fn finished_jobs_expire_then_answer_gone_then_unknown() {
    let service = service(Duration::from_secs(3600), 100, Duration::from_secs(24 * 3600));
    let monitor = submit_and_finish(&service).await;
    let result = format!("{monitor}/result");

    tokio::time::advance(Duration::from_secs(3599)).await;
    let (status, body) = call(&service, Method::GET, &result).await;
    assert_eq!(
        (status, &body[..]),
        (StatusCode::OK, &b"finished"[..]),
        "still there just before the TTL"
    );

    tokio::time::advance(Duration::from_secs(2)).await;
    for (method, uri) in [
        (Method::GET, &monitor),
        (Method::HEAD, &monitor),
        (Method::GET, &result),
        (Method::DELETE, &monitor),
    ] {
        let (status, body) = call(&service, method.clone(), uri).await;
        assert_eq!(status, StatusCode::GONE, "{method} {uri}");
        if method != Method::HEAD {
            assert_eq!(problem_status(&body), 410);
        }
    }

    tokio::time::advance(Duration::from_secs(24 * 3600)).await;
    let (status, body) = call(&service, Method::GET, &monitor).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "tombstones are forgotten after their time"
    );
    assert_eq!(problem_status(&body), 404);
}

#[tokio::test(start_paused = true)]
async fn deleted_jobs_are_unknown_not_gone() {
    let service = service(Duration::from_secs(60), 100, Duration::from_secs(3600));
    let monitor = submit_and_finish(&service).await;
    let (status, _) = call(&service, Method::DELETE, &monitor).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&service, Method::GET, &monitor).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    tokio::time::advance(Duration::from_secs(120)).await;
    let (status, _) = call(&service, Method::GET, &monitor).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a forgotten job leaves no tombstone");
}

#[tokio::test(start_paused = true)]
async fn tombstones_are_bounded() {
    // Room for one tombstone: older expired ids fall back to 404.
    let store = MemoryStore::builder()
        .ttl(Duration::from_secs(10))
        .tombstones(1, Duration::from_secs(3600))
        .build();
    let service = service_on(store.clone());
    let mut monitors = Vec::new();
    for _ in 0..300 {
        monitors.push(submit_and_finish(&service).await);
    }
    tokio::time::advance(Duration::from_secs(11)).await;
    store.purge_expired();
    assert_eq!(store.len(), 0);
    let mut gone = 0;
    for monitor in &monitors {
        let (status, _) = call(&service, Method::GET, monitor).await;
        assert!(matches!(status, StatusCode::GONE | StatusCode::NOT_FOUND), "{status}");
        gone += usize::from(status == StatusCode::GONE);
    }
    assert_eq!(gone, 1, "one tombstone is kept, for the id that expired last");
}

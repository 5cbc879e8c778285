//! Helpers of the following client's tests: a `Follow` over hyper's client.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};
use tower_accepted::client::FollowLayer;
use tower_accepted::client::{Follow, FollowError};

use crate::common::Answer;

pub type Http = Client<HttpConnector, Full<Bytes>>;
pub type Error = FollowError<hyper_util::client::legacy::Error>;

/// hyper's HTTP/1 client.
pub fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The following client over hyper's, configured by `layer`.
pub fn follower(layer: FollowLayer) -> Follow<Http> {
    layer.layer(http())
}

/// A layer that polls fast: stand-in servers send small `Retry-After`s.
pub fn fast() -> FollowLayer {
    FollowLayer::new()
        .min_interval(Duration::from_millis(10))
        .initial_interval(Duration::from_millis(20))
        .max_interval(Duration::from_millis(200))
}

/// Sends a request through `client` and reads the final answer whole; the
/// whole call is bounded (60 s) so that a test never hangs.
pub async fn call(
    client: &Follow<Http>,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Answer, Error> {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, HeaderValue::from_str(value).unwrap());
    }
    let request = request.body(Full::new(body.into())).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(60), client.clone().oneshot(request))
        .await
        .expect("the following client ended within 60 s")?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("the final body reads").to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

pub async fn post(client: &Follow<Http>, url: &str, body: impl Into<Bytes>) -> Result<Answer, Error> {
    call(client, Method::POST, url, &[], body).await
}

/// A request as a stand-in server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: http::HeaderMap,
    pub at: std::time::Instant,
}

/// Every request a stand-in server received, in order.
#[derive(Clone, Default)]
pub struct Log(std::sync::Arc<std::sync::Mutex<Vec<Seen>>>);

impl Log {
    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    /// The requests for `path` (with its query).
    pub fn to(&self, path: &str) -> Vec<Seen> {
        self.all().into_iter().filter(|s| s.path == path).collect()
    }

    pub fn paths(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect()
    }
}

/// `router` with every request it receives logged.
pub fn logged(router: axum::Router) -> (axum::Router, Log) {
    let log = Log::default();
    let sink = log.clone();
    let router = router.layer(tower::util::MapRequestLayer::new(
        move |request: Request<axum::body::Body>| {
            sink.0.lock().unwrap().push(Seen {
                method: request.method().clone(),
                path: request
                    .uri()
                    .path_and_query()
                    .map_or_else(|| request.uri().path().to_owned(), |pq| pq.as_str().to_owned()),
                headers: request.headers().clone(),
                at: std::time::Instant::now(),
            });
            request
        },
    ));
    (router, log)
}

/// A counter shared by a stand-in server's handlers.
#[derive(Clone, Default)]
pub struct Counter(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Counter {
    /// Adds one; gives the count before.
    pub fn next(&self) -> usize {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    pub fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

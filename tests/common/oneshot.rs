//! Calling a router in process (`ServiceExt::oneshot`, no TCP), as the
//! tests on tokio's paused clock do: there, the clock only moves when every
//! task waits, so a call's duration is exact, on any machine.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower::ServiceExt;

use super::http::Answer;

/// One request to `app`, in process, body included; the answer and how
/// long it took on the (paused) clock.
pub async fn call(app: &Router, method: Method, path: &str, headers: &[(&str, &str)]) -> (Answer, Duration) {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let started = Instant::now();
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .expect("the router is infallible");
    let (parts, body) = response.into_parts();
    let body: Bytes = body.collect().await.expect("the body").to_bytes();
    let took = started.elapsed();
    (
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        },
        took,
    )
}

/// Asserts that `took` is `expected` on the paused clock (a timer fires at
/// its deadline rounded up to the next millisecond, hence the margin).
pub fn assert_took(took: Duration, expected: Duration, what: &str) {
    assert!(
        took >= expected && took < expected + Duration::from_millis(20),
        "{what} took {took:?}, not {expected:?}"
    );
}

//! Timing semantics (long polls, `Prefer: wait`, `max_wait`, the grace
//! period, `max_long_poll`) on tokio's paused clock, calling the layered
//! router in process (`ServiceExt::oneshot`, no TCP): the clock only moves
//! when every task waits, so a wait of 200 ms takes 200 ms of that clock
//! exactly, on any machine, at no cost in real time. The HTTP tests in
//! `contract.rs` keep to wire behaviour.

use std::time::Duration;

use axum::Router;
use http::{Method, StatusCode};
use tower_accepted::AcceptedLayer;

use crate::common::oneshot::{assert_took, call};
use crate::contract::{Accepted, assert_accepted, retry_after, routes};

/// The contract's routes behind `layer`, as the HTTP tests serve them.
fn app(layer: AcceptedLayer) -> Router {
    routes().layer(layer)
}

async fn submit(app: &Router, path: &str) -> Accepted {
    assert_accepted(&call(app, Method::POST, path, &[]).await.0)
}

#[tokio::test(start_paused = true)]
async fn long_poll_with_query_wait_answers_when_the_job_ends() {
    let app = app(AcceptedLayer::new());
    let job = submit(&app, "/sleep/300").await;
    let (answer, took) = call(&app, Method::GET, &format!("{}?wait=20", job.monitor), &[]).await;
    assert_took(took, Duration::from_millis(300), "a long poll of a 300 ms job");
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{answer:?}");
    assert_eq!(answer.json()["status"], "succeeded");
    assert!(answer.header("preference-applied").is_none(), "no Prefer was sent");

    // An ended job answers at once, whatever the wait.
    let (again, took) = call(&app, Method::GET, &format!("{}?wait=20", job.monitor), &[]).await;
    assert_eq!(took, Duration::ZERO, "an ended job was waited for");
    assert_eq!(again.status, StatusCode::SEE_OTHER);
}

#[tokio::test(start_paused = true)]
async fn long_poll_with_prefer_wait_answers_when_the_job_ends_and_says_so() {
    let app = app(AcceptedLayer::new());
    let job = submit(&app, "/sleep/300").await;
    let (answer, took) = call(&app, Method::GET, &job.monitor, &[("prefer", "wait=20")]).await;
    assert_took(took, Duration::from_millis(300), "a long poll of a 300 ms job");
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{answer:?}");
    assert_eq!(answer.json()["status"], "succeeded");
    assert_eq!(answer.header("preference-applied"), Some("wait=20"));
}

#[tokio::test(start_paused = true)]
async fn huge_wait_is_capped_by_the_configured_maximum() {
    let app = app(AcceptedLayer::new().max_long_poll(Duration::from_millis(300)));
    let job = submit(&app, "/forever").await;
    let huge = "9".repeat(40);
    let requests: [(String, Vec<(&str, String)>); 3] = [
        (format!("{}?wait=99999999999", job.monitor), vec![]),
        (format!("{}?wait={huge}", job.monitor), vec![]),
        (job.monitor.clone(), vec![("prefer", "wait=99999999999".to_owned())]),
    ];
    for (path, headers) in &requests {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (answer, took) = call(&app, Method::GET, path, &headers).await;
        assert_took(took, Duration::from_millis(300), &format!("{path} {headers:?}"));
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.json()["status"], "running");
        retry_after(&answer);
    }
}

#[tokio::test(start_paused = true)]
async fn long_poll_answers_when_the_job_is_canceled_meanwhile() {
    let app = app(AcceptedLayer::new());
    let job = submit(&app, "/forever").await;
    let poller = app.clone();
    let path = format!("{}?wait=20", job.monitor);
    let poll = tokio::spawn(async move { call(&poller, Method::GET, &path, &[]).await });
    // 300 ms of the paused clock pass only once the poll waits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "the long poll on a running job answered early");
    let (deleted, _) = call(&app, Method::DELETE, &job.monitor, &[]).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let (answer, took) = poll.await.unwrap();
    assert_took(
        took,
        Duration::from_millis(300),
        "a long poll ended by a cancel at 300 ms",
    );
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["status"], "canceled");
}

#[tokio::test(start_paused = true)]
async fn prefer_wait_at_submission_returns_the_handler_response() {
    let app = app(AcceptedLayer::new());
    let (answer, took) = call(&app, Method::POST, "/sleep/100", &[("prefer", "wait=5")]).await;
    assert_took(took, Duration::from_millis(100), "a 100 ms handler under wait=5");
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body, "slept 100 ms");
    assert_eq!(answer.header("preference-applied"), Some("wait=5"));
    assert!(answer.header("location").is_none() && answer.header("operation-location").is_none());

    // A failing handler's own response comes back as it is.
    let (answer, _) = call(&app, Method::POST, "/status/422", &[("prefer", "wait=5")]).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.body, "the handler says 422");
    assert_eq!(answer.header("preference-applied"), Some("wait=5"));

    // A job that fails without a response within the wait gets the result
    // route's problem (a documented decision of the crate).
    crate::common::panics::quiet_for_good("deliberate panic in a contract test handler");
    let (answer, _) = call(&app, Method::POST, "/panic", &[("prefer", "wait=5")]).await;
    let problem = answer.assert_problem(StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(problem["code"], "panicked");

    // An invalid wait is ignored (RFC 7240): the request is accepted at once.
    let (answer, took) = call(&app, Method::POST, "/sleep/100", &[("prefer", "wait=soon")]).await;
    assert_eq!(took, Duration::ZERO, "an invalid wait was waited for");
    assert_accepted(&answer);
    assert!(answer.header("preference-applied").is_none());
}

#[tokio::test(start_paused = true)]
async fn prefer_wait_past_the_maximum_gets_202() {
    let app = app(AcceptedLayer::new().max_wait(Duration::from_millis(200)));
    let (answer, took) = call(&app, Method::POST, "/sleep/3000", &[("prefer", "wait=5")]).await;
    assert_took(took, Duration::from_millis(200), "wait=5 capped by max_wait");
    let job = assert_accepted(&answer);
    assert_eq!(job.monitor, format!("/jobs/{}", job.id));
    let (answer, _) = call(&app, Method::GET, &job.monitor, &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(matches!(answer.json()["status"].as_str(), Some("pending" | "running")));
}

#[tokio::test(start_paused = true)]
async fn grace_period_returns_quick_responses_directly() {
    let app = app(AcceptedLayer::new().grace_period(Duration::from_millis(1500)));
    let (answer, took) = call(&app, Method::POST, "/sleep/100", &[]).await;
    assert_took(
        took,
        Duration::from_millis(100),
        "a 100 ms handler within the grace period",
    );
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body, "slept 100 ms");
    assert!(answer.header("preference-applied").is_none(), "no preference was sent");
    assert!(answer.header("location").is_none());

    // Slower than the grace period: accepted when it ends.
    let (answer, took) = call(&app, Method::POST, "/sleep/4000", &[]).await;
    assert_took(took, Duration::from_millis(1500), "a 4 s handler past the grace period");
    assert_accepted(&answer);
}

//! The layer's `tracing` spans and events, seen by a subscriber of the
//! test's own (`common::traces`), over real HTTP on 127.0.0.1.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::post;
use http::StatusCode;
use tokio::sync::Semaphore;
use tower_accepted::AcceptedLayer;
use tracing::{Instrument as _, Level};

use common::traces::Traces;
use common::{HttpClient, serve, submit, until};

/// Each request in a span of its own, as tower-http's `TraceLayer` makes
/// one: the span the job follows from.
async fn request_span(request: Request, next: Next) -> Response {
    let span = tracing::info_span!("request", marker = "submitting", path = %request.uri().path());
    next.run(request).instrument(span).await
}

async fn working() -> &'static str {
    tracing::info!(target: "app", "working on it");
    "done"
}

#[tokio::test]
async fn a_handlers_events_carry_the_job_id_and_the_job_follows_the_request() {
    let traces = Traces::default();
    let _installed = traces.install();
    let app = Router::new()
        .route("/work", post(working))
        .layer(AcceptedLayer::new())
        .layer(middleware::from_fn(request_span));
    let server = serve(app).await;
    let client = HttpClient::new(&server);
    let monitor = submit(&client, "/work", "").await;
    let id = monitor.rsplit('/').next().unwrap().to_owned();
    client.until_done(&monitor).await;
    until("the job's end is logged", || {
        !traces.with_message("job succeeded").is_empty()
    })
    .await;

    // The handler's own event, in the job's span, not in the request's.
    let handler = traces.with_message("working on it");
    assert_eq!(handler.len(), 1, "{handler:#?}");
    let job = handler[0]
        .job_span()
        .unwrap_or_else(|| panic!("the handler's event is in the job span: {:#?}", handler[0]));
    assert_eq!(job.fields.get("job.id").map(String::as_str), Some(id.as_str()));
    assert_eq!(job.fields.get("http.request.method").map(String::as_str), Some("POST"));
    assert_eq!(job.fields.get("url.path").map(String::as_str), Some("/work"));
    assert_eq!(job.fields.get("job.attempt").map(String::as_str), Some("1"));
    assert!(
        handler[0].scope.iter().all(|span| span.name != "request"),
        "the job is not a child of the request: {:?}",
        handler[0].scope
    );

    // The job's span follows from the submitting request's.
    let links: Vec<_> = traces
        .follows()
        .into_iter()
        .filter(|(span, _)| span.name == "job" && span.fields.get("job.id") == Some(&id))
        .collect();
    assert_eq!(links.len(), 1, "{links:#?}");
    assert_eq!(links[0].1.name, "request");
    assert_eq!(links[0].1.fields.get("marker").map(String::as_str), Some("submitting"));

    // Its life: accepted (in the request), started (in the job), succeeded.
    let accepted = traces.with_message("job accepted");
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].level, Level::DEBUG);
    assert_eq!(accepted[0].field("job.id"), Some(id.as_str()));
    assert!(accepted[0].scope.iter().any(|span| span.name == "request"));
    let started = traces.with_message("job started");
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].level, Level::DEBUG);
    assert!(started[0].job_span().is_some());
    assert!(started[0].field("wait_ms").is_some());
    let succeeded = traces.with_message("job succeeded");
    assert_eq!(succeeded.len(), 1);
    assert_eq!(succeeded[0].level, Level::INFO);
    assert_eq!(succeeded[0].field("job.id"), Some(id.as_str()));
    assert!(succeeded[0].field("duration_ms").is_some());
    assert!(succeeded[0].field("wait_ms").is_some());
    // Nothing above INFO for a job that went well.
    let loud: Vec<_> = traces
        .events()
        .into_iter()
        .filter(|e| e.target.starts_with("tower_accepted") && e.level <= Level::WARN)
        .collect();
    assert!(loud.is_empty(), "{loud:#?}");
}

#[tokio::test]
async fn a_panic_is_one_error_event_with_its_payload_kept_from_the_client() {
    const PAYLOAD: &str = "boom: telemetry payload 4821";
    let _quiet = common::panics::QuietPanics::install(PAYLOAD);
    let traces = Traces::default();
    let _installed = traces.install();
    let app = Router::new()
        .route(
            "/panic",
            post(|| async {
                if true {
                    panic!("{PAYLOAD}");
                }
                "never"
            }),
        )
        .layer(AcceptedLayer::new());
    let server = serve(app).await;
    let client = HttpClient::new(&server);
    let monitor = submit(&client, "/panic", "").await;
    let id = monitor.rsplit('/').next().unwrap().to_owned();
    let done = client.until_done(&monitor).await;
    let document = String::from_utf8_lossy(&done.body).into_owned();
    assert!(!document.contains("4821"), "the payload stays server-side: {document}");

    let errors: Vec<_> = traces
        .events()
        .into_iter()
        .filter(|e| e.level == Level::ERROR)
        .collect();
    assert_eq!(errors.len(), 1, "{:#?}", traces.events());
    assert_eq!(errors[0].field("panic"), Some(PAYLOAD));
    assert_eq!(errors[0].field("job.id"), Some(id.as_str()));
    assert_eq!(errors[0].field("error.code"), Some("panicked"));
    assert!(errors[0].job_span().is_some());
    // And no second report of the same failure.
    assert!(traces.with_message("job failed").is_empty());
}

#[tokio::test]
async fn refusals_warn_once_a_second_with_the_count_held_back() {
    let traces = Traces::default();
    let _installed = traces.install();
    let gate = Arc::new(Semaphore::new(0));
    let app = Router::new()
        .route("/held", common::gate::held(&gate, "done"))
        .layer(AcceptedLayer::new().max_running(1).max_queued(0));
    let server = serve(app).await;
    let client = HttpClient::new(&server);
    let monitor = submit(&client, "/held", "").await;

    let refusals = || traces.with_message("submission refused: 503");
    for _ in 0..10 {
        let answer = client.post("/held", "").await;
        answer.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    }
    let warned = refusals();
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert_eq!(warned[0].level, Level::WARN);
    assert_eq!(warned[0].field("reason"), Some("capacity"));
    assert_eq!(warned[0].field("held_back"), Some("0"));

    tokio::time::sleep(Duration::from_millis(1100)).await;
    client
        .post("/held", "")
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    let warned = refusals();
    assert_eq!(warned.len(), 2, "{warned:#?}");
    assert_eq!(warned[1].field("held_back"), Some("9"));

    gate.add_permits(1);
    client.until_done(&monitor).await;
}

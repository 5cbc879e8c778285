//! The `Job` extractor of the `axum` feature.
#![cfg(feature = "axum")]

use crate::common;

use axum::Router;
use axum::routing::{get, post};
use http::StatusCode;
use tokio::sync::oneshot;
use tower_accepted::{AcceptedLayer, Job};

#[tokio::test]
async fn handlers_take_the_job_directly() {
    async fn work(job: Job) -> String {
        job.set_progress(1.0);
        job.set_message("all done");
        job.id().to_string()
    }
    async fn maybe(job: Option<Job>) -> &'static str {
        if job.is_some() { "a job" } else { "called directly" }
    }
    async fn always(job: Job) -> String {
        format!("cancelled: {}", job.is_cancelled())
    }
    let layer = AcceptedLayer::new().defer_if(|parts| parts.method == http::Method::POST);
    let app = Router::new()
        .route("/work", post(work))
        .route("/maybe", post(maybe).get(maybe))
        .route("/always", get(always))
        .layer(layer);
    let server = common::serve(app).await;
    let client = common::HttpClient::new(&server);

    let accepted = client.post("/work", "").await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let monitor = accepted.location();
    let done = client.until_done(&monitor).await;
    assert_eq!(done.json()["progress"], 1.0);
    assert_eq!(done.json()["message"], "all done");
    let result = client.get(&format!("{monitor}/result")).await;
    let id = accepted.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(result.body, id.as_bytes(), "the handler saw its own job's id");

    // Not deferred: `Option<Job>` is `None`, `Job` is a detached handle.
    let direct = client.get("/maybe").await;
    assert_eq!(direct.body, "called directly");
    let direct = client.get("/always").await;
    assert_eq!(direct.body, "cancelled: false");

    let deferred = client.post("/maybe", "").await;
    let monitor = deferred.location();
    client.until_done(&monitor).await;
    assert_eq!(client.get(&format!("{monitor}/result")).await.body, "a job");
}

#[tokio::test]
async fn cancellation_reaches_work_the_handler_started() {
    let (report_tx, report_rx) = oneshot::channel::<&'static str>();
    let report_tx = std::sync::Mutex::new(Some(report_tx));
    let report_tx = std::sync::Arc::new(report_tx);
    let app = Router::new()
        .route(
            "/spawn",
            post(move |job: Job| {
                let report_tx = report_tx.clone();
                async move {
                    let watcher = job.clone();
                    tokio::spawn(async move {
                        watcher.cancelled().await;
                        if let Some(tx) = report_tx.lock().unwrap().take() {
                            let _ = tx.send("stopped");
                        }
                    });
                    std::future::pending::<()>().await;
                }
            }),
        )
        .layer(AcceptedLayer::new());
    let server = common::serve(app).await;
    let client = common::HttpClient::new(&server);
    let accepted = client.post("/spawn", "").await;
    let monitor = accepted.location();
    assert_eq!(client.delete(&monitor).await.status, StatusCode::NO_CONTENT);
    let report = tokio::time::timeout(std::time::Duration::from_secs(10), report_rx).await;
    assert_eq!(report.unwrap().unwrap(), "stopped");
    assert_eq!(client.get(&monitor).await.json()["status"], "canceled");
}

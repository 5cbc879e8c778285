//! The original Node example "two-oh-two" (mcumcu/two-oh-two), reproduced
//! with nothing but the layer's configuration:
//!
//! 1. `GET /deferredjob` → `202`, `Location: /monitor/{id}`, body with `job_id`;
//! 2. `GET /monitor/{id}` → `200` while the job (2 s) runs, then `201 Created`
//!    with `Location: /result/{id}`;
//! 3. `GET /result/{id}` → `200` `{"result": "Result of long-running process {id}."}`.
//!
//! `cargo run --example two_oh_two`; `ADDR` overrides `127.0.0.1:8080`.

use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};
use tower_accepted::{AcceptedLayer, Completion, Job};

/// The long-running process of the original: two seconds of work.
async fn deferred_job(Extension(job): Extension<Job>) -> Json<Value> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    Json(json!({ "result": format!("Result of long-running process {}.", job.id()) }))
}

/// The whole application: one route and the layer's configuration.
pub fn app() -> Router {
    let layer = AcceptedLayer::new()
        .monitor_path("/monitor/{id}")
        .result_path("/result/{id}")
        .completion(Completion::Created)
        .map_status_document(|record, document| {
            document.insert("job_id".into(), record.id.to_string().into());
        });
    Router::new().route("/deferredjob", get(deferred_job)).layer(layer)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = app();
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("two-oh-two listening on {base}");
    println!("  curl -i {base}/deferredjob          # 202, Location: /monitor/<id>");
    println!("  curl -i {base}/monitor/<id>         # 200 while running, then 201 + Location: /result/<id>");
    println!("  curl -i {base}/result/<id>          # 200 with the result");
    axum::serve(listener, app).await?;
    Ok(())
}

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
use tokio::time::Instant;
use tower_accepted::{AcceptedLayer, Completion, Job};

/// The long-running process of the original: two seconds of work, done two
/// seconds after the submission was accepted, as the original's
/// `setTimeout(…, 2000)`, set when the submission arrives, is done. Not two
/// seconds after this handler first runs, which may be later (the job's task
/// is polled after the `202` is on its way, or later still on a busy
/// server): a client that looks at the monitor at once and again exactly 2 s
/// later must find the job done, as it does against the original.
async fn deferred_job(Extension(job): Extension<Job>) -> Json<Value> {
    sleep_until_exactly(job.accepted_at() + Duration::from_secs(2)).await;
    Json(json!({ "result": format!("Result of long-running process {}.", job.id()) }))
}

/// Sleeps until `deadline`, and not up to a millisecond more.
///
/// tokio's timer rounds a deadline up to its next 1 ms tick, so a bare
/// `sleep_until(deadline)` ends the job up to 1 ms late, later than a client
/// whose first look at the monitor came less than 1 ms after the acceptance
/// (one round trip on a fast link) and who comes back exactly 2 s after it.
/// So the timer
/// takes the job to the last tick before the deadline, and the rest, under a
/// millisecond, is waited out by yielding to the other tasks.
async fn sleep_until_exactly(deadline: Instant) {
    tokio::time::sleep_until(deadline - Duration::from_millis(1)).await;
    while Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
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

//! The following client: `cargo run --example client --features client`.
//!
//! Starts the demo's routes in this process (on an ephemeral port of
//! 127.0.0.1), submits a report through hyper's client wrapped in
//! `FollowLayer`, draws a progress bar from the status documents while the
//! job runs, and prints the result: the call reads as if it were
//! synchronous. `PAGES` sets the report's length (default 10, 300 ms a
//! page); `COMPLETION` the server's completion style (`see-other`,
//! `created` or `ok`), as for the demo.

#[path = "demo/app.rs"]
#[allow(
    dead_code,
    reason = "the client serves the demo's routes for itself, without a recorder: `/metrics` is the demo binary's"
)]
mod app;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use indicatif::{ProgressBar, ProgressStyle};
use tower::{Layer, ServiceExt};
use tower_accepted::client::FollowLayer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let completion = app::completion_from_env()?;
    let pages: u64 = match std::env::var("PAGES") {
        Ok(pages) => pages.parse().map_err(|e| format!("PAGES={pages:?}: {e}"))?,
        Err(_) => 10,
    };

    // The server: the demo's routes behind `AcceptedLayer`.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let layer = app::layer(completion);
    tokio::spawn(async move { axum::serve(listener, app::app(layer)).await });
    println!("demo routes on {base} (completion style {completion:?})");

    // The client: hyper's, following `202 Accepted` to the result.
    let bar = ProgressBar::new(100);
    bar.set_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {pos:>3}% {msg}",
    )?);
    bar.enable_steady_tick(Duration::from_millis(100));
    let progress = bar.clone();
    let client = FollowLayer::new()
        // A status document every second for the bar; the end is still seen
        // at once, as the server answers a long poll when the job ends.
        .long_poll(Duration::from_secs(1))
        .deadline(Duration::from_secs(120))
        .on_status(move |doc| {
            if let Some(fraction) = doc.progress() {
                progress.set_position((fraction * 100.0).round() as u64);
            }
            let message = doc.message().unwrap_or(doc.status_word());
            progress.set_message(message.to_owned());
        })
        .layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());

    let request = Request::post(format!("{base}/reports"))
        .header("content-type", "application/json")
        // The demo's jobs belong to the bearer token that submits them: the
        // client sends it with every poll too.
        .header("authorization", "Bearer example-user")
        .body(Full::new(Bytes::from(format!(r#"{{"pages": {pages}}}"#))))?;
    println!("POST {base}/reports {{\"pages\": {pages}}}");
    let started = Instant::now();
    let response = match client.oneshot(request).await {
        Ok(response) => {
            bar.finish_with_message("done");
            response
        }
        Err(error) => {
            bar.abandon_with_message("failed");
            return Err(error.into());
        }
    };
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!("{status} after {:.1} s:", started.elapsed().as_secs_f64());
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(json) => println!("{}", serde_json::to_string_pretty(&json)?),
        Err(_) => println!("{}", String::from_utf8_lossy(&body)),
    }
    Ok(())
}

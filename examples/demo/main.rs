//! The demo: `cargo run --example demo`, then follow the printed curl commands.
//!
//! `ADDR` sets the address (default `127.0.0.1:3000`); `COMPLETION` the
//! completion style (`see-other`, `created` or `ok`).

mod app;

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let completion = app::completion_from_env()?;
    let layer = app::layer(completion);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("tower-accepted demo listening on {base} (completion style {completion:?})");
    println!();
    println!("Demo page: {base}/   (open it in a browser: start reports, watch them, cancel them)");
    println!();
    println!("Start a report (10 pages, about 3 s) and poll it:");
    println!("  curl -i -X POST {base}/reports -H 'content-type: application/json' -d '{{\"pages\": 10}}'");
    println!("  curl -i {base}/jobs/<id>             # 200 + Retry-After while running, then 303");
    println!("  curl -i '{base}/jobs/<id>?wait=30'   # long poll: answers when the job ends");
    println!("  curl -i {base}/jobs/<id>/result      # the handler's own response");
    println!("  curl -i -X DELETE {base}/jobs/<id>   # cancel, or forget once finished");
    println!();
    println!("Other endpoints:");
    println!(
        "  curl -i -X POST '{base}/echo?delay_ms=500' -H 'prefer: wait=5' -d hello   # done in time: the response itself"
    );
    println!("  curl -i -X POST '{base}/fail?mode=panic&delay_ms=100'");
    println!("  curl -i -X POST {base}/reports -d '{{\"pages\": 0}}'   # refused with 400, no job");
    println!("  curl -i {base}/healthz   # liveness: 200 ok while the process serves");
    println!("  curl -i {base}/readyz    # readiness: 200 ready, 503 while shutting down or cut off from the store");

    let app = app::app(layer.clone());
    // On Ctrl-C the layer drains (new submissions get 503; monitors and
    // results keep answering), then the listener closes.
    let signal = async {
        let _ = tokio::signal::ctrl_c().await;
        println!("draining: jobs under way get up to 10 s to finish");
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(layer.drain_on(signal, Duration::from_secs(10)))
        .await?;
    println!("drain over; shut down");
    Ok(())
}

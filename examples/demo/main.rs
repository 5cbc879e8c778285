//! The demo: `cargo run --example demo`, then follow the printed curl commands.
//!
//! `ADDR` sets the address (default `127.0.0.1:3000`); `CALLBACK_ALLOW` the
//! prefix a `Callback-Url` must start with (default `http://127.0.0.1:`,
//! receivers on this machine); `WEBHOOK_SECRET` the callbacks' signing
//! secret (default: a random one, printed at start); `COMPLETION` the
//! completion style (`see-other`, `created` or `ok`); `RUST_LOG` what the
//! console log shows (default `info,tower_accepted=debug`: the layer's
//! `job` spans and per-job events are at `DEBUG`, so this default shows the
//! job id on every line a handler logs). `GET /metrics` serves the layer's
//! metrics in Prometheus' text format.

mod app;

use std::io::IsTerminal;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Histogram buckets, in seconds: from a fast store call (a millisecond)
/// to the layer's timeout (120 s); ten, since each is a series per label
/// value (19 store operations). With buckets set the exporter renders
/// real Prometheus histograms, which a server can aggregate across
/// replicas and query with `histogram_quantile`; without them it renders
/// summaries, whose quantiles cannot be aggregated.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.025, 0.1, 0.25, 1.0, 2.5, 10.0, 30.0, 120.0];

/// How often the recorder's histogram samples are drained into their
/// buckets between scrapes (`install_recorder` spawns no task of its own;
/// without upkeep, samples pile up in memory until the next scrape).
const UPKEEP: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The log first, so that nothing the rest of startup logs is lost.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,tower_accepted=debug")),
        )
        // Colors on a terminal only: a log piped to a file or a collector
        // stays plain text.
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    // The recorder before the layer serves anything: the layer takes its
    // metric handles from the recorder installed when it first records.
    let metrics = prometheus()?;
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let completion = app::completion_from_env()?;
    let (callbacks, secret) = app::callbacks_from_env()?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let base = format!("http://{}", listener.local_addr()?);
    // Links stay relative, for the demo page whatever host name it is
    // opened by; a service whose receivers follow links sets `base_url`.
    let layer = app::layer(completion).callbacks(callbacks);
    println!("tower-accepted demo listening on {base} (completion style {completion:?})");
    if let Some(secret) = secret {
        // A random one per run, for the receiver to verify with.
        println!("webhook secret: {secret}   (set WEBHOOK_SECRET to choose one)");
    }
    println!();
    println!("Demo page: {base}/   (open it in a browser: start reports, watch them, cancel them)");
    println!();
    println!("Start a report (10 pages, about 3 s) and poll it:");
    println!("  curl -i -X POST {base}/reports -H 'content-type: application/json' -d '{{\"pages\": 10}}'");
    println!("  curl -i {base}/jobs/<id>             # 200 + Retry-After while running, then 303");
    println!("  curl -i '{base}/jobs/<id>?wait=30'   # long poll: answers when the job ends");
    println!("  curl -N {base}/jobs/<id>/events        # Server-Sent Events: an event per change, the end last");
    println!("  curl -i {base}/jobs/<id>/result      # the handler's own response");
    println!("  curl -i -X DELETE {base}/jobs/<id>   # cancel, or forget once finished");
    println!();
    println!("Be called back when it ends (a receiver on this machine, signed per Standard Webhooks):");
    println!("  curl -i -X POST {base}/reports -H 'callback-url: http://127.0.0.1:9000/hook' -d '{{\"pages\": 3}}'");
    println!();
    println!("Other endpoints:");
    println!(
        "  curl -i -X POST '{base}/echo?delay_ms=500' -H 'prefer: wait=5' -d hello   # done in time: the response itself"
    );
    println!("  curl -i -X POST '{base}/fail?mode=panic&delay_ms=100'");
    println!("  curl -i -X POST {base}/reports -d '{{\"pages\": 0}}'   # refused with 400, no job");
    println!("  curl -i {base}/healthz   # liveness: 200 ok while the process serves");
    println!("  curl -i {base}/readyz    # readiness: 200 ready, 503 while shutting down or cut off from the store");
    println!("  curl {base}/metrics      # the layer's metrics, in Prometheus' text format");

    let app = app::app_with_metrics(layer.clone(), metrics);
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

/// Installs the Prometheus recorder (no HTTP listener of its own: the app
/// serves `GET /metrics`), describes the layer's metrics, and keeps the
/// histograms drained.
fn prometheus() -> Result<PrometheusHandle, Box<dyn std::error::Error>> {
    let handle = PrometheusBuilder::new().set_buckets(&BUCKETS)?.install_recorder()?;
    // `# HELP` lines and units for every metric, shown from the first scrape.
    tower_accepted::metrics::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

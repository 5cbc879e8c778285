//! An existing client against this crate's server: the Azure SDK's poller
//! (Python `azure-core`: `LROPoller` with `LROBasePolling`) drives a job to
//! its result when the layer answers in `Completion::Ok` style, as
//! Microsoft's REST API guidelines describe a status monitor.
//!
//! The test makes a Python virtual environment in `target/azure-venv` (once;
//! `python3 -m venv`, then `pip install azure-core`) and runs
//! `tests/azure/poll.py` against the demo's routes on 127.0.0.1. Nothing is
//! skipped: without Python, venv or pip (or PyPI), the test fails.
#![cfg(feature = "client")]

use crate::common;
use crate::demo_app as app;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tower_accepted::Completion;

/// The requirement installed in the virtual environment.
const AZURE_CORE: &str = "azure-core>=1.30,<2";

/// The virtual environment's Python, with `azure-core` installed.
async fn python() -> PathBuf {
    // Tests of this file run at once: one of them sets up, the others wait.
    static SETUP: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    SETUP
        .get_or_init(|| common::python::venv("azure-venv", "azure.core.polling.base_polling", AZURE_CORE))
        .await
        .clone()
}

/// Serves the demo's routes in `Completion::Ok` style with absolute links
/// (the guidelines' `Operation-Location` is an absolute URL, and
/// azure-core's poller requests the links as given); gives the base URL.
async fn serve_ok_style() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let layer = app::layer(Completion::Ok).base_url(&base);
    let task = tokio::spawn(async move {
        axum::serve(listener, app::app(layer)).await.unwrap();
    });
    (base, task)
}

/// Runs `tests/azure/poll.py` for `POST path` with `body`; gives its report.
async fn azure_poll(base: &str, path: &str, body: &str) -> Value {
    let python = python().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/azure/poll.py");
    let script = script.to_string_lossy().into_owned();
    let output = common::python::run(&python, &[&script, base, path, body], b"", Duration::from_secs(90)).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("poll.py printed no JSON ({e}): {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_sdk_poller_drives_a_job_to_its_result() {
    let (base, server) = serve_ok_style().await;
    let report = azure_poll(&base, "/reports", r#"{"pages": 4}"#).await;
    assert_eq!(
        report["status"].as_str().map(str::to_ascii_lowercase).as_deref(),
        Some("succeeded"),
        "{report}"
    );
    // The final resource is the handler's own response, fetched from `resourceLocation`.
    let result = &report["result"];
    assert_eq!(result["pages"], 4, "{report}");
    assert_eq!(result["words"], 1400, "{report}");
    assert!(result["report"].is_string(), "{report}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_sdk_poller_reports_a_failed_job() {
    let (base, server) = serve_ok_style().await;
    let report = azure_poll(&base, "/fail?mode=panic&delay_ms=200", "{}").await;
    assert_eq!(
        report["status"].as_str().map(str::to_ascii_lowercase).as_deref(),
        Some("failed"),
        "{report}"
    );
    assert!(report["error"].as_str().is_some_and(|e| !e.is_empty()), "{report}");
    server.abort();
}

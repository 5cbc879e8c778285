//! The demo's application: three slow endpoints behind one `AcceptedLayer`,
//! and the probes (`/healthz`, `/readyz`) and `/metrics` beside it.
//!
//! Shared by `examples/demo/main.rs` and the demo tests (`tests/demo.rs`),
//! so that what the tests check is what `cargo run --example demo` serves.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use axum::extract::Query;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};
use tower_accepted::callback::{Callbacks, WebhookSecret};
use tower_accepted::{AcceptedLayer, Completion, Job, Problem, store::JobStore};

/// How long one page of a report takes.
pub const PAGE: Duration = Duration::from_millis(300);

/// The completion style named by `COMPLETION` (`see-other`, `created`, `ok`).
pub fn completion_from_env() -> Result<Completion, String> {
    match std::env::var("COMPLETION").as_deref() {
        Err(_) | Ok("" | "see-other") => Ok(Completion::SeeOther),
        Ok("created") => Ok(Completion::Created),
        Ok("ok") => Ok(Completion::Ok),
        Ok(other) => Err(format!("COMPLETION={other:?}: use see-other, created or ok")),
    }
}

/// The layer as the demo configures it: every limit set explicitly.
pub fn layer(completion: Completion) -> AcceptedLayer {
    AcceptedLayer::new()
        .completion(completion)
        // Only POSTs become jobs; anything else goes straight to the router.
        .defer_if(|parts| parts.method == Method::POST)
        .max_body_size(64 * 1024)
        .body_timeout(Duration::from_secs(10))
        .max_result_size(1024 * 1024)
        .max_running(8)
        .max_queued(64)
        .timeout(Duration::from_secs(120))
        .retry_after(Duration::from_secs(1))
        .max_retry_after(Duration::from_secs(2))
        .max_wait(Duration::from_secs(10))
        .max_long_poll(Duration::from_secs(30))
        .max_list_limit(50)
        // Jobs belong to who submitted them: for demonstration any bearer
        // token stands for a user; requests without one are anonymous (they
        // can use the job ids they hold, but cannot list). `Idempotency-Key`
        // needs no configuration.
        .owner(demo_user)
        // "Process it enough to ensure it is a valid request": a bad report
        // request is refused with 400 before any job exists.
        .check(|parts, body| {
            if parts.uri.path() == "/reports" {
                pages(body).map(|_| ())
            } else {
                Ok(())
            }
        })
}

/// The user a request comes from: a digest of its bearer token (a real
/// application takes a user id from its authentication layer instead).
fn demo_user(parts: &axum::http::request::Parts) -> Option<String> {
    use std::hash::{Hash, Hasher};
    let token = parts
        .headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    token.hash(&mut hasher);
    Some(format!("user-{:016x}", hasher.finish()))
}

/// The prefix a `Callback-Url` must start with when `CALLBACK_ALLOW` names
/// none: receivers on this machine.
pub const CALLBACK_ALLOW: &str = "http://127.0.0.1:";

/// Completion callbacks as the demo and the replicas example send them:
/// to URLs whose text starts with `CALLBACK_ALLOW` (default
/// [`CALLBACK_ALLOW`]), signed with `WEBHOOK_SECRET` (a `whsec_…` secret),
/// or else with a random secret, returned to be printed (`None` when the
/// secret came from the environment).
pub fn callbacks_from_env() -> Result<(Callbacks, Option<String>), String> {
    let prefix = std::env::var("CALLBACK_ALLOW").unwrap_or_else(|_| CALLBACK_ALLOW.to_owned());
    let (secret, printed) = match std::env::var("WEBHOOK_SECRET") {
        Ok(text) => (
            WebhookSecret::parse(&text).map_err(|e| format!("WEBHOOK_SECRET: {e}"))?,
            None,
        ),
        Err(_) => {
            let secret = WebhookSecret::random();
            let text = secret.to_string();
            (secret, Some(text))
        }
    };
    Ok((callbacks(&prefix, secret), printed))
}

/// Callbacks to URLs whose text starts with `prefix`, signed with `secret`.
/// A prefix on this machine (`http://127.0.0.1:`, `http://[::1]:`,
/// `http://localhost:`) also allows the loopback addresses 127.0.0.1 and
/// ::1, which are refused otherwise (an application's own host is what a
/// forged callback would probe first); no other loopback or private address.
///
/// A prefix is a blunt rule (`http://hooks.example.com` also lets
/// `http://hooks.example.com.evil.test` through): end it with `:` or `/`
/// after the host, or compare hosts as `Callbacks::allow` shows.
pub fn callbacks(prefix: &str, secret: WebhookSecret) -> Callbacks {
    let loopback = ["http://127.0.0.1:", "http://[::1]:", "http://localhost:"]
        .iter()
        .any(|local| prefix.starts_with(local));
    let allowed = prefix.to_owned();
    let callbacks = Callbacks::new(secret)
        .allow(move |url| url.to_string().starts_with(&allowed))
        // Receivers of a demo answer at once, or are gone.
        .timeout(Duration::from_secs(5));
    if loopback {
        callbacks.allow_addresses(|ip| ip == IpAddr::from([127, 0, 0, 1]) || ip == IpAddr::from(Ipv6Addr::LOCALHOST))
    } else {
        callbacks
    }
}

/// The demo's routes, with the layer applied (on any job store), and the
/// probes beside them.
pub fn app<St: JobStore>(layer: AcceptedLayer<St>) -> Router {
    let ready = layer.clone();
    with_probes(routes().layer(layer), ready)
}

/// [`app`], and `GET /metrics`: what `handle`'s recorder holds, in
/// Prometheus' text format.
///
/// Mounted after the layer as the probes are, so that a scrape is never a
/// job, and a scrape during a drain still answers.
pub fn app_with_metrics<St: JobStore>(layer: AcceptedLayer<St>, handle: PrometheusHandle) -> Router {
    app(layer).route("/metrics", get(move || metrics(handle.clone())))
}

/// `GET /metrics`: the exposition format's content type, version 0.0.4,
/// which every Prometheus server and scraper reads.
async fn metrics(handle: PrometheusHandle) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        handle.render(),
    )
}

/// `router` (with the layer already applied) and the probes of a load
/// balancer or an orchestrator: `GET /healthz` (liveness: `200 ok` while
/// the process serves) and `GET /readyz` (readiness: `200 ready`, or `503`
/// while the layer shuts down or its job store fails its health check).
///
/// Routes added after `Router::layer` are not wrapped by the layer, so no
/// probe ever becomes a job, whatever the layer defers. Not `merge`: a
/// merged router's fallback would replace the layered one, which is what
/// answers the job routes.
pub fn with_probes<St: JobStore>(router: Router, layer: AcceptedLayer<St>) -> Router {
    router
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(move || readyz(layer.clone())))
}

/// `GET /readyz`: [`AcceptedLayer::ready`] as a short text.
async fn readyz<St: JobStore>(layer: AcceptedLayer<St>) -> (StatusCode, String) {
    match layer.ready().await {
        Ok(()) => (StatusCode::OK, "ready".to_owned()),
        // The reason alone ("shutting down", "the job store failed its
        // health check"): the store's error, which may name servers, stays
        // out of an unauthenticated answer.
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
    }
}

/// The demo's routes alone, for an application that adds middleware of
/// its own between them and the layer (the `replicas` example does).
pub fn routes() -> Router {
    Router::new()
        // The demo page (a GET: the layer defers only POSTs, so it is served at once).
        .route("/", get(demo_page))
        .route("/reports", post(report))
        .route("/echo", post(echo))
        .route("/fail", post(fail))
}

/// `GET /`: a small page that starts reports and follows them in the browser
/// through the public protocol alone (`examples/demo/index.html`).
async fn demo_page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("index.html"))
}

/// The page count of a report request: `{"pages": N}`, 1 to 100, default 10.
fn pages(body: &[u8]) -> Result<u64, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(10);
    }
    let bad = |detail: String| Problem::new(StatusCode::BAD_REQUEST).with_detail(detail);
    let value: Value = serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    match value.get("pages") {
        None => Ok(10),
        Some(n) => match n.as_u64() {
            Some(n @ 1..=100) => Ok(n),
            _ => Err(bad("`pages` must be a whole number from 1 to 100".into())),
        },
    }
}

async fn report(Extension(job): Extension<Job>, body: axum::body::Bytes) -> Response {
    let Ok(pages) = pages(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    for page in 1..=pages {
        job.set_message(format!("rendering page {page} of {pages}"));
        tokio::time::sleep(PAGE).await;
        job.set_progress(page as f32 / pages as f32);
        // The handler's own event: under `tower_accepted=debug` it carries
        // the layer's `job` span, so the log says which job rendered it.
        tracing::info!(page, pages, "page rendered");
    }
    Json(json!({ "report": job.id().to_string(), "pages": pages, "words": pages * 350 })).into_response()
}

fn delay(query: &HashMap<String, String>) -> Duration {
    let ms = query.get("delay_ms").and_then(|v| v.parse().ok()).unwrap_or(1000u64);
    Duration::from_millis(ms.min(60_000))
}

async fn echo(Query(query): Query<HashMap<String, String>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    tokio::time::sleep(delay(&query)).await;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| header::HeaderValue::from_static("application/octet-stream"));
    let len = body.len().to_string();
    ([(header::CONTENT_TYPE, content_type)], [("x-echo-len", len)], body).into_response()
}

async fn fail(Query(query): Query<HashMap<String, String>>) -> Response {
    tokio::time::sleep(delay(&query)).await;
    if query.get("mode").map(String::as_str) == Some("panic") {
        panic!("the demo's /fail endpoint panics on purpose");
    }
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "error": "the demo's /fail endpoint fails on purpose" })),
    )
        .into_response()
}

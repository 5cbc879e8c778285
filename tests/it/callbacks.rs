//! Completion callbacks end to end, over real HTTP: a submission with
//! `Callback-Url` on an app with the layer, a receiver on 127.0.0.1 that
//! records what it gets, the signature checked by the official Standard
//! Webhooks library (Python `standardwebhooks`), retries and their backoff,
//! the refusals that keep the layer from being an SSRF proxy, and the
//! bounds that keep a slow receiver from delaying jobs.
#![cfg(feature = "callbacks")]

use crate::common;
use crate::common::receiver::{Receiver, Reply};
use crate::common::{HttpClient, assert_accepted, poll_until, serve};

use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tower_accepted::AcceptedLayer;
use tower_accepted::callback::{Callbacks, WebhookSecret};

/// The requirement the signature check installs (as `webhook_signing`).
const STANDARD_WEBHOOKS: &str = "standardwebhooks==1.1.0";

/// The bound of every test here.
const WITHIN: Duration = Duration::from_secs(60);

/// Callbacks allowed to 127.0.0.1, the receivers' address.
fn local(secret: WebhookSecret) -> Callbacks {
    Callbacks::new(secret)
        .allow(|url| url.host() == Some("127.0.0.1"))
        .allow_addresses(|ip| ip.is_loopback())
}

/// `/work` (done at once) and `/slow` (half a second) behind `layer`,
/// whose jobs belong to who sends `Authorization` (a job submitted without
/// one is anyone's who holds its id).
fn app(layer: AcceptedLayer) -> Router {
    let layer = layer.owner(|parts| {
        parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    Router::new()
        .route("/work", post(|| async { "done" }))
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "done"
            }),
        )
        .layer(layer)
}

/// `POST /work` with `Callback-Url: url` and the other `headers`.
async fn submit_with(client: &HttpClient, path: &str, url: &str, headers: &[(&str, &str)]) -> common::Answer {
    let mut all = vec![("callback-url", url)];
    all.extend_from_slice(headers);
    client.send(Method::POST, path, &all, "{}").await
}

/// The verdicts of the official library on `hooks` as received, under
/// `secret`.
async fn verify(secret: &str, hooks: &[common::receiver::Hook]) -> Vec<String> {
    let cases: Vec<Value> = hooks
        .iter()
        .map(|hook| {
            json!({
                "secret": secret,
                "payload": String::from_utf8(hook.body.to_vec()).unwrap(),
                "headers": {
                    "webhook-id": hook.header("webhook-id"),
                    "webhook-timestamp": hook.header("webhook-timestamp"),
                    "webhook-signature": hook.header("webhook-signature"),
                },
            })
        })
        .collect();
    let python = common::python::venv("standardwebhooks-venv", "standardwebhooks.webhooks", STANDARD_WEBHOOKS).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhooks/verify.py");
    let script = script.to_string_lossy().into_owned();
    let input = serde_json::to_vec(&cases).unwrap();
    let output = common::python::run(&python, &[&script], &input, Duration::from_secs(60)).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("verify.py printed no JSON ({e}): {stdout}"))
}

/// The monitor's `callback` object of the job at `monitor`, once its
/// state is `state`.
async fn callback_once(client: &HttpClient, monitor: &str, state: &str) -> Value {
    let answer = poll_until(client, monitor, &format!("callback {state}"), |doc| {
        doc["callback"]["state"] == state
    })
    .await;
    answer.json()["callback"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_posts_its_signed_terminal_document_once() {
    tokio::time::timeout(WITHIN * 6, async {
        let receiver = Receiver::ok().await;
        let secret = WebhookSecret::random();
        let layer = AcceptedLayer::new()
            .base_url("http://api.example")
            .callbacks(local(secret.clone()));
        let server = serve(app(layer)).await;
        let client = HttpClient::new(&server);

        // The URL's query reaches the receiver (a token, say) whole.
        let url = receiver.url("/hooks/done?token=t0k3n");
        let accepted = submit_with(&client, "/work", &url, &[("idempotency-key", "k-1")]).await;
        let monitor = assert_accepted(&accepted);
        let doc = accepted.json();
        let id = doc["id"].as_str().unwrap().to_owned();
        assert_eq!(doc["callback"], json!({"state": "pending", "attempts": 0}), "{doc}");
        assert!(
            !accepted.body.windows(5).any(|w| w == b"token"),
            "the URL is never shown"
        );

        let hooks = receiver.wait_for(1).await;
        let hook = &hooks[0];
        assert_eq!(hook.path, "/hooks/done?token=t0k3n");
        assert_eq!(hook.header("content-type"), "application/json");
        assert_eq!(hook.header("webhook-id"), format!("msg_{id}"));
        assert!(hook.header("webhook-signature").starts_with("v1,"));
        let body = hook.json();
        assert_eq!(body["id"], id.as_str());
        assert_eq!(body["status"], "succeeded");
        assert_eq!(body["result"], format!("http://api.example/jobs/{id}/result"));

        let verdicts = verify(&secret.to_string(), &hooks[..1]).await;
        assert_eq!(verdicts, ["valid"], "the official library verifies the delivery");
        // And refuses it under another secret.
        let other = verify(&WebhookSecret::random().to_string(), &hooks[..1]).await;
        assert!(other[0].starts_with("invalid"), "{other:?}");

        assert_eq!(
            callback_once(&client, &monitor, "delivered").await,
            json!({"state": "delivered", "attempts": 1})
        );
        // A retry with the same key gets the same job, and no second call.
        let again = submit_with(&client, "/work", &url, &[("idempotency-key", "k-1")]).await;
        assert_eq!(again.json()["id"], id.as_str(), "{:?}", again.body);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(receiver.hooks().len(), 1, "one delivery: {:?}", receiver.hooks());
    })
    .await
    .expect("the test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_retried_with_backoff_under_one_webhook_id() {
    tokio::time::timeout(WITHIN, async {
        let receiver = Receiver::start(&[Reply::Status(500), Reply::Status(500)], Reply::Status(200)).await;
        let first = Duration::from_millis(1000);
        let layer = AcceptedLayer::new().callbacks(local(WebhookSecret::random()).first_retry(first));
        let server = serve(app(layer)).await;
        let client = HttpClient::new(&server);
        let monitor = assert_accepted(&submit_with(&client, "/work", &receiver.url("/hook"), &[]).await);

        let hooks = receiver.wait_for(3).await;
        assert_eq!(
            callback_once(&client, &monitor, "delivered").await,
            json!({"state": "delivered", "attempts": 3})
        );
        let ids: Vec<&str> = hooks.iter().map(|h| h.header("webhook-id")).collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        let stamps: Vec<u64> = hooks
            .iter()
            .map(|h| h.header("webhook-timestamp").parse().unwrap())
            .collect();
        assert!(
            stamps[0] <= stamps[1] && stamps[1] <= stamps[2] && stamps[0] < stamps[2],
            "{stamps:?}"
        );
        // Equal jitter: half to all of 1 s, then of 2 s; a little more
        // for the exchange and the store.
        let slack = Duration::from_millis(600);
        let gaps = [hooks[1].at - hooks[0].at, hooks[2].at - hooks[1].at];
        assert!(gaps[0] >= first / 2 && gaps[0] <= first + slack, "{gaps:?}");
        assert!(gaps[1] >= first && gaps[1] <= first * 2 + slack, "{gaps:?}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(receiver.hooks().len(), 3, "nothing after the delivery");
    })
    .await
    .expect("the test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_answers_410_is_called_once() {
    tokio::time::timeout(WITHIN, async {
        let receiver = Receiver::start(&[], Reply::Status(410)).await;
        let callbacks = local(WebhookSecret::random()).first_retry(Duration::from_millis(200));
        let server = serve(app(AcceptedLayer::new().callbacks(callbacks))).await;
        let client = HttpClient::new(&server);
        let monitor = assert_accepted(&submit_with(&client, "/work", &receiver.url("/hook"), &[]).await);
        assert_eq!(
            callback_once(&client, &monitor, "failed").await,
            json!({"state": "failed", "attempts": 1})
        );
        // Five first retries' time: none came.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(receiver.hooks().len(), 1);
    })
    .await
    .expect("the test took too long");
}

/// Refused with `400`, a problem document whose detail says `why`.
async fn assert_refused(client: &HttpClient, url: &str, why: &str) {
    let answer = submit_with(client, "/work", url, &[("authorization", "alice")]).await;
    let doc = answer.assert_problem(StatusCode::BAD_REQUEST);
    let detail = doc["detail"].as_str().unwrap();
    assert!(detail.contains(why), "{url}: {detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_that_would_make_the_layer_an_ssrf_proxy_are_refused_and_make_no_job() {
    tokio::time::timeout(WITHIN, async {
        let receiver = Receiver::ok().await;
        let port = receiver.server.addr.port();
        // Every URL allowed by its text, but no address beyond the public
        // ones.
        let layer = AcceptedLayer::new()
            .callbacks(Callbacks::new(WebhookSecret::random()).allow(|url| url.host() != Some("blocked.example")));
        let store = layer.clone();
        let server = serve(app(layer)).await;
        let client = HttpClient::new(&server);

        assert_refused(&client, "http://blocked.example/hook", "not allowed").await;
        // A name that resolves to loopback: judged by its addresses.
        assert_refused(&client, &format!("http://localhost:{port}/hook"), "address").await;
        assert_refused(&client, &format!("http://127.0.0.1:{port}/hook"), "address").await;
        assert_refused(&client, "http://169.254.169.254/latest/meta-data/", "address").await;
        assert_refused(&client, &format!("http://[::ffff:127.0.0.1]:{port}/"), "address").await;
        assert_refused(&client, "http://[::1]/", "address").await;
        assert_refused(&client, "http://10.1.2.3/", "address").await;
        // `https` is refused without `callbacks-tls`; with it, judged by its
        // addresses as any other.
        let https = format!("https://localhost:{port}/hook");
        let why = if cfg!(feature = "callbacks-tls") {
            "address"
        } else {
            "scheme"
        };
        assert_refused(&client, &https, why).await;
        assert_refused(&client, "ftp://hooks.example.com/", "scheme").await;
        assert_refused(&client, "http://user:pw@hooks.example.com/", "user information").await;
        assert_refused(&client, "/relative", "absolute").await;
        // Two values: which one would be called?
        let answer = client
            .send(
                Method::POST,
                "/work",
                &[
                    ("callback-url", "http://hooks.example.com/a"),
                    ("callback-url", "http://hooks.example.com/b"),
                    ("authorization", "alice"),
                ],
                "{}",
            )
            .await;
        answer.assert_problem(StatusCode::BAD_REQUEST);

        assert!(store.job_store().is_empty(), "no job was made");
        let list = client
            .send(Method::GET, "/jobs", &[("authorization", "alice")], "")
            .await;
        assert_eq!(list.json()["jobs"], json!([]), "{:?}", list.body);
        assert!(receiver.hooks().is_empty(), "nothing reached the receiver");
    })
    .await
    .expect("the test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_is_reached_only_when_allowed_and_without_callbacks_every_url_is_refused() {
    tokio::time::timeout(WITHIN, async {
        let receiver = Receiver::ok().await;
        let port = receiver.server.addr.port();
        // No callbacks configured: any Callback-Url is refused.
        let plain = AcceptedLayer::new();
        let plain_store = plain.clone();
        let server = serve(app(plain)).await;
        let client = HttpClient::new(&server);
        assert_refused(&client, &receiver.url("/hook"), "no completion callbacks").await;
        assert!(plain_store.job_store().is_empty());
        // Without the header, the same layer makes its job.
        assert_accepted(&client.post("/work", "{}").await);

        // Loopback allowed: the IPv4-mapped form reaches the same receiver.
        let layer = AcceptedLayer::new().callbacks(
            Callbacks::new(WebhookSecret::random())
                .allow(|_| true)
                .allow_addresses(|ip| ip.is_loopback()),
        );
        let server = serve(app(layer)).await;
        let client = HttpClient::new(&server);
        let url = format!("http://[::ffff:127.0.0.1]:{port}/mapped");
        assert_accepted(&submit_with(&client, "/work", &url, &[]).await);
        assert_eq!(receiver.wait_for(1).await[0].path, "/mapped");
    })
    .await
    .expect("the test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_delays_no_job_and_deliveries_stay_bounded() {
    tokio::time::timeout(WITHIN, async {
        let receiver = Receiver::start(&[], Reply::Hang).await;
        let callbacks = local(WebhookSecret::random())
            .max_concurrency(2)
            .timeout(Duration::from_secs(30));
        let server = serve(app(AcceptedLayer::new().callbacks(callbacks))).await;
        let client = HttpClient::new(&server);

        let mut monitors = Vec::new();
        for _ in 0..5 {
            monitors.push(assert_accepted(
                &submit_with(&client, "/slow", &receiver.url("/hook"), &[]).await,
            ));
        }
        // Every job ends in its half second, whatever the receiver does.
        for monitor in &monitors {
            let done = poll_until(&client, monitor, "succeeded", |doc| doc["status"] == "succeeded").await;
            assert_eq!(done.json()["callback"]["state"], "pending");
        }
        common::until("two deliveries held by the receiver", || receiver.in_flight() == 2).await;
        // And a job submitted now ends as quickly.
        let started = std::time::Instant::now();
        let monitor = assert_accepted(&submit_with(&client, "/work", &receiver.url("/hook"), &[]).await);
        poll_until(&client, &monitor, "succeeded", |doc| doc["status"] == "succeeded").await;
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(receiver.most_in_flight(), 2, "at most max_concurrency at once");
        assert_eq!(receiver.hooks().len(), 2, "the others wait for a permit");
    })
    .await
    .expect("the test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_calls_back_receivers_on_this_machine_only() {
    use crate::demo_app as app;
    tokio::time::timeout(WITHIN, async {
        let receiver = Receiver::ok().await;
        let callbacks = app::callbacks(app::CALLBACK_ALLOW, WebhookSecret::random());
        let layer = app::layer(tower_accepted::Completion::SeeOther).callbacks(callbacks);
        let server = serve(app::app(layer)).await;
        let client = HttpClient::new(&server);
        let url = receiver.url("/hook");
        let accepted = client
            .send(Method::POST, "/reports", &[("callback-url", &url)], r#"{"pages": 1}"#)
            .await;
        let id = assert_accepted(&accepted).rsplit('/').next().unwrap().to_owned();
        let hook = &receiver.wait_for(1).await[0];
        assert_eq!(hook.json()["status"], "succeeded");
        assert_eq!(hook.header("webhook-id"), format!("msg_{id}"));
        for refused in [
            "http://10.0.0.1:80/",
            "http://127.0.0.1.evil.example/",
            "https://127.0.0.1:1/",
        ] {
            let answer = client
                .send(
                    Method::POST,
                    "/reports",
                    &[("callback-url", refused)],
                    r#"{"pages": 1}"#,
                )
                .await;
            answer.assert_problem(StatusCode::BAD_REQUEST);
        }
    })
    .await
    .expect("the test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_answered_at_once_is_called_back_too() {
    tokio::time::timeout(WITHIN, async {
        let receiver = Receiver::ok().await;
        let layer = AcceptedLayer::new().callbacks(local(WebhookSecret::random()));
        let server = serve(app(layer)).await;
        let client = HttpClient::new(&server);
        let answer = submit_with(&client, "/work", &receiver.url("/hook"), &[("prefer", "wait=5")]).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        assert_eq!(answer.body, "done");
        let hook = &receiver.wait_for(1).await[0];
        assert_eq!(hook.json()["status"], "succeeded");
        // The job was kept for its delivery, which it records.
        let id = hook.header("webhook-id").strip_prefix("msg_").unwrap().to_owned();
        let callback = callback_once(&client, &format!("/jobs/{id}"), "delivered").await;
        assert_eq!(callback, json!({"state": "delivered", "attempts": 1}));
    })
    .await
    .expect("the test took too long");
}

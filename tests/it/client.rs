//! The following client against this crate's server: the demo's routes in
//! every completion style, over real HTTP on 127.0.0.1.
#![cfg(feature = "client")]

use crate::common;
use crate::follow;

use crate::demo_app as app;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tower::ServiceExt;
use tower_accepted::client::{FollowError, OnStatus, StatusDocument};
use tower_accepted::{Completion, client::FollowLayer};

use common::{Answer, HttpClient, Server, serve};
use follow::{call, fast, follower, post};

/// A status word and the progress beside it.
type Progress = (String, Option<f64>);

const STYLES: [Completion; 3] = [Completion::SeeOther, Completion::Created, Completion::Ok];

/// The demo's routes with `completion`, counting the requests to the job
/// routes (the polls) and keeping their `Prefer` headers.
#[derive(Clone, Default)]
struct Polls {
    count: Arc<AtomicUsize>,
    prefer: Arc<Mutex<Vec<String>>>,
}

impl Polls {
    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

async fn demo(completion: Completion) -> (Server, Polls) {
    let (app, polls) = counted(completion);
    (serve(app).await, polls)
}

/// The demo's routes with `completion`, counting the polls, for a server or
/// a call in process.
fn counted(completion: Completion) -> (Router, Polls) {
    let polls = Polls::default();
    let seen = polls.clone();
    let app: Router = app::app(app::layer(completion)).layer(tower::util::MapRequestLayer::new(
        move |request: Request<axum::body::Body>| {
            if request.method() == Method::GET && request.uri().path().starts_with("/jobs/") {
                seen.count.fetch_add(1, Ordering::SeqCst);
                if let Some(prefer) = request.headers().get("prefer").and_then(|v| v.to_str().ok()) {
                    seen.prefer.lock().unwrap().push(prefer.to_owned());
                }
            }
            request
        },
    ));
    (app, polls)
}

/// The answer a synchronous call gives: the same request with
/// `Prefer: wait=10`, which the demo answers with the handler's response.
async fn synchronous(server: &Server, path: &str, headers: &[(&str, &str)], body: &'static str) -> Answer {
    let mut headers = headers.to_vec();
    headers.push(("prefer", "wait=10"));
    let answer = HttpClient::new(server).send(Method::POST, path, &headers, body).await;
    assert!(answer.header("preference-applied").is_some(), "{answer:?}");
    answer
}

fn assert_same(followed: &Answer, sync: &Answer, headers: &[&str]) {
    assert_eq!(followed.status, sync.status);
    assert_eq!(followed.body, sync.body);
    for name in headers {
        assert_eq!(followed.header(name), sync.header(name), "{name}");
    }
}

#[tokio::test]
async fn every_completion_style_gives_what_a_synchronous_call_gives() {
    for style in STYLES {
        let (server, polls) = demo(style).await;
        let client = follower(FollowLayer::new());
        let headers = [("content-type", "text/plain; charset=utf-8")];

        let sync = synchronous(&server, "/echo?delay_ms=300", &headers, "hello").await;
        let followed = call(
            &client,
            Method::POST,
            &server.url("/echo?delay_ms=300"),
            &headers,
            "hello",
        )
        .await
        .unwrap_or_else(|e| panic!("{style:?}: {e}"));
        assert_eq!(followed.status, StatusCode::OK, "{style:?}");
        assert_eq!(followed.body, "hello");
        assert_same(&followed, &sync, &["content-type", "x-echo-len"]);

        // A handler's 500 is the call's response, not an error.
        let sync = synchronous(&server, "/fail?delay_ms=200", &[], "").await;
        let followed = post(&client, &server.url("/fail?delay_ms=200"), "").await.unwrap();
        assert_eq!(followed.status, StatusCode::INTERNAL_SERVER_ERROR, "{style:?}");
        assert_same(&followed, &sync, &["content-type"]);

        let report = post(&client, &server.url("/reports"), r#"{"pages": 2}"#).await.unwrap();
        assert_eq!(report.status, StatusCode::OK, "{style:?}");
        let report = report.json();
        assert_eq!(
            (report["pages"].as_u64(), report["words"].as_u64()),
            (Some(2), Some(700))
        );
        assert!(polls.count() >= 3, "{style:?}: the client polled");
    }
}

#[tokio::test]
async fn long_polls_see_the_end_at_once() {
    for style in STYLES {
        let (server, polls) = demo(style).await;
        let client = follower(FollowLayer::new());
        let started = Instant::now();
        // The job takes 1.5 s; the demo asks for `Retry-After: 1`.
        let answer = post(&client, &server.url("/echo?delay_ms=1500"), "x").await.unwrap();
        assert_eq!((answer.status, answer.body.as_ref()), (StatusCode::OK, &b"x"[..]));
        // One long poll, held until the job ended, then the result.
        let prefer = polls.prefer.lock().unwrap().clone();
        assert_eq!(prefer.first().map(String::as_str), Some("wait=30"), "{style:?}");
        assert_eq!(prefer.len(), 1, "{style:?}: {prefer:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

#[tokio::test]
async fn without_long_polls_retry_after_paces_the_polls() {
    let (server, polls) = demo(Completion::SeeOther).await;
    let client = follower(FollowLayer::new().long_poll(Duration::ZERO));
    let started = Instant::now();
    let answer = post(&client, &server.url("/echo?delay_ms=1500"), "x").await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert!(polls.prefer.lock().unwrap().is_empty());
    // `Retry-After: 1` after the 202 and after the first poll: the end is
    // seen at the second poll, no sooner than 2 s after the submission.
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    assert!(polls.count() >= 2);
}

#[tokio::test]
async fn progress_callbacks_see_the_documents_in_order() {
    for style in STYLES {
        let (server, _) = demo(style).await;
        let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
        let record = Arc::clone(&seen);
        let client = follower(
            FollowLayer::new()
                .long_poll(Duration::from_secs(1))
                .on_status(move |doc| {
                    record
                        .lock()
                        .unwrap()
                        .push((doc.status_word().to_owned(), doc.progress()))
                }),
        );
        let answer = post(&client, &server.url("/reports"), r#"{"pages": 6}"#).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        let seen = seen.lock().unwrap().clone();
        let words: Vec<&str> = seen.iter().map(|(w, _)| w.as_str()).collect();
        assert!(
            matches!(words.first(), Some(&"pending" | &"running")),
            "{style:?}: {words:?}"
        );
        assert_eq!(words.last(), Some(&"succeeded"), "{style:?}: {words:?}");
        // 6 pages of 300 ms, long polls of 1 s: progress was reported on the way.
        assert!(
            seen.iter()
                .any(|(w, p)| w == "running" && p.is_some_and(|p| p > 0.0 && p < 1.0)),
            "{style:?}: {seen:?}"
        );
        let progress: Vec<f64> = seen.iter().filter_map(|(_, p)| *p).collect();
        assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    }
}

#[tokio::test]
async fn a_request_can_carry_its_own_callback() {
    let (server, _) = demo(Completion::SeeOther).await;
    let layer_calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&layer_calls);
    let client = follower(FollowLayer::new().on_status(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    let own: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = Arc::clone(&own);
    let mut request = Request::post(server.url("/echo?delay_ms=100"))
        .body(Full::new(Bytes::from("x")))
        .unwrap();
    request
        .extensions_mut()
        .insert(OnStatus::new(move |doc: &StatusDocument| {
            record.lock().unwrap().push(doc.status_word().into())
        }));
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(own.lock().unwrap().last().map(String::as_str), Some("succeeded"));
    assert_eq!(layer_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn authorization_goes_with_the_polls_of_owned_jobs() {
    // The demo's jobs belong to the bearer token that submitted them: polls
    // without it would get 404.
    let (server, _) = demo(Completion::SeeOther).await;
    let client = follower(FollowLayer::new());
    let auth = [("authorization", "Bearer alice")];
    let answer = call(&client, Method::POST, &server.url("/reports"), &auth, r#"{"pages": 1}"#)
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["pages"], 1);
}

/// Submits a long report through `client` and gives its job id once it runs;
/// the call goes on in the returned task.
async fn start_long_report(
    server: &Server,
    layer: FollowLayer,
) -> (String, tokio::task::JoinHandle<Result<Answer, follow::Error>>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Mutex::new(Some(tx));
    let client = follower(layer.on_status(move |doc| {
        if let (Some(id), Some(tx)) = (doc.json()["id"].as_str(), tx.lock().unwrap().take()) {
            let _ = tx.send(id.to_owned());
        }
    }));
    let url = server.url("/reports");
    let task = tokio::spawn(async move { post(&client, &url, r#"{"pages": 100}"#).await });
    let id = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .unwrap()
        .unwrap();
    (id, task)
}

async fn status_of(server: &Server, id: &str) -> String {
    let doc: Value = HttpClient::new(server).get(&format!("/jobs/{id}")).await.json();
    doc["status"].as_str().unwrap_or_default().to_owned()
}

/// Waits (see [`common::until_some`]) until the job `id` is canceled.
async fn until_canceled(server: &Server, id: &str) {
    common::until_some(&format!("job {id} canceled"), || async {
        match status_of(server, id).await.as_str() {
            "canceled" => Ok(()),
            other => Err(other.to_owned()),
        }
    })
    .await
}

/// In process, on the paused clock: the client polls at least every 200 ms
/// (`fast()`), so ten seconds of that clock without a poll after the drop
/// mean it stopped, on any machine, and at no cost in real time; the
/// report (100 pages of 300 ms) runs on meanwhile.
#[tokio::test(start_paused = true)]
async fn dropping_the_future_stops_the_polls() {
    let (app, polls) = counted(Completion::SeeOther);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Mutex::new(Some(tx));
    let layer = fast().long_poll(Duration::ZERO).on_status(move |doc| {
        if let (Some(id), Some(tx)) = (doc.json()["id"].as_str(), tx.lock().unwrap().take()) {
            let _ = tx.send(id.to_owned());
        }
    });
    let client = tower::Layer::layer(&layer, app.clone());
    let request = Request::post("/reports")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(r#"{"pages": 100}"#))
        .unwrap();
    let task = tokio::spawn(client.oneshot(request));
    let id = rx.await.expect("the 202's status document");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(polls.count() > 0, "the client polled before the drop");
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let before = polls.count();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(polls.count(), before, "no poll after the drop");
    // The job goes on: nobody asked to cancel it.
    let (answer, _) = common::oneshot::call(&app, Method::GET, &format!("/jobs/{id}"), &[]).await;
    assert_eq!(answer.status_word(), "running", "{answer:?}");
}

#[tokio::test]
async fn cancel_on_drop_deletes_the_abandoned_job() {
    let (server, _) = demo(Completion::SeeOther).await;
    let (id, task) = start_long_report(&server, FollowLayer::new().cancel_on_drop(true)).await;
    task.abort();
    let _ = task.await;
    until_canceled(&server, &id).await;
}

#[tokio::test]
async fn cancel_on_drop_deletes_the_job_at_the_deadline_too() {
    let (server, _) = demo(Completion::SeeOther).await;
    let layer = FollowLayer::new().cancel_on_drop(true).deadline(Duration::from_secs(1));
    let (id, task) = start_long_report(&server, layer).await;
    let outcome = task.await.unwrap();
    assert!(
        matches!(outcome, Err(FollowError::DeadlineExceeded { .. })),
        "{outcome:?}"
    );
    until_canceled(&server, &id).await;
}

/// In process, on the paused clock: a sleep of that clock ends only once
/// every other task is idle, so a `DELETE` the client could send after the
/// answer (from a drop guard or a task of its own) has reached the app by
/// then; a real-clock pause could end before it.
#[tokio::test(start_paused = true)]
async fn a_finished_job_is_not_deleted() {
    let (app, _) = counted(Completion::SeeOther);
    let ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = Arc::clone(&ids);
    let layer = FollowLayer::new().cancel_on_drop(true).on_status(move |doc| {
        if let Some(id) = doc.json()["id"].as_str() {
            record.lock().unwrap().push(id.to_owned());
        }
    });
    let client = tower::Layer::layer(&layer, app.clone());
    let request = Request::post("/echo?delay_ms=100")
        .body(axum::body::Body::from("kept"))
        .unwrap();
    let answer = client.oneshot(request).await.unwrap();
    assert_eq!(answer.into_body().collect().await.unwrap().to_bytes(), "kept");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let id = ids.lock().unwrap()[0].clone();
    // The result is still there for anyone holding the id.
    let (result, _) = common::oneshot::call(&app, Method::GET, &format!("/jobs/{id}/result"), &[]).await;
    assert_eq!((result.status, result.body.as_ref()), (StatusCode::OK, &b"kept"[..]));
}

#[tokio::test]
async fn the_client_drives_an_accepted_service_in_process() {
    // No HTTP at all: `Follow` over the demo's router.
    for style in STYLES {
        let client = tower::Layer::layer(&fast(), app::app(app::layer(style)));
        let request = Request::post("/echo?delay_ms=100")
            .body(axum::body::Body::from("in process"))
            .unwrap();
        let response = client.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "in process", "{style:?}");
    }
}

#[tokio::test]
async fn answers_other_than_202_pass_through() {
    let (server, polls) = demo(Completion::SeeOther).await;
    let client = follower(FollowLayer::new());
    // A refused request (400, no job) and a GET the layer does not defer.
    let refused = post(&client, &server.url("/reports"), r#"{"pages": 0}"#).await.unwrap();
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let page = call(&client, Method::GET, &server.url("/"), &[], "").await.unwrap();
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(polls.count(), 0);
}

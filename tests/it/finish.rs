//! A job always ends (issue 12, "Accepted means done"): when the store
//! fails as it records the outcome, `finish` is retried with a capped
//! backoff until the store answers, the waiter does not wait for it, the
//! runner stays held, and a shutdown that gives up stops it; a panic outside
//! the handler's catcher (a `Drop`, the store) still ends the job `failed`.
//! In process, on tokio's paused clock, so that the backoff's timing is
//! exact.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use common::oneshot::{assert_took, call};
use common::store::{Hooked, Hooks};
use common::{Answer, assert_accepted};
use http::{Method, StatusCode};
use tokio::time::Instant;
use tower_accepted::AcceptedLayer;
use tower_accepted::store::{JobId, StoreError};

/// The backoff's first delay and its cap, as `src/runner/outcome.rs` has them.
const FIRST: Duration = Duration::from_millis(50);
const CAP: Duration = Duration::from_secs(2);

/// Hooks whose `finish` fails its first `fails` calls (then delegates), and
/// that remember when each call came.
#[derive(Clone)]
struct FailingFinish {
    fails: usize,
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl FailingFinish {
    fn new(fails: usize) -> Self {
        Self {
            fails,
            calls: Arc::default(),
        }
    }

    fn calls(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().clone()
    }
}

impl Hooks for FailingFinish {
    async fn before_finish(&self, _id: JobId) -> Result<(), StoreError> {
        let mut calls = self.calls.lock().unwrap();
        calls.push(Instant::now());
        if calls.len() <= self.fails {
            return Err(StoreError::Unavailable("the store is down (planned)".into()));
        }
        Ok(())
    }

    fn finish_can_fail(&self) -> bool {
        true
    }
}

fn app(layer: &AcceptedLayer<Hooked<FailingFinish>>, started: Arc<Mutex<Vec<Instant>>>) -> Router {
    Router::new()
        .route(
            "/work",
            post(move || async move {
                started.lock().unwrap().push(Instant::now());
                "done"
            }),
        )
        .layer(layer.clone())
}

/// Polls `monitor` every 100 ms (up to two minutes of the paused clock)
/// until its job is no longer `pending` or `running`.
async fn terminal(app: &Router, monitor: &str) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (answer, _) = call(app, Method::GET, monitor, &[]).await;
        let status = answer.json()["status"].as_str().unwrap_or_default().to_owned();
        if status != "pending" && status != "running" {
            return answer;
        }
        assert!(Instant::now() < deadline, "still {status} after two minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Twenty failures of `finish`, far more than the four tries of before:
/// the job still ends `succeeded` with its result, after exactly 21 calls
/// whose gaps follow the backoff (between half the delay and the delay,
/// the delay doubling from 50 ms and never above 2 s). A second job waits
/// for the runner the first holds until its outcome is recorded.
#[tokio::test(start_paused = true)]
async fn a_failing_finish_is_retried_with_capped_backoff_until_the_store_takes_it() {
    let hooks = FailingFinish::new(20);
    let layer = AcceptedLayer::new().max_running(1).store(Hooked::new(hooks.clone()));
    let started = Arc::new(Mutex::new(Vec::new()));
    let app = app(&layer, Arc::clone(&started));

    let (first, _) = call(&app, Method::POST, "/work", &[]).await;
    let first = assert_accepted(&first);
    let (second, _) = call(&app, Method::POST, "/work", &[]).await;
    let second = assert_accepted(&second);

    let done = terminal(&app, &first).await;
    assert_eq!(done.json()["status"], "succeeded", "{:?}", done.body);
    let (result, _) = call(&app, Method::GET, &format!("{first}/result"), &[]).await;
    assert_eq!(result.status, StatusCode::OK);
    assert_eq!(result.body, "done");

    let done = terminal(&app, &second).await;
    assert_eq!(done.json()["status"], "succeeded", "{:?}", done.body);
    let calls = hooks.calls();
    // 20 failures and the success of the first job, then the second's one.
    assert_eq!(calls.len(), 22, "{calls:?}");
    let recorded = calls[20];
    let started = started.lock().unwrap().clone();
    assert_eq!(started.len(), 2);
    assert!(
        started[1] >= recorded,
        "the second job started at {:?}, before the first's outcome was recorded at {:?}",
        started[1],
        recorded
    );

    let mut delay = FIRST;
    for (i, pair) in calls[..21].windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        // A timer fires at its deadline rounded up to the next millisecond.
        assert!(
            gap >= delay / 2 && gap <= delay + Duration::from_millis(1),
            "retry {i}: {gap:?} apart, the delay being {delay:?}"
        );
        assert!(gap <= CAP + Duration::from_millis(1), "retry {i}: {gap:?} apart");
        delay = (delay * 2).min(CAP);
    }
    // The cap was reached: the later gaps are not the first delays'.
    assert!(calls[20] - calls[19] >= CAP / 2);
}

/// A client that waits in process (`Prefer: wait`) gets the handler's
/// answer at once, whether or not the store has taken the outcome yet.
#[tokio::test(start_paused = true)]
async fn the_waiter_does_not_wait_for_a_failing_store() {
    let hooks = FailingFinish::new(usize::MAX);
    let layer = AcceptedLayer::new().store(Hooked::new(hooks.clone()));
    let app = app(&layer, Arc::default());

    let (answer, took) = call(&app, Method::POST, "/work", &[("prefer", "wait=10")]).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body, "done");
    assert_took(took, Duration::ZERO, "the waiter's answer");
}

/// A job whose outcome the store keeps refusing counts for a graceful
/// shutdown, which waits for it until its deadline; then the retries stop
/// (the process is going away; the store will declare the job lost) and
/// the shutdown resolves at once, never hangs.
#[tokio::test(start_paused = true)]
async fn a_forced_shutdown_stops_the_retries() {
    const DEADLINE: Duration = Duration::from_secs(3);
    let hooks = FailingFinish::new(usize::MAX);
    let layer = AcceptedLayer::new().store(Hooked::new(hooks.clone()));
    let app = app(&layer, Arc::default());

    let (accepted, _) = call(&app, Method::POST, "/work", &[]).await;
    assert_accepted(&accepted);
    while hooks.calls().len() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(60), layer.shutdown(DEADLINE))
        .await
        .expect("the shutdown resolves");
    assert_took(started.elapsed(), DEADLINE, "the shutdown");
    let tried = hooks.calls().len();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(hooks.calls().len(), tried, "finish was tried again after the shutdown");
}

/// What the guards below panic with.
const PLANNED: &str = "a guard panicked in Drop (planned)";

/// Panics when dropped.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("{PLANNED}");
    }
}

/// A handler's future that answers at once but holds a guard until the
/// future itself is dropped, after its response was taken.
struct Guarded {
    _guard: PanicOnDrop,
    response: Option<http::Response<String>>,
}

impl std::future::Future for Guarded {
    type Output = Result<http::Response<String>, std::convert::Infallible>;

    fn poll(mut self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let response = self.response.take().unwrap_or_default();
        std::task::Poll::Ready(Ok(response))
    }
}

/// Asserts that the job of `monitor` ends `failed` with `panicked`, the
/// guard's message exposed.
async fn assert_panicked(app: &Router, monitor: &str) {
    let done = terminal(app, monitor).await;
    let doc = done.json();
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(doc["error"]["code"], "panicked", "{doc}");
    let message = doc["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(PLANNED), "{doc}");
}

/// A guard that panics in `Drop` once the handler returned its response:
/// the job ends `failed` with `panicked`, not `succeeded` nor `running`.
#[tokio::test(start_paused = true)]
async fn a_guard_panicking_after_the_response_fails_the_job() {
    common::panics::quiet_for_good(PLANNED);
    let layer = AcceptedLayer::new().expose_errors(true);
    let service = tower::service_fn(|_: http::Request<axum::body::Body>| Guarded {
        _guard: PanicOnDrop,
        response: Some(http::Response::new("done".to_owned())),
    });
    let app = Router::new().route_service("/work", service).layer(layer);
    let (accepted, _) = call(&app, Method::POST, "/work", &[]).await;
    assert_panicked(&app, &assert_accepted(&accepted)).await;
}

/// A guard that panics in `Drop` when its job is cut short (by the job's
/// timeout): the drop happens in the runner's catcher, so the job ends
/// `failed` with `panicked` instead of its task unwinding and the job
/// staying `running`.
#[tokio::test(start_paused = true)]
async fn a_guard_panicking_on_cancel_fails_the_job() {
    common::panics::quiet_for_good(PLANNED);
    let layer = AcceptedLayer::new()
        .expose_errors(true)
        .timeout(Duration::from_millis(200));
    let app = Router::new()
        .route(
            "/work",
            post(|| async {
                let _guard = PanicOnDrop;
                tokio::time::sleep(Duration::from_secs(60)).await;
                "too late"
            }),
        )
        .layer(layer.clone());
    let (accepted, _) = call(&app, Method::POST, "/work", &[]).await;
    assert_panicked(&app, &assert_accepted(&accepted)).await;
    // Nothing of the job is left under way.
    let started = Instant::now();
    layer.shutdown(Duration::from_secs(5)).await;
    assert_took(started.elapsed(), Duration::ZERO, "the shutdown");
}

/// Hooks whose `finish` panics the first time (then delegates).
#[derive(Clone, Default)]
struct PanickingFinish {
    calls: Arc<Mutex<usize>>,
}

impl Hooks for PanickingFinish {
    async fn before_finish(&self, _id: JobId) -> Result<(), StoreError> {
        let first = {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            *calls == 1
        };
        assert!(!first, "{PLANNED}");
        Ok(())
    }
}

/// A panic outside the handler's catcher, in the store's `finish` as the
/// runner records the outcome: the job's task is gone, yet the job still
/// ends `failed` with `panicked` (not `running` for good), and a shutdown
/// waits for nothing.
#[tokio::test(start_paused = true)]
async fn a_panic_while_recording_still_ends_the_job() {
    common::panics::quiet_for_good(PLANNED);
    let hooks = PanickingFinish::default();
    let layer = AcceptedLayer::new().store(Hooked::new(hooks.clone()));
    let app = Router::new()
        .route("/work", post(|| async { "done" }))
        .layer(layer.clone());
    let (accepted, _) = call(&app, Method::POST, "/work", &[]).await;
    let monitor = assert_accepted(&accepted);
    let done = terminal(&app, &monitor).await;
    let doc = done.json();
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(doc["error"]["code"], "panicked", "{doc}");
    assert_eq!(*hooks.calls.lock().unwrap(), 2);
    let started = Instant::now();
    layer.shutdown(Duration::from_secs(5)).await;
    assert_took(started.elapsed(), Duration::ZERO, "the shutdown");
}

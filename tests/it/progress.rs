//! Progress reports and the store (issue 12, "Accepted means done"): a slow
//! store never holds a handler back, the reports made during a write are
//! coalesced (the latest wins), and the job's end is recorded after the
//! write in flight; a store that fails once does not turn off the watch
//! that sees a `DELETE` made elsewhere.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::{Extension, Router};
use http::{Method, StatusCode};
use tokio::sync::watch;
use tower_accepted::store::{JobId, StoreError};
use tower_accepted::{AcceptedLayer, Job};

use common::oneshot::call;
use common::store::{Hooked, Hooks};
use common::until;

/// What the slow store saw, in order.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    WriteStarted(Option<f32>),
    WriteEnded(Option<f32>),
    Finish,
}

/// A store whose progress writes wait until `open` turns `true`.
#[derive(Clone)]
struct SlowProgress {
    open: watch::Receiver<bool>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl SlowProgress {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Hooks for SlowProgress {
    async fn before_set_progress(&self, progress: Option<f32>) {
        self.seen.lock().unwrap().push(Seen::WriteStarted(progress));
        let mut open = self.open.clone();
        let _ = open.wait_for(|open| *open).await;
    }

    fn after_set_progress(&self, progress: Option<f32>) {
        self.seen.lock().unwrap().push(Seen::WriteEnded(progress));
    }

    async fn before_finish(&self, _id: JobId) -> Result<(), StoreError> {
        self.seen.lock().unwrap().push(Seen::Finish);
        Ok(())
    }
}

/// A handler that reports `1/100` … `100/100`, giving the runner a turn
/// after each report, sets `returned` and answers.
async fn report_a_hundred_times(job: Job, returned: Arc<AtomicBool>) -> &'static str {
    for step in 1..=100u16 {
        job.set_progress(f32::from(step) / 100.0);
        job.set_message(format!("step {step}"));
        tokio::task::yield_now().await;
    }
    returned.store(true, Ordering::SeqCst);
    "reported"
}

/// A store whose first progress write hangs: the handler goes on and
/// returns meanwhile; the reports made during the write are written as one
/// (the last); the job's end is recorded only after that write ended.
#[tokio::test(start_paused = true)]
async fn a_slow_progress_write_never_holds_the_handler_back() {
    let (open, gate) = watch::channel(false);
    let hooks = SlowProgress {
        open: gate,
        seen: Arc::default(),
    };
    let returned = Arc::new(AtomicBool::new(false));
    let handler_returned = Arc::clone(&returned);
    let app = Router::new()
        .route(
            "/report",
            post(move |Extension(job): Extension<Job>| report_a_hundred_times(job, Arc::clone(&handler_returned))),
        )
        .layer(AcceptedLayer::new().store(Hooked::new(hooks.clone())));

    let (accepted, _) = call(&app, Method::POST, "/report", &[]).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
    let monitor = accepted.location();

    // The handler returns while the first write still hangs.
    until("the handler to return during the first write", || {
        returned.load(Ordering::SeqCst)
    })
    .await;
    let seen = hooks.seen();
    assert!(
        matches!(seen.as_slice(), [Seen::WriteStarted(Some(_))]),
        "one write begun, none ended: {seen:?}"
    );
    // Its end is not recorded while that write is in flight.
    let (answer, _) = call(&app, Method::GET, &monitor, &[]).await;
    assert_eq!(answer.json()["status"], "running", "{:?}", answer.body);

    open.send_replace(true);
    let (done, _) = call(&app, Method::GET, &format!("{monitor}?wait=5"), &[]).await;
    let doc = done.json();
    assert_eq!(doc["status"], "succeeded", "{doc}");
    // The last report, not one of those made during the write.
    assert_eq!(doc["progress"], 1.0, "{doc}");
    assert_eq!(doc["message"], "step 100", "{doc}");

    let seen = hooks.seen();
    let writes: Vec<Option<f32>> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::WriteStarted(p) => Some(*p),
            _ => None,
        })
        .collect();
    // Coalesced: the first (hung) write and the last report, not a hundred.
    assert!((2..=5).contains(&writes.len()), "{seen:?}");
    assert_eq!(writes.last(), Some(&Some(1.0)), "{seen:?}");
    // One write at a time, each ended before the next, and all of them
    // before the job's end: none lands on a finished job.
    let mut expected = Vec::new();
    for p in &writes {
        expected.extend([Seen::WriteStarted(*p), Seen::WriteEnded(*p)]);
    }
    expected.push(Seen::Finish);
    assert_eq!(seen, expected);
}

/// How many of the first `wait_terminal` calls fail.
const FAILED_WATCHES: usize = 3;

/// Fails the first [`FAILED_WATCHES`] `wait_terminal` calls (the running
/// job's watch for its end elsewhere) and delegates the later ones; counts
/// them.
#[derive(Clone, Default)]
struct FailFirstWatch {
    waits: Arc<AtomicUsize>,
}

impl Hooks for FailFirstWatch {
    fn fail_wait_terminal(&self, _id: JobId) -> bool {
        self.waits.fetch_add(1, Ordering::SeqCst) < FAILED_WATCHES
    }
}

/// Sets its flag when dropped: the handler's future is gone.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// After the store failed to watch a running job (three times running, so
/// that the wait before the next watch is made again twice), a `DELETE` of
/// it is still seen: the handler's future is dropped and the job ends
/// canceled.
#[tokio::test(start_paused = true)]
async fn a_delete_is_seen_after_the_watch_failed() {
    let hooks = FailFirstWatch::default();
    let (started, dropped) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (on_start, on_drop) = (Arc::clone(&started), Arc::clone(&dropped));
    let app = Router::new()
        .route(
            "/stuck",
            post(move || {
                let guard = SetOnDrop(Arc::clone(&on_drop));
                on_start.store(true, Ordering::SeqCst);
                async move {
                    let _guard = guard;
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    "too late"
                }
            }),
        )
        .layer(AcceptedLayer::new().store(Hooked::new(hooks.clone())));

    let (accepted, _) = call(&app, Method::POST, "/stuck", &[]).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
    let monitor = accepted.location();
    until("the handler to start", || started.load(Ordering::SeqCst)).await;
    until("the watch to fail", || hooks.waits.load(Ordering::SeqCst) >= 1).await;
    // Past the failures (100 + 200 + 400 ms of waits); the handler sleeps on.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!dropped.load(Ordering::SeqCst));

    let (deleted, _) = call(&app, Method::DELETE, &monitor, &[]).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    until("the handler's future to be dropped", || dropped.load(Ordering::SeqCst)).await;
    let (answer, _) = call(&app, Method::GET, &monitor, &[]).await;
    assert_eq!(answer.json()["status"], "canceled", "{:?}", answer.body);
    assert!(
        hooks.waits.load(Ordering::SeqCst) > FAILED_WATCHES,
        "the watch was made again after each failure"
    );
}

/// On a Redis whose writes are paused (`CLIENT PAUSE 3000 WRITE`), a
/// handler that reports a hundred times over about a second takes about a
/// second, not the pause; the job then succeeds with its last report.
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_paused_redis_never_holds_the_handler_back() {
    use std::time::Instant;

    use common::private_redis::PrivateRedis;
    use common::{HttpClient, serve};
    use tokio::sync::Notify;
    use tower_accepted::store::RedisStore;

    let redis = PrivateRedis::start().await;
    // Longer than the pause: a write waits it out rather than failing.
    let store = RedisStore::builder(redis.url())
        .namespace("progress")
        .command_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let (go, took) = (Arc::new(Notify::new()), Arc::new(Mutex::new(None)));
    let started = Arc::new(AtomicBool::new(false));
    let (handler_go, handler_took, on_start) = (Arc::clone(&go), Arc::clone(&took), Arc::clone(&started));
    let app = Router::new()
        .route(
            "/report",
            post(move |Extension(job): Extension<Job>| async move {
                on_start.store(true, Ordering::SeqCst);
                handler_go.notified().await;
                // The handler's own time, on the real clock.
                let began = Instant::now();
                for step in 1..=100u16 {
                    job.set_progress(f32::from(step) / 100.0);
                    job.set_message(format!("step {step}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                *handler_took.lock().unwrap() = Some(began.elapsed());
                "reported"
            }),
        )
        .layer(AcceptedLayer::new().store(store));
    let server = serve(app).await;
    let client = HttpClient::new(&server);

    let monitor = common::submit(&client, "/report", "").await;
    until("the handler to start", || started.load(Ordering::SeqCst)).await;
    redis.command(&["CLIENT", "PAUSE", "3000", "WRITE"]).await.unwrap();
    go.notify_one();

    until("the handler to return", || took.lock().unwrap().is_some()).await;
    let handler_took = took.lock().unwrap().unwrap_or_default();
    assert!(
        handler_took < Duration::from_millis(2500),
        "the handler took {handler_took:?} during a 3 s pause of the store's writes"
    );
    let done = client.until_done(&monitor).await;
    let doc = done.json();
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(doc["progress"], 1.0, "{doc}");
}

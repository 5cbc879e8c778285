//! `AcceptedLayer::drain_on` in axum's graceful shutdown, over real HTTP:
//! the job routes answer while jobs drain, new submissions are refused,
//! waiting long polls are let go when the drain ends, queued jobs that
//! would not start in time end at once, and the listener closes after.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use common::gate::held;
use common::oneshot::call;
use common::{Answer, HttpClient, poll_until, submit};
use http::{Method, StatusCode};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower_accepted::AcceptedLayer;
use tower_accepted::store::{JobId, JobStore, MemoryStore};

/// The bound of every test here.
const WITHIN: Duration = Duration::from_secs(60);
/// Generous bound for anything that should happen "soon".
const SOON: Duration = Duration::from_secs(10);

/// A server on 127.0.0.1 whose graceful shutdown is `layer.drain_on`.
struct Draining {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    /// Told when the signal has been seen: the drain begins in the same
    /// poll, so new submissions are refused from then on.
    began: Option<oneshot::Receiver<()>>,
    served: JoinHandle<std::io::Result<()>>,
}

impl Draining {
    async fn start<St: JobStore>(layer: &AcceptedLayer<St>, app: Router, deadline: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let (began_tx, began) = oneshot::channel::<()>();
        let signal = async move {
            let _ = stopped.await;
            let _ = began_tx.send(());
        };
        let drain = layer.drain_on(signal, deadline);
        let served = tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(drain).await });
        Self {
            addr,
            stop: Some(stop),
            began: Some(began),
            served,
        }
    }

    /// A client on connections of its own.
    fn client(&self) -> HttpClient {
        HttpClient::at(self.addr)
    }

    /// Sends the signal; returns once the drain has begun, having checked
    /// that a submission to `path` is refused: `503` with `Retry-After`.
    async fn signal(&mut self, path: &str) -> Instant {
        let signalled = Instant::now();
        let _ = self.stop.take().expect("signalled once").send(());
        let began = self.began.take().expect("signalled once");
        tokio::time::timeout(SOON, began)
            .await
            .expect("the server sees the signal")
            .expect("the signal future runs");
        let refused = self.client().post(path, "late").await;
        refused.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
        let retry: u64 = refused
            .header("retry-after")
            .expect("a refusal says when to come back")
            .parse()
            .expect("Retry-After in whole seconds");
        assert!(retry >= 1, "Retry-After: {retry}");
        signalled
    }

    /// Waits for the serve future to return, then checks that the
    /// listener is closed.
    async fn assert_closed_within(self, bound: Duration) {
        tokio::time::timeout(bound, self.served)
            .await
            .expect("the server stops once the drain is over")
            .expect("the server task did not panic")
            .expect("the server ended without an error");
        assert!(
            tokio::net::TcpStream::connect(self.addr).await.is_err(),
            "the listener is closed after the drain"
        );
    }
}

/// `POST /sleep?ms=N` answers `slept` after N ms.
fn sleeping() -> axum::routing::MethodRouter {
    post(|query: axum::extract::RawQuery| async move {
        let ms = query.0.and_then(|q| q.strip_prefix("ms=")?.parse().ok()).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        "slept"
    })
}

/// A long poll (`?wait=50`) of `monitor` on a connection of its own, in a
/// The drain's last job: its long poll asked first (its end ends the drain,
/// and the listener closes right after), then `gate` opened; the long poll
/// answers `succeeded` and the listener closes soon after.
async fn last_job_ends_the_drain(server: Draining, monitor: &str, gate: &Semaphore) {
    let long_poll = long_poll_of(&server, monitor);
    tokio::time::sleep(Duration::from_millis(200)).await;
    gate.add_permits(1);
    let (done, _) = tokio::time::timeout(SOON, long_poll)
        .await
        .expect("the long poll answers")
        .unwrap();
    assert_eq!(done.status_word(), "succeeded", "{done:?}");
    server.assert_closed_within(SOON).await;
}

/// task: its answer and when it came.
fn long_poll_of(server: &Draining, monitor: &str) -> JoinHandle<(Answer, Instant)> {
    let client = server.client();
    let path = format!("{monitor}?wait=50");
    tokio::spawn(async move {
        let answer = client.get(&path).await;
        (answer, Instant::now())
    })
}

/// The id a monitor path names.
fn job_id(monitor: &str) -> JobId {
    monitor
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("a job id")
}

fn status_of(doc: &serde_json::Value) -> &str {
    doc["status"].as_str().unwrap_or_default()
}

/// While the jobs drain, the listener is open: a job that finishes has its
/// monitor and result fetched on a new connection, a long poll on a job
/// answers when it ends; new submissions get `503`; after the drain the
/// server returns and the listener is closed.
#[tokio::test]
async fn results_stay_reachable_while_jobs_drain() {
    tokio::time::timeout(WITHIN, async {
        let (gate, other_gate) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
        let layer = AcceptedLayer::new();
        let app = Router::new()
            .route("/held", held(&gate, "held done"))
            .route("/other", held(&other_gate, "other done"))
            .layer(layer.clone());
        let mut server = Draining::start(&layer, app, Duration::from_secs(30)).await;
        let client = server.client();
        let first = submit(&client, "/held", "").await;
        let second = submit(&client, "/other", "").await;
        for monitor in [&first, &second] {
            poll_until(&client, monitor, "running", |doc| status_of(doc) == "running").await;
        }

        server.signal("/held").await;
        // A long poll waiting during the drain answers when its job ends.
        let long_poll = long_poll_of(&server, &first);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!long_poll.is_finished(), "the long poll waits for its job");
        let opened = Instant::now();
        gate.add_permits(1);
        let (answer, answered) = tokio::time::timeout(SOON, long_poll)
            .await
            .expect("the long poll answers")
            .unwrap();
        assert_eq!(answer.status_word(), "succeeded", "{answer:?}");
        assert!(answered >= opened, "it answered when its job ended");

        // On a new connection: the monitor and the result of the job that
        // finished during the drain.
        let fresh = server.client();
        let monitor = fresh.get(&first).await;
        assert_eq!(monitor.status_word(), "succeeded", "{monitor:?}");
        let result = fresh.get(&format!("{first}/result")).await;
        assert_eq!(result.status, StatusCode::OK, "{result:?}");
        assert_eq!(&result.body[..], b"held done");
        // The other job still runs, and the server still answers about it.
        assert!(!server.served.is_finished(), "the server waits for the drain");
        let other = server.client().get(&second).await;
        assert_eq!(other.status_word(), "running", "{other:?}");

        last_job_ends_the_drain(server, &second, &other_gate).await;
    })
    .await
    .expect("the test ends within its bound");
}

/// A long poll still waiting when the drain ends (on a job that another
/// layer of the same store runs, which this drain does not end) answers at
/// once with the job's state, well before its `wait`; later long polls do
/// not wait at all.
#[tokio::test]
async fn waiting_long_polls_answer_when_the_drain_ends() {
    tokio::time::timeout(WITHIN, async {
        let gate = Arc::new(Semaphore::new(0));
        let store = MemoryStore::new();
        let draining = AcceptedLayer::new().store(store.clone());
        // Another layer on the same store, with a shutdown of its own.
        let other = AcceptedLayer::new().store(store);
        let app = Router::new()
            .route("/held", held(&gate, "held done").layer(draining.clone()))
            .route("/elsewhere", held(&gate, "elsewhere done").layer(other.clone()))
            .nest_service("/jobs", draining.job_routes());
        let deadline = Duration::from_secs(1);
        let mut server = Draining::start(&draining, app.clone(), deadline).await;
        let client = server.client();
        let elsewhere = submit(&client, "/elsewhere", "").await;
        poll_until(&client, &elsewhere, "running", |doc| status_of(doc) == "running").await;
        let running = submit(&client, "/held", "").await;
        poll_until(&client, &running, "running", |doc| status_of(doc) == "running").await;
        let mut stream = common::sse::open(server.addr, &elsewhere, &[("accept", "text/event-stream")]).await;
        let first = stream.next_event().await.expect("the job as it is");
        assert_eq!(first.event.as_deref(), Some("running"));

        let signalled = server.signal("/held").await;
        let long_poll = long_poll_of(&server, &elsewhere);
        let (answer, answered) = tokio::time::timeout(SOON, long_poll)
            .await
            .expect("the long poll answers when the drain ends, not after its wait")
            .unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(
            answer.status_word(),
            "running",
            "the job's state at the time: {answer:?}"
        );
        let waited = answered - signalled;
        assert!(
            waited >= deadline && waited < deadline + SOON,
            "answered at the end of the drain, not before: after {waited:?}"
        );
        // An event stream of a job still running ends too, so that it
        // does not hold up the server's shutdown.
        let rest = tokio::time::timeout(SOON, stream.rest())
            .await
            .expect("the stream ends with the drain");
        assert!(rest.is_empty(), "nothing changed meanwhile: {rest:?}");
        server.assert_closed_within(SOON).await;

        // The drain is over: a long poll now answers at once.
        let (answer, took) = call(&app, Method::GET, &format!("{elsewhere}?wait=50"), &[]).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(took < SOON, "a long poll after the drain does not wait");
        // And a new event stream is refused, with when to come back, rather
        // than opened to end at once (a browser would reconnect every second).
        let (stream, _) = call(&app, Method::GET, &format!("{elsewhere}/events"), &[]).await;
        stream.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
        assert!(stream.header("retry-after").is_some());

        gate.add_permits(1);
        let _ = other.shutdown(SOON).await;
    })
    .await
    .expect("the test ends within its bound");
}

/// One runner (`max_running(1)`) that has learned its jobs take about
/// `teach_ms` (a job of that length ran to its end), serving under
/// `drain_on` with `deadline`, with a `/held` job running that holds it
/// until `gate` opens: the setup of the tests of queued jobs in a drain.
struct OneRunner {
    layer: AcceptedLayer,
    server: Draining,
    client: HttpClient,
    gate: Arc<Semaphore>,
    running: String,
}

async fn one_runner_taught(teach_ms: u64, deadline: Duration) -> OneRunner {
    let gate = Arc::new(Semaphore::new(0));
    let layer = AcceptedLayer::new().max_running(1);
    let app = Router::new()
        .route("/sleep", sleeping())
        .route("/held", held(&gate, "held done"))
        .layer(layer.clone());
    let server = Draining::start(&layer, app, deadline).await;
    let client = server.client();
    let teacher = submit(&client, &format!("/sleep?ms={teach_ms}"), "").await;
    assert_eq!(client.until_done(&teacher).await.status_word(), "succeeded");
    let running = submit(&client, "/held", "").await;
    poll_until(&client, &running, "running", |doc| status_of(doc) == "running").await;
    OneRunner {
        layer,
        server,
        client,
        gate,
        running,
    }
}

/// With one runner whose jobs are known to take about a second, queued
/// jobs that would not start before a shorter deadline end `shutdown` as
/// soon as the drain begins, while the job running goes on until the
/// deadline.
#[tokio::test]
async fn queued_jobs_that_cannot_start_in_time_end_at_once() {
    tokio::time::timeout(WITHIN, async {
        // Queued jobs would start a second or more from the signal; the
        // deadline is shorter, and long enough to read their monitors.
        let deadline = Duration::from_millis(1_500);
        let OneRunner {
            mut server,
            client,
            running,
            ..
        } = one_runner_taught(2_000, deadline).await;
        let mut queued = Vec::new();
        for _ in 0..5 {
            let monitor = submit(&client, "/held", "").await;
            assert_eq!(client.get(&monitor).await.status_word(), "pending");
            queued.push(monitor);
        }

        let signalled = server.signal("/held").await;
        for monitor in &queued {
            let answer = poll_until(&client, monitor, "failed", |doc| status_of(doc) == "failed").await;
            let doc = answer.json();
            assert_eq!(doc["error"]["code"], "shutdown", "{doc}");
        }
        let seen = signalled.elapsed();
        assert!(
            seen < deadline,
            "the queued jobs ended at once, not at the deadline: {seen:?}"
        );
        let still = client.get(&running).await;
        assert_eq!(
            still.status_word(),
            "running",
            "the running job has until the deadline: {still:?}"
        );

        // At the deadline the running one is ended too, and the server stops.
        let ended = client.until_done(&running).await.json();
        assert_eq!(ended["error"]["code"], "shutdown", "{ended}");
        server.assert_closed_within(SOON).await;
    })
    .await
    .expect("the test ends within its bound");
}

/// A queued job whose estimated start is before the deadline waits for its
/// runner and runs during the drain.
#[tokio::test]
async fn a_queued_job_that_can_start_in_time_runs() {
    tokio::time::timeout(WITHIN, async {
        let OneRunner {
            layer,
            mut server,
            client,
            gate,
            ..
        } = one_runner_taught(300, Duration::from_secs(20)).await;
        let queued = submit(&client, "/sleep?ms=50", "").await;

        server.signal("/held").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let waiting = client.get(&queued).await;
        assert_eq!(waiting.status_word(), "pending", "it may start in time: {waiting:?}");
        last_job_ends_the_drain(server, &queued, &gate).await;
        let stored = layer
            .job_store()
            .response(job_id(&queued))
            .await
            .unwrap()
            .expect("a stored result");
        assert_eq!(&stored.body()[..], b"slept");
    })
    .await
    .expect("the test ends within its bound");
}

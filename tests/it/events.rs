//! Server-Sent Events on the monitor (issue 15) over real HTTP: events in
//! order with rising ids and the terminal event in each completion style,
//! resuming with `Last-Event-ID`, the events path, owner scoping, the bound
//! on open streams, and a client that leaves taking its stream's work along.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{MethodRouter, post};
use axum::{Extension, Router};
use http::StatusCode;
use tokio::sync::Semaphore;
use tower_accepted::store::JobStore;
use tower_accepted::{AcceptedLayer, Completion, Job};

use common::sse::{self, Event, Piece, Stream};
use common::{HttpClient, Server, serve, submit, until, until_some};

const ACCEPT_EVENTS: (&str, &str) = ("accept", "text/event-stream");

/// `POST` whose handler reports progress 0.25 and 0.5, each after a permit
/// of `gate`, and answers "done" after a third.
fn stepped(gate: &Arc<Semaphore>) -> MethodRouter {
    let gate = Arc::clone(gate);
    post(move |Extension(job): Extension<Job>| {
        let gate = Arc::clone(&gate);
        async move {
            for step in 1..=2u8 {
                gate.acquire().await.expect("gate open").forget();
                job.set_progress(f32::from(step) / 4.0);
            }
            gate.acquire().await.expect("gate open").forget();
            "done"
        }
    })
}

/// The app of these tests: `/steps` behind `layer`.
fn app<St: JobStore>(layer: AcceptedLayer<St>, gate: &Arc<Semaphore>) -> Router {
    Router::new().route("/steps", stepped(gate)).layer(layer)
}

/// The next event whose document shows `progress`, passing by events of
/// changes made on the way (a start that came late, say).
async fn until_progress(stream: &mut Stream, progress: f64) -> Event {
    loop {
        let event = stream.next_event().await.expect("the stream goes on");
        if event.json()["progress"].as_f64() == Some(progress) {
            return event;
        }
    }
}

/// Asserts the shape every event has: a numeric id above `after`, named by
/// the status word its document carries.
fn assert_event(event: &Event, after: u64) {
    assert!(event.id() > after, "id {} not above {after}", event.id());
    assert_eq!(
        event.event.as_deref(),
        event.json()["status"].as_str(),
        "event name is the status word"
    );
}

#[tokio::test]
async fn events_come_in_order_and_the_terminal_event_ends_the_stream_in_each_style() {
    for style in [Completion::SeeOther, Completion::Created, Completion::Ok] {
        let gate = Arc::new(Semaphore::new(0));
        let server = serve(app(AcceptedLayer::new().completion(style), &gate)).await;
        let client = HttpClient::new(&server);
        let monitor = submit(&client, "/steps", "").await;
        let mut stream = sse::open(server.addr, &monitor, &[ACCEPT_EVENTS]).await;
        assert_eq!(stream.status, StatusCode::OK);
        assert_eq!(stream.headers["content-type"], "text/event-stream");
        assert_eq!(stream.headers["cache-control"], "no-store");

        let first = stream.next_event().await.expect("the job as it is");
        assert_eq!(
            first.retry,
            Some(1000),
            "a browser reconnects after Retry-After's second"
        );
        assert_event(&first, 0);
        assert!(matches!(first.event.as_deref(), Some("pending" | "running")));
        let mut last = first.id();
        for progress in [0.25, 0.5] {
            gate.add_permits(1);
            let event = until_progress(&mut stream, progress).await;
            assert_event(&event, last);
            assert_eq!(event.event.as_deref(), Some("running"));
            last = event.id();
        }
        gate.add_permits(1);
        let rest = stream.rest().await;
        let terminal = rest.last().expect("a terminal event");
        for event in &rest {
            assert_event(event, last);
            last = event.id();
        }
        assert_eq!(terminal.event.as_deref(), Some("succeeded"), "{style:?}");
        let document = terminal.json();
        let result = format!("{monitor}/result");
        assert_eq!(document["result"], result.as_str(), "{style:?}: the result's link");
        if style == Completion::Ok {
            assert_eq!(document["resourceLocation"], result.as_str());
        }
        // The monitor's own terminal answer carries the same document.
        let answer = client.get(&monitor).await;
        assert_eq!(answer.json(), document, "{style:?}");
    }
}

#[tokio::test]
async fn last_event_id_resumes_after_the_event_it_names() {
    let gate = Arc::new(Semaphore::new(0));
    let server = serve(app(AcceptedLayer::new(), &gate)).await;
    let client = HttpClient::new(&server);
    let monitor = submit(&client, "/steps", "").await;
    let events = format!("{monitor}/events");
    let mut stream = sse::open(server.addr, &monitor, &[ACCEPT_EVENTS]).await;
    gate.add_permits(1);
    let quarter = until_progress(&mut stream, 0.25).await;
    drop(stream);

    // Resumed at the latest event: nothing until the next change.
    let seen = quarter.id().to_string();
    let mut resumed = sse::open(server.addr, &events, &[("last-event-id", &seen)]).await;
    assert_eq!(resumed.status, StatusCode::OK);
    // The stream names the id it resumes from, so a client's last event
    // id stays what it was.
    assert_eq!(resumed.last_id(), None);
    let _ = resumed.next_within(Duration::from_millis(100)).await;
    assert_eq!(resumed.last_id(), Some(seen.clone()));
    assert_eq!(
        resumed.next_within(Duration::from_millis(300)).await,
        None,
        "an event the client has seen is not sent again"
    );
    // An id the server never gave: the job as it is, at once.
    let unknown = (quarter.id() - 1).to_string();
    let mut at_once = sse::open(server.addr, &events, &[("last-event-id", &unknown)]).await;
    let current = at_once.next_event().await.expect("the current state");
    assert_eq!(
        (current.id(), current.json()["progress"].as_f64()),
        (quarter.id(), Some(0.25))
    );
    gate.add_permits(1);
    let half = until_progress(&mut resumed, 0.5).await;
    assert!(half.id() > quarter.id());
    gate.add_permits(1);
    let terminal = resumed.rest().await.pop().expect("the terminal event");
    assert_eq!(terminal.event.as_deref(), Some("succeeded"));

    // After the end: from an earlier event, the terminal one alone...
    let earlier = half.id().to_string();
    let mut late = sse::open(server.addr, &events, &[("last-event-id", &earlier)]).await;
    assert_eq!(
        late.rest().await,
        vec![terminal.clone()]
            .into_iter()
            .map(|e| Event { retry: Some(1000), ..e })
            .collect::<Vec<_>>()
    );
    // ... from the terminal event, `204`: nothing is sent twice, and a
    // browser's `EventSource` stops reconnecting.
    let done = terminal.id().to_string();
    let mut ended = sse::open(server.addr, &events, &[("last-event-id", &done)]).await;
    assert_eq!(ended.status, StatusCode::NO_CONTENT);
    assert_eq!(ended.next().await, Piece::End);
    // Without an id, or with one that is no number: the terminal event.
    for headers in [vec![], vec![("last-event-id", "tomorrow")]] {
        let mut fresh = sse::open(server.addr, &events, &headers).await;
        let all = fresh.rest().await;
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].id(), terminal.id());
    }
}

#[tokio::test]
async fn streams_are_scoped_by_owner_and_answer_errors_as_the_monitor_does() {
    let gate = Arc::new(Semaphore::new(0));
    let layer = AcceptedLayer::new().owner(|parts| {
        let user = parts.headers.get("x-user")?.to_str().ok()?;
        Some(user.to_owned())
    });
    let server = serve(app(layer, &gate)).await;
    let client = HttpClient::new(&server);
    let answer = client
        .send(http::Method::POST, "/steps", &[("x-user", "alice")], "")
        .await;
    let monitor = common::assert_accepted(&answer);
    let events = format!("{monitor}/events");
    let mut own = sse::open(server.addr, &events, &[("x-user", "alice")]).await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(own.next_event().await.is_some());
    for (path, headers) in [
        (events.as_str(), vec![("x-user", "mallory")]),
        (monitor.as_str(), vec![("x-user", "mallory"), ACCEPT_EVENTS]),
        (
            "/jobs/00000000-0000-4000-8000-000000000000/events",
            vec![("x-user", "alice")],
        ),
    ] {
        let mut other = sse::open(server.addr, path, &headers).await;
        assert_eq!(other.status, StatusCode::NOT_FOUND, "{path} {headers:?}");
        assert_eq!(other.headers["content-type"], "application/problem+json");
        assert!(matches!(
            other.next().await,
            Piece::End | Piece::Comment(_) | Piece::Event(_)
        ));
    }
    let posted = client
        .send(http::Method::POST, &events, &[("x-user", "alice")], "")
        .await;
    assert_eq!(posted.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(posted.header("allow"), Some("GET, HEAD"));
    let head = client
        .send(http::Method::HEAD, &events, &[("x-user", "alice")], "")
        .await;
    assert_eq!(
        (head.status, head.header("content-type")),
        (StatusCode::OK, Some("text/event-stream"))
    );
    assert!(head.body.is_empty());
    gate.add_permits(3);
}

/// A server whose streams send a comment line every 100 ms, so that one
/// whose client left is noticed at once.
async fn quick_heartbeat_server(gate: &Arc<Semaphore>, streams: usize) -> Server {
    let layer = AcceptedLayer::new()
        .event_heartbeat(Duration::from_millis(100))
        .max_event_streams(streams);
    serve(app(layer, gate)).await
}

#[tokio::test]
async fn open_streams_are_bounded_and_a_place_frees_when_a_client_leaves() {
    let gate = Arc::new(Semaphore::new(0));
    let server = quick_heartbeat_server(&gate, 2).await;
    let client = HttpClient::new(&server);
    let monitor = submit(&client, "/steps", "").await;
    let mut first = sse::open(server.addr, &monitor, &[ACCEPT_EVENTS]).await;
    let second = sse::open(server.addr, &monitor, &[ACCEPT_EVENTS]).await;
    assert_eq!((first.status, second.status), (StatusCode::OK, StatusCode::OK));
    let refused = client.send(http::Method::GET, &monitor, &[ACCEPT_EVENTS], "").await;
    let problem = refused.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    assert!(problem["detail"].as_str().unwrap().contains("event streams"));
    assert!(refused.header("retry-after").is_some());
    // The plain monitor is no stream, and answers.
    assert_eq!(client.get(&monitor).await.status, StatusCode::OK);
    // Heartbeats keep a quiet stream talking.
    assert!(first.next_event().await.is_some());
    assert_eq!(first.next().await, Piece::Comment(String::new()));
    drop(second);
    until_some("a place for a new stream", || async {
        match sse::open(server.addr, &monitor, &[ACCEPT_EVENTS]).await.status {
            StatusCode::OK => Ok(()),
            other => Err(other),
        }
    })
    .await;
    gate.add_permits(3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_stream_leaves_no_task_behind() {
    let gate = Arc::new(Semaphore::new(0));
    let server = quick_heartbeat_server(&gate, 16).await;
    let client = HttpClient::new(&server);
    let monitor = submit(&client, "/steps", "").await;
    let metrics = tokio::runtime::Handle::current().metrics();
    // The server, the job's task and the client's pooled connections.
    let before = metrics.num_alive_tasks();
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = sse::open(server.addr, &monitor, &[ACCEPT_EVENTS]).await;
        assert!(stream.next_event().await.is_some());
        streams.push(stream);
    }
    assert!(
        metrics.num_alive_tasks() > before,
        "open streams have their connections' tasks and their job's reader"
    );
    drop(streams);
    until("every task of the streams ended", || {
        metrics.num_alive_tasks() <= before
    })
    .await;
    // The job goes on, and a new stream sees it through.
    let mut again = sse::open(server.addr, &monitor, &[ACCEPT_EVENTS]).await;
    gate.add_permits(3);
    let terminal = again.rest().await.pop().expect("the terminal event");
    assert_eq!(terminal.event.as_deref(), Some("succeeded"));
}

#[cfg(any(feature = "redis", feature = "postgres"))]
/// A stream opened on replica B sees the progress and the end of a job
/// that runs on replica A, through the shared store's announcements.
async fn a_stream_on_b_follows_a_job_on_a<St: JobStore + Clone>(a: St, b: St) {
    let gate = Arc::new(Semaphore::new(0));
    let on_a = serve(app(AcceptedLayer::new().store(a), &gate)).await;
    // Replica B serves the same routes, with a gate that is never opened:
    // nothing runs there.
    let on_b = serve(app(AcceptedLayer::new().store(b), &Arc::new(Semaphore::new(0)))).await;
    let monitor = submit(&HttpClient::new(&on_a), "/steps", "").await;
    let mut stream = sse::open(on_b.addr, &monitor, &[ACCEPT_EVENTS]).await;
    assert_eq!(stream.status, StatusCode::OK);
    let first = stream.next_event().await.expect("the job as it is");
    let mut last = first.id();
    for progress in [0.25, 0.5] {
        gate.add_permits(1);
        let event = until_progress(&mut stream, progress).await;
        assert_event(&event, last);
        last = event.id();
    }
    gate.add_permits(1);
    let terminal = stream.rest().await.pop().expect("the terminal event");
    assert_eq!(terminal.event.as_deref(), Some("succeeded"));
    assert!(terminal.id() > last);
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_one_replica_follows_a_job_on_another_through_redis() {
    use common::redis::{namespace, store};
    let ns = namespace();
    a_stream_on_b_follows_a_job_on_a(store(&ns).await, store(&ns).await).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_one_replica_follows_a_job_on_another_through_postgres() {
    use common::postgres::{Schema, store};
    let schema = Schema::new();
    a_stream_on_b_follows_a_job_on_a(store(&schema).await, store(&schema).await).await;
}

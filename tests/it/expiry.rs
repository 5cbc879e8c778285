//! Expiry of finished jobs and `410 Gone`, with tokio's clock paused so that
//! hours pass at once. In-process (`oneshot`): the behaviour is the store's
//! clock, not the network.

use std::convert::Infallible;
use std::time::Duration;
use tower_accepted::store::Claim;

use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt};
use tower_accepted::{
    Accepted, AcceptedLayer,
    store::{JobStore, MemoryStore},
};

type Inner = tower::util::ServiceFn<fn(Request<tower_accepted::RequestBody<Body>>) -> Ready>;
type Ready = std::future::Ready<Result<Response<Body>, Infallible>>;

fn done(_request: Request<tower_accepted::RequestBody<Body>>) -> Ready {
    std::future::ready(Ok(Response::new(Body::from("finished"))))
}

fn service(ttl: Duration, tombstones: usize, tombstone_ttl: Duration) -> Accepted<Inner, MemoryStore> {
    let store = MemoryStore::builder()
        .ttl(ttl)
        .tombstones(tombstones, tombstone_ttl)
        .build();
    service_on(store)
}

fn service_on(store: MemoryStore) -> Accepted<Inner, MemoryStore> {
    AcceptedLayer::new()
        .store(store)
        .layer(tower::service_fn(done as fn(_) -> _))
}

async fn call(service: &Accepted<Inner, MemoryStore>, method: Method, uri: &str) -> (StatusCode, Bytes) {
    let request = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    let status = response.status();
    (status, response.into_body().collect().await.unwrap().to_bytes())
}

async fn submit_and_finish(service: &Accepted<Inner, MemoryStore>) -> String {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/work")
        .body(Body::empty())
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let monitor = response.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let (status, _) = call(service, Method::GET, &format!("{monitor}?wait=10")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    monitor
}

fn problem_status(body: &Bytes) -> u64 {
    let doc: serde_json::Value = serde_json::from_slice(body).unwrap();
    doc["status"].as_u64().unwrap()
}

#[tokio::test(start_paused = true)]
async fn finished_jobs_expire_then_answer_gone_then_unknown() {
    let service = service(Duration::from_secs(3600), 100, Duration::from_secs(24 * 3600));
    let monitor = submit_and_finish(&service).await;
    let result = format!("{monitor}/result");

    tokio::time::advance(Duration::from_secs(3599)).await;
    let (status, body) = call(&service, Method::GET, &result).await;
    assert_eq!(
        (status, &body[..]),
        (StatusCode::OK, &b"finished"[..]),
        "still there just before the TTL"
    );

    tokio::time::advance(Duration::from_secs(2)).await;
    for (method, uri) in [
        (Method::GET, &monitor),
        (Method::HEAD, &monitor),
        (Method::GET, &result),
        (Method::DELETE, &monitor),
    ] {
        let (status, body) = call(&service, method.clone(), uri).await;
        assert_eq!(status, StatusCode::GONE, "{method} {uri}");
        if method != Method::HEAD {
            assert_eq!(problem_status(&body), 410);
        }
    }

    tokio::time::advance(Duration::from_secs(24 * 3600)).await;
    let (status, body) = call(&service, Method::GET, &monitor).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "tombstones are forgotten after their time"
    );
    assert_eq!(problem_status(&body), 404);
}

#[tokio::test(start_paused = true)]
async fn deleted_jobs_are_unknown_not_gone() {
    let service = service(Duration::from_secs(60), 100, Duration::from_secs(3600));
    let monitor = submit_and_finish(&service).await;
    let (status, _) = call(&service, Method::DELETE, &monitor).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&service, Method::GET, &monitor).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    tokio::time::advance(Duration::from_secs(120)).await;
    let (status, _) = call(&service, Method::GET, &monitor).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a forgotten job leaves no tombstone");
}

#[tokio::test(start_paused = true)]
async fn tombstones_are_bounded() {
    // Room for one tombstone: older expired ids fall back to 404.
    let store = MemoryStore::builder()
        .ttl(Duration::from_secs(10))
        .tombstones(1, Duration::from_secs(3600))
        .build();
    let service = service_on(store.clone());
    let mut monitors = Vec::new();
    for _ in 0..300 {
        monitors.push(submit_and_finish(&service).await);
    }
    tokio::time::advance(Duration::from_secs(11)).await;
    store.purge_expired();
    assert_eq!(store.len(), 0);
    let mut gone = 0;
    for monitor in &monitors {
        let (status, _) = call(&service, Method::GET, monitor).await;
        assert!(matches!(status, StatusCode::GONE | StatusCode::NOT_FOUND), "{status}");
        gone += usize::from(status == StatusCode::GONE);
    }
    assert_eq!(gone, 1, "one tombstone is kept, for the id that expired last");
}

// ---------------------------------------------------------------------------
// The byte budget of finished jobs.

/// The size of each result of the budget test.
const RESULT_BYTES: usize = 10 * 1024;

/// The result of job `index`: `RESULT_BYTES` bytes, its index first.
fn big_result(index: &str) -> Bytes {
    let mut body = format!("{index:>8}|").into_bytes();
    body.resize(RESULT_BYTES, b'-');
    Bytes::from(body)
}

/// `/big` answers `big_result` of the request body (an index) at once;
/// `/gate` waits until `gate` lets it through, then answers
/// `big_result("gate")`.
fn gated_service(
    store: MemoryStore,
    gate: std::sync::Arc<tokio::sync::Semaphore>,
) -> impl tower::Service<
    Request<Body>,
    Response = Response<impl http_body::Body<Data = Bytes, Error: std::fmt::Debug>>,
    Error = Infallible,
    Future: Send,
> + Clone {
    let inner = tower::service_fn(move |request: Request<tower_accepted::RequestBody<Body>>| {
        let gate = std::sync::Arc::clone(&gate);
        async move {
            let path = request.uri().path().to_owned();
            let index = request.into_body().collect().await.unwrap().to_bytes();
            let body = if path == "/gate" {
                gate.acquire().await.unwrap().forget();
                big_result("gate")
            } else {
                big_result(std::str::from_utf8(&index).unwrap())
            };
            Ok::<_, Infallible>(Response::new(Body::from(body)))
        }
    });
    AcceptedLayer::new().store(store).layer(inner)
}

async fn send<S, B>(service: &S, method: Method, uri: &str, body: String) -> (StatusCode, http::HeaderMap, Bytes)
where
    S: tower::Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes, Error: std::fmt::Debug>,
{
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body))
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, body.collect().await.unwrap().to_bytes())
}

/// What one finished job of `big_result` weighs in a store: measured, since
/// it counts the stored headers too.
async fn weight_of_a_big_job() -> usize {
    let store = MemoryStore::new();
    let service = gated_service(store.clone(), std::sync::Arc::new(tokio::sync::Semaphore::new(0)));
    let (status, headers, _) = send(&service, Method::POST, "/big", "0".into()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let monitor = headers[header::LOCATION].to_str().unwrap();
    let (status, _, _) = send(&service, Method::GET, &format!("{monitor}?wait=10"), String::new()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    store.finished_bytes()
}

/// A byte budget with room for ten finished jobs of a 10 KiB result: thirty
/// of them leave the newest ten served, the twenty oldest `410 Gone` (their
/// status and their result alike), and the finished jobs weigh no more than
/// the budget once the store is next used after each finish (at most one
/// job more in between: see `the_budget_holds_between_operations_too`);
/// pending and running jobs are never evicted, however full the budget.
///
/// Before the hardening there was no byte budget (`max_finished_bytes` did
/// not exist, so this does not build against it): finished jobs were kept
/// for their whole time to live whatever they weighed, and all thirty would
/// be served.
#[tokio::test(start_paused = true)]
async fn finished_jobs_past_the_byte_budget_are_evicted_oldest_first() {
    let weight = weight_of_a_big_job().await;
    assert!(
        (RESULT_BYTES + 320..RESULT_BYTES + 1024).contains(&weight),
        "a job of a 10 KiB result weighs {weight} bytes"
    );
    // Room for ten and a half.
    let budget = 10 * weight + weight / 2;
    let store = MemoryStore::builder().max_finished_bytes(budget).build();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let service = gated_service(store.clone(), std::sync::Arc::clone(&gate));
    let within_budget = |when: &str| {
        let bytes = store.finished_bytes();
        assert!(
            bytes <= budget,
            "{when}: finished jobs weigh {bytes} bytes, over the budget of {budget}"
        );
    };

    // Unfinished jobs: one running through the layer (it waits at the gate),
    // one pending and one running put in the store directly.
    let (status, headers, _) = send(&service, Method::POST, "/gate", String::new()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let gated = headers[header::LOCATION].to_str().unwrap().to_owned();
    let pending = tower_accepted::store::JobId::new();
    store
        .create(tower_accepted::store::JobRecord::pending(pending))
        .await
        .unwrap();
    let running = tower_accepted::store::JobId::new();
    store
        .create(tower_accepted::store::JobRecord::pending(running))
        .await
        .unwrap();
    assert!(store.start(Claim::first(running)).await.unwrap());

    let mut monitors = Vec::new();
    for index in 0..30 {
        let (status, headers, _) = send(&service, Method::POST, "/big", index.to_string()).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        monitors.push(headers[header::LOCATION].to_str().unwrap().to_owned());
        // The job runs and finishes. Eviction is lazy: the store may be
        // over its budget by the job that just finished until its next
        // operation (see `the_budget_holds_between_operations_too`).
        tokio::time::advance(Duration::from_millis(10)).await;
        let bytes = store.finished_bytes();
        assert!(bytes <= budget + weight, "once job {index} finished: {bytes} bytes");
        assert_eq!(
            store.get(tower_accepted::store::JobId::new()).await.unwrap(),
            tower_accepted::store::Lookup::Unknown
        );
        within_budget(&format!("once job {index} finished and the store was next used"));
        let kept = (index + 1).min(10);
        assert_eq!(
            store.len(),
            3 + kept,
            "job {index} finished: {kept} finished jobs kept and 3 unfinished"
        );
    }
    assert_eq!(store.finished_bytes(), 10 * weight);

    // The oldest twenty are gone, the newest ten served.
    for (index, monitor) in monitors.iter().enumerate() {
        let result = format!("{monitor}/result");
        let (status, _, body) = send(&service, Method::GET, monitor, String::new()).await;
        let (result_status, _, result_body) = send(&service, Method::GET, &result, String::new()).await;
        if index < 20 {
            assert_eq!(status, StatusCode::GONE, "job {index}, evicted: {body:?}");
            assert_eq!(problem_status(&body), 410);
            assert_eq!(result_status, StatusCode::GONE, "the result of job {index}, evicted");
        } else {
            assert_eq!(status, StatusCode::SEE_OTHER, "job {index}, kept: {body:?}");
            assert_eq!(result_status, StatusCode::OK, "the result of job {index}, kept");
            assert!(
                result_body == big_result(&index.to_string()),
                "the result of job {index}"
            );
        }
        within_budget("while reading");
    }

    // However full the budget, unfinished jobs stay.
    let (status, _, body) = send(&service, Method::GET, &gated, String::new()).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["status"], "running");
    let status_of = |lookup| match lookup {
        tower_accepted::store::Lookup::Found(record) => record.status,
        other => panic!("an unfinished job was evicted: {other:?}"),
    };
    assert_eq!(
        status_of(store.get(pending).await.unwrap()),
        tower_accepted::store::JobStatus::Pending
    );
    assert_eq!(
        status_of(store.get(running).await.unwrap()),
        tower_accepted::store::JobStatus::Running
    );

    // The gated job finishes last: it is the newest, and the oldest kept
    // (job 20) makes room for it.
    gate.add_permits(1);
    let (status, _, _) = send(&service, Method::GET, &format!("{gated}?wait=10"), String::new()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    within_budget("once the gated job finished");
    let (status, _, body) = send(&service, Method::GET, &format!("{gated}/result"), String::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == big_result("gate"));
    let (status, _, _) = send(&service, Method::GET, &monitors[20], String::new()).await;
    assert_eq!(status, StatusCode::GONE, "job 20 made room for the gated job");
    for (index, monitor) in monitors.iter().enumerate().skip(21) {
        let (status, _, _) = send(&service, Method::GET, monitor, String::new()).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "job {index} is kept");
    }
    assert_eq!(store.len(), 2 + 10, "ten finished jobs and the two unfinished ones");
    assert_eq!(store.finished_bytes(), 10 * weight);
}

/// The byte budget is "the most bytes finished jobs may weigh together"
/// (`MemoryStoreBuilder::max_finished_bytes`) between operations too: the
/// job that `finish` adds is evicted for as soon as it ends, not at the
/// store's next operation, and a large job that finishes among many small
/// ones brings the store back within its budget at once. (Found by this
/// test: eviction used to wait for the next operations, 32 jobs each.)
#[tokio::test(start_paused = true)]
async fn the_budget_holds_between_operations_too() {
    use tower_accepted::store::suite::stored_response;
    use tower_accepted::store::{JobId, JobRecord, Outcome};
    let budget = 100_000;
    let store = MemoryStore::builder().max_finished_bytes(budget).build();
    let small = Bytes::from(vec![b's'; 100]);
    let large = Bytes::from(vec![b'l'; budget / 2]);
    let finish = |body: &Bytes| {
        let (store, body) = (store.clone(), body.clone());
        async move {
            let id = JobId::new();
            store.create(JobRecord::pending(id)).await.unwrap();
            let outcome = Outcome::Response(stored_response(StatusCode::OK, http::HeaderMap::new(), body));
            assert!(store.finish(Claim::first(id), outcome).await.unwrap());
        }
    };
    // Small jobs up to the budget, then a large one.
    while store.finished_bytes() + 420 <= budget {
        finish(&small).await;
    }
    finish(&large).await;
    tokio::time::advance(Duration::from_secs(60)).await;
    let bytes = store.finished_bytes();
    assert!(
        bytes <= budget,
        "a minute after the last finish: {bytes} bytes, over the budget of {budget}"
    );
}

//! The following client against stand-in servers of every style in common
//! use (written here, served over real HTTP on 127.0.0.1): `Location`
//! monitors with `303` or `201`, Microsoft's `Operation-Location`, Azure's
//! `Location` that answers `202` while running, and results polled
//! directly; and the links and headers of the polls. Their pace
//! (`Retry-After`, the interval bounds, the backoff) is tested in process on
//! tokio's paused clock, against a monitor played by a `service_fn`, where
//! a delay can be asserted exactly.
#![cfg(feature = "client")]

use crate::common;
use crate::follow;

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, LOCATION, RETRY_AFTER};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use tower::{Layer, ServiceExt};
use tower_accepted::client::FollowLayer;

use common::serve;
use follow::{Counter, call, fast, follower, logged, post as follow_post};

fn json_response(status: StatusCode, headers: &[(&'static str, String)], body: serde_json::Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(*name, value.parse().unwrap());
    }
    response
}

fn host(headers: &HeaderMap) -> String {
    headers[HOST].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn location_monitor_then_303_with_relative_links() {
    let polls = Counter::default();
    let app = Router::new()
        .route(
            "/api/v1/submit",
            post(|| async { json_response(StatusCode::ACCEPTED, &[("location", "jobs/7".into())], json!({})) }),
        )
        .route(
            "/api/v1/jobs/7",
            get(move || {
                let n = polls.next();
                async move {
                    if n < 2 {
                        json_response(
                            StatusCode::OK,
                            &[("retry-after", "0".into())],
                            json!({"status": "running"}),
                        )
                    } else {
                        json_response(
                            StatusCode::SEE_OTHER,
                            &[("location", "../results/7#part".into())],
                            json!({"status": "succeeded"}),
                        )
                    }
                }
            }),
        )
        .route(
            "/api/v1/results/7",
            get(|| async {
                (
                    [
                        (CONTENT_TYPE, "text/plain"),
                        (http::HeaderName::from_static("x-result"), "7"),
                    ],
                    "result 7",
                )
            }),
        );
    let (app, log) = logged(app);
    let server = serve(app).await;
    let answer = follow_post(&follower(fast()), &server.url("/api/v1/submit"), "")
        .await
        .unwrap();
    assert_eq!(
        (answer.status, answer.body.as_ref()),
        (StatusCode::OK, &b"result 7"[..])
    );
    assert_eq!(answer.header("x-result"), Some("7"));
    assert_eq!(
        log.paths(),
        [
            "POST /api/v1/submit",
            "GET /api/v1/jobs/7",
            "GET /api/v1/jobs/7",
            "GET /api/v1/jobs/7",
            "GET /api/v1/results/7"
        ]
    );
}

#[tokio::test]
async fn two_oh_two_as_the_original_node_server_answers() {
    // mcumcu/two-oh-two: `GET /deferredjob` → 202 + Location: /monitor/{id};
    // the monitor answers `200 {"job_id": "still working..."}`, then
    // `201` + Location: /result/{id}; the result is `{"result": …}`.
    let polls = Counter::default();
    let app = Router::new()
        .route(
            "/deferredjob",
            get(|| async {
                json_response(
                    StatusCode::ACCEPTED,
                    &[("location", "/monitor/0.42".into())],
                    json!({"job_id": 0.42}),
                )
            }),
        )
        .route(
            "/monitor/{id}",
            get(move |axum::extract::Path(id): axum::extract::Path<String>| {
                let n = polls.next();
                async move {
                    if n < 3 {
                        json_response(StatusCode::OK, &[], json!({"job_id": "still working..."}))
                    } else {
                        json_response(
                            StatusCode::CREATED,
                            &[("location", format!("/result/{id}"))],
                            json!({"job_id": id}),
                        )
                    }
                }
            }),
        )
        .route(
            "/result/{id}",
            get(|axum::extract::Path(id): axum::extract::Path<String>| async move {
                json_response(
                    StatusCode::OK,
                    &[],
                    json!({"result": format!("Result of long-running process {id}.")}),
                )
            }),
        );
    let (app, log) = logged(app);
    let server = serve(app).await;
    let answer = call(&follower(fast()), Method::GET, &server.url("/deferredjob"), &[], "")
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["result"], "Result of long-running process 0.42.");
    assert_eq!(log.to("/monitor/0.42").len(), 4);
    assert_eq!(log.to("/result/0.42").len(), 1);
}

#[tokio::test]
async fn operation_location_in_every_case_with_resource_location() {
    for (not_started, running, succeeded) in [
        ("NotStarted", "Running", "Succeeded"),
        ("notstarted", "running", "succeeded"),
        ("NOTSTARTED", "InProgress", "SUCCEEDED"),
        ("pending", "running", "succeeded"),
    ] {
        let polls = Counter::default();
        let app = Router::new()
            .route(
                "/lro",
                post(move |headers: HeaderMap| async move {
                    let monitor = format!("http://{}/operations/1?api-version=2024-01-01", host(&headers));
                    json_response(
                        StatusCode::ACCEPTED,
                        &[("operation-location", monitor), ("retry-after", "0".into())],
                        json!({"status": not_started}),
                    )
                }),
            )
            .route(
                "/operations/1",
                get(move || {
                    let n = polls.next();
                    async move {
                        match n {
                            0 => json_response(StatusCode::OK, &[], json!({"id": "1", "status": not_started})),
                            1 => json_response(
                                StatusCode::OK,
                                &[],
                                json!({"id": "1", "status": running, "percentComplete": 50}),
                            ),
                            _ => json_response(
                                StatusCode::OK,
                                &[],
                                json!({"id": "1", "status": succeeded, "resourceLocation": "/things/1"}),
                            ),
                        }
                    }
                }),
            )
            .route(
                "/things/1",
                get(|| async { json_response(StatusCode::OK, &[], json!({"name": "thing 1"})) }),
            );
        let (app, log) = logged(app);
        let server = serve(app).await;
        let progress = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = progress.clone();
        let client = follower(fast().on_status(move |doc| record.lock().unwrap().push(doc.progress())));
        let answer = follow_post(&client, &server.url("/lro"), "").await.unwrap();
        assert_eq!(answer.json(), json!({"name": "thing 1"}), "{running}");
        assert_eq!(log.to("/operations/1?api-version=2024-01-01").len(), 3);
        assert!(progress.lock().unwrap().contains(&Some(0.5)));
    }
}

#[tokio::test]
async fn operation_location_without_resource_location() {
    // PUT: the final GET is the original URL. POST: the 202's Location when
    // it differs, else the final status document itself.
    let app = Router::new()
        .route(
            "/things/2",
            put(|| async {
                json_response(
                    StatusCode::ACCEPTED,
                    &[("operation-location", "/ops/put".into())],
                    json!({}),
                )
            })
            .get(|| async { json_response(StatusCode::OK, &[], json!({"name": "thing 2"})) }),
        )
        .route(
            "/post-with-location",
            post(|| async {
                json_response(
                    StatusCode::ACCEPTED,
                    &[
                        ("operation-location", "/ops/post".into()),
                        ("location", "/outcome".into()),
                    ],
                    json!({}),
                )
            }),
        )
        .route(
            "/post-alone",
            post(|| async {
                json_response(
                    StatusCode::ACCEPTED,
                    &[("operation-location", "/ops/post".into())],
                    json!({}),
                )
            }),
        )
        .route(
            "/ops/{op}",
            get(|| async { json_response(StatusCode::OK, &[], json!({"status": "Succeeded", "summary": 3})) }),
        )
        .route("/outcome", get(|| async { "the outcome" }));
    let server = serve(app).await;
    let client = follower(fast());
    let answer = call(&client, Method::PUT, &server.url("/things/2"), &[], "{}")
        .await
        .unwrap();
    assert_eq!(answer.json(), json!({"name": "thing 2"}));
    let answer = follow_post(&client, &server.url("/post-with-location"), "")
        .await
        .unwrap();
    assert_eq!(answer.body, "the outcome");
    let answer = follow_post(&client, &server.url("/post-alone"), "").await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["summary"], 3);
}

#[tokio::test]
async fn azure_location_style_202_while_running_then_the_result() {
    let polls = Counter::default();
    let app = Router::new()
        .route(
            "/vms",
            post(|| async {
                json_response(
                    StatusCode::ACCEPTED,
                    &[("location", "/poll/1".into()), ("retry-after", "0".into())],
                    json!(null),
                )
            }),
        )
        .route(
            "/poll/1",
            get(move || {
                let n = polls.next();
                async move {
                    if n < 2 {
                        (StatusCode::ACCEPTED, [(RETRY_AFTER, "0")]).into_response()
                    } else {
                        // The resource itself; its own `status` is no job status.
                        json_response(StatusCode::OK, &[], json!({"name": "vm1", "status": "Running"}))
                    }
                }
            }),
        );
    let (app, log) = logged(app);
    let server = serve(app).await;
    let answer = follow_post(&follower(fast()), &server.url("/vms"), "").await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json(), json!({"name": "vm1", "status": "Running"}));
    assert_eq!(log.to("/poll/1").len(), 3);
}

#[tokio::test]
async fn result_polled_directly_404_until_ready() {
    let polls = Counter::default();
    let app = Router::new()
        .route(
            "/things",
            post(|| async {
                json_response(
                    StatusCode::ACCEPTED,
                    &[("location", "/things/9".into())],
                    json!({"token": "9"}),
                )
            }),
        )
        .route(
            "/things/9",
            get(move || {
                let n = polls.next();
                async move {
                    if n < 3 {
                        StatusCode::NOT_FOUND.into_response()
                    } else {
                        json_response(StatusCode::OK, &[], json!({"thing": 9}))
                    }
                }
            }),
        );
    let (app, log) = logged(app);
    let server = serve(app).await;
    let answer = follow_post(&follower(fast()), &server.url("/things"), "")
        .await
        .unwrap();
    assert_eq!(answer.json(), json!({"thing": 9}));
    assert_eq!(log.to("/things/9").len(), 4);
}

#[tokio::test]
async fn a_large_result_is_streamed_through() {
    // 2 MiB of JSON from a `Location` URL: more than a status document may
    // be (1 MiB), so it is the result, read past the part already read.
    let big: String = format!("[{}0]", "1234567,".repeat(256 * 1024));
    let expected = big.clone();
    let app = Router::new()
        .route(
            "/big",
            post(|| async { json_response(StatusCode::ACCEPTED, &[("location", "/big/result".into())], json!({})) }),
        )
        .route(
            "/big/result",
            get(move || {
                let big = big.clone();
                async move {
                    // Chunked, so that the length is only known at the end.
                    let chunks = big.as_bytes().chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
                    let body = axum::body::Body::new(Chunks(chunks));
                    ([(CONTENT_TYPE, "application/json")], body).into_response()
                }
            }),
        );
    let server = serve(app).await;
    let answer = follow_post(&follower(fast()), &server.url("/big"), "").await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body.len(), expected.len());
    assert!(answer.body == expected.as_bytes());
}

/// A body sent in chunks, without a length.
struct Chunks(std::collections::VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|chunk| Ok(http_body::Frame::data(chunk))))
    }
}

/// A stand-in `Location` monitor played in process by a `service_fn`, for
/// the tests of the polls' pace on tokio's paused clock: `POST` answers
/// `202` with `Location: /m` and the headers `pace(0)`; the `n`-th poll of
/// `/m` (from 1) answers `200` "running" with the headers `pace(n)` while
/// `n <= running`, then `303` to `/r`, which answers "r". Every poll's time
/// on the paused clock is recorded.
struct Paced {
    /// When each poll of `/m` arrived.
    polls: std::sync::Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
}

type PacedService = tower::util::BoxCloneService<Request<Full<Bytes>>, Response, Infallible>;

impl Paced {
    fn new(
        running: usize,
        pace: impl Fn(usize) -> Vec<(&'static str, String)> + Send + Sync + 'static,
    ) -> (Self, PacedService) {
        let polls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = polls.clone();
        let pace = std::sync::Arc::new(pace);
        let service = tower::service_fn(move |request: Request<Full<Bytes>>| {
            let (record, pace) = (record.clone(), pace.clone());
            async move {
                let response = if request.method() == Method::POST {
                    let mut headers = pace(0);
                    headers.push(("location", "/m".into()));
                    json_response(StatusCode::ACCEPTED, &headers, json!({"status": "pending"}))
                } else if request.uri().path() == "/m" {
                    let n = {
                        let mut polls = record.lock().unwrap();
                        polls.push(tokio::time::Instant::now());
                        polls.len()
                    };
                    if n <= running {
                        json_response(StatusCode::OK, &pace(n), json!({"status": "running"}))
                    } else {
                        json_response(StatusCode::SEE_OTHER, &[("location", "/r".into())], json!({}))
                    }
                } else {
                    "r".into_response()
                };
                Ok::<_, Infallible>(response)
            }
        });
        (Self { polls }, tower::util::BoxCloneService::new(service))
    }

    /// Follows a `POST` through `layer` to the end; asserts the result
    /// "r" and returns the delays before each poll: the first from the
    /// `202`, the others from the poll before.
    async fn follow(&self, layer: FollowLayer, service: PacedService) -> Vec<Duration> {
        let start = tokio::time::Instant::now();
        let request = Request::post("/submit").body(Full::new(Bytes::new())).unwrap();
        let response = layer.layer(service).oneshot(request).await.unwrap();
        assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "r");
        let polls = self.polls.lock().unwrap().clone();
        std::iter::once(start)
            .chain(polls.iter().copied())
            .zip(polls.iter().copied())
            .map(|(before, poll)| poll - before)
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_in_seconds_and_as_a_date_paces_the_polls() {
    // In process and on paused time, so that the delays are exact: each
    // poll comes exactly the Retry-After of the answer before it later.
    // A date has whole seconds of the wall clock, so the monitor notes the
    // delay it asks for when it answers; the client reads it a moment
    // (of the wall clock, microseconds in process) later.
    let asked: std::sync::Arc<std::sync::Mutex<Option<Duration>>> = Default::default();
    let noted = asked.clone();
    let (paced, service) = Paced::new(3, move |n| match n {
        0 => vec![("retry-after", "1".into())],
        1 => vec![("retry-after", "3".into())],
        2 => {
            let now = SystemTime::now();
            let date = httpdate::fmt_http_date(now + Duration::from_secs(2));
            let at = httpdate::parse_http_date(&date).unwrap();
            *noted.lock().unwrap() = Some(at.duration_since(now).unwrap());
            vec![("retry-after", date)]
        }
        _ => vec![("retry-after-ms", "1500".into())],
    });
    let layer = fast().long_poll(Duration::ZERO).max_interval(Duration::from_secs(5));
    let gaps = paced.follow(layer, service).await;
    assert_eq!(gaps.len(), 4, "{gaps:?}");
    assert_eq!(gaps[0], Duration::from_secs(1), "the 202's Retry-After: 1 → {gaps:?}");
    assert_eq!(gaps[1], Duration::from_secs(3), "Retry-After: 3 → {gaps:?}");
    // The date has whole seconds: between 1 and 2 s from the answer, and
    // what the monitor asked for, to the millisecond tick of the timer.
    let asked = asked.lock().unwrap().expect("the date was sent");
    assert!(
        asked > Duration::from_secs(1) && asked <= Duration::from_secs(2),
        "{asked:?}"
    );
    assert!(
        gaps[2] + Duration::from_millis(50) >= asked && gaps[2] <= asked + Duration::from_millis(1),
        "Retry-After: <date> {asked:?} later → {gaps:?}"
    );
    assert!(gaps[2] >= Duration::from_millis(950), "Retry-After: <date> → {gaps:?}");
    assert_eq!(gaps[3], Duration::from_millis(1500), "retry-after-ms: 1500 → {gaps:?}");
    assert!(gaps.iter().all(|g| *g < Duration::from_secs(4)), "{gaps:?}");
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_kept_within_the_configured_bounds() {
    // An hour is cut to the maximum; zero is raised to the minimum; what
    // lies between is kept. In process, on paused time: exactly.
    const MIN: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_millis(400);
    let (paced, service) = Paced::new(4, |n| match n {
        4 => vec![("retry-after-ms", "300".into())],
        n if n % 2 == 0 => vec![("retry-after", "3600".into())],
        _ => vec![("retry-after", "0".into())],
    });
    let layer = FollowLayer::new()
        .long_poll(Duration::ZERO)
        .min_interval(MIN)
        .max_interval(MAX);
    let gaps = paced.follow(layer, service).await;
    assert_eq!(gaps, [MAX, MIN, MAX, MIN, Duration::from_millis(300)]);
    assert!(gaps.iter().all(|g| *g >= Duration::from_millis(240)), "{gaps:?}");
    assert!(gaps.iter().all(|g| *g < Duration::from_secs(3)), "{gaps:?}");
}

#[tokio::test(start_paused = true)]
async fn without_retry_after_the_backoff_doubles_with_jitter() {
    // In process and on paused time, so that the delays can be measured
    // exactly: a monitor that never sends `Retry-After`.
    let (paced, service) = Paced::new(6, |_| Vec::new());
    let layer = FollowLayer::new()
        .long_poll(Duration::ZERO)
        .initial_interval(Duration::from_secs(1))
        .max_interval(Duration::from_secs(8));
    let delays = paced.follow(layer, service).await;
    let mut ceiling = Duration::from_secs(1);
    for delay in &delays {
        assert!(
            *delay >= ceiling / 2 && *delay <= ceiling,
            "{delay:?} not in [{:?}, {ceiling:?}]",
            ceiling / 2
        );
        ceiling = (ceiling * 2).min(Duration::from_secs(8));
    }
    assert_eq!(delays.len(), 7, "{delays:?}");
}

#[tokio::test]
async fn long_polls_held_by_the_server_are_sent_again_at_once() {
    // The monitor holds each poll 200 ms, says so with Preference-Applied,
    // and asks for `Retry-After: 5`, which a held poll makes moot.
    let polls = Counter::default();
    let app = Router::new()
        .route(
            "/submit",
            post(|| async {
                json_response(
                    StatusCode::ACCEPTED,
                    &[("location", "/m".into()), ("retry-after", "5".into())],
                    json!({}),
                )
            }),
        )
        .route(
            "/m",
            get(move |headers: HeaderMap| {
                let n = polls.next();
                async move {
                    let prefer = headers
                        .get("prefer")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    if n < 3 {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        json_response(
                            StatusCode::OK,
                            &[("preference-applied", prefer), ("retry-after", "5".into())],
                            json!({"status": "running"}),
                        )
                    } else {
                        json_response(StatusCode::SEE_OTHER, &[("location", "/done".into())], json!({}))
                    }
                }
            }),
        )
        .route("/done", get(|| async { "done" }));
    let (app, log) = logged(app);
    let server = serve(app).await;
    let started = std::time::Instant::now();
    let answer = follow_post(&follower(FollowLayer::new()), &server.url("/submit"), "")
        .await
        .unwrap();
    assert_eq!(answer.body, "done");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    let polls = log.to("/m");
    assert_eq!(polls.len(), 4);
    assert!(polls.iter().all(|p| p.headers["prefer"] == "wait=30"));
}

#[tokio::test]
async fn headers_go_with_the_polls_to_the_same_origin_only() {
    // Server B is another origin; server A's job is followed on both.
    let other = Router::new()
        .route(
            "/ops/1",
            get(|| async {
                json_response(
                    StatusCode::OK,
                    &[],
                    json!({"status": "succeeded", "resourceLocation": "/r"}),
                )
            }),
        )
        .route("/r", get(|| async { "from b" }));
    let (other, other_log) = logged(other);
    let b = serve(other).await;
    let b_monitor = b.url("/ops/1");
    let app = Router::new()
        .route(
            "/same",
            post(|| async { json_response(StatusCode::ACCEPTED, &[("location", "/m".into())], json!({})) }),
        )
        .route(
            "/cross",
            post(move || {
                let monitor = b_monitor.clone();
                async move { json_response(StatusCode::ACCEPTED, &[("operation-location", monitor)], json!({})) }
            }),
        )
        .route(
            "/m",
            get(|| async {
                json_response(
                    StatusCode::SEE_OTHER,
                    &[("location", "/r".into())],
                    json!({"status": "succeeded"}),
                )
            }),
        )
        .route("/r", get(|| async { "from a" }));
    let (app, log) = logged(app);
    let a = serve(app).await;
    let headers = [
        ("authorization", "Bearer secret"),
        ("cookie", "session=1"),
        ("x-tenant", "blue"),
        ("x-trace", "not forwarded"),
    ];
    let layer = || fast().forward_headers(|name| name == "x-tenant");

    let answer = call(&follower(layer()), Method::POST, &a.url("/same"), &headers, "")
        .await
        .unwrap();
    assert_eq!(answer.body, "from a");
    for seen in log.all().iter().filter(|s| s.method == Method::GET) {
        assert_eq!(seen.headers["authorization"], "Bearer secret", "{}", seen.path);
        assert_eq!(seen.headers["cookie"], "session=1");
        assert_eq!(seen.headers["x-tenant"], "blue");
        assert!(!seen.headers.contains_key("x-trace"));
    }
    assert_eq!(log.all().iter().filter(|s| s.method == Method::GET).count(), 2);

    let answer = call(&follower(layer()), Method::POST, &a.url("/cross"), &headers, "")
        .await
        .unwrap();
    assert_eq!(answer.body, "from b");
    let seen = other_log.all();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| !s.headers.contains_key("authorization") && !s.headers.contains_key("x-tenant"))
    );

    let client = follower(layer().forward_cross_origin(true));
    let answer = call(&client, Method::POST, &a.url("/cross"), &headers, "")
        .await
        .unwrap();
    assert_eq!(answer.body, "from b");
    let seen = other_log.all();
    assert_eq!(seen.len(), 4);
    assert!(
        seen[2..]
            .iter()
            .all(|s| s.headers["authorization"] == "Bearer secret" && s.headers["x-tenant"] == "blue")
    );
}

#[tokio::test]
async fn monitor_redirects_are_followed() {
    let app = Router::new()
        .route(
            "/submit",
            post(|| async {
                json_response(
                    StatusCode::ACCEPTED,
                    &[("operation-location", "/old/1".into())],
                    json!({}),
                )
            }),
        )
        .route(
            "/old/1",
            get(|| async { (StatusCode::TEMPORARY_REDIRECT, [(LOCATION, "/new/1")]).into_response() }),
        )
        .route(
            "/new/1",
            get(|| async {
                json_response(
                    StatusCode::OK,
                    &[],
                    json!({"status": "Succeeded", "result": "1/result"}),
                )
            }),
        )
        .route("/new/1/result", get(|| async { "moved result" }));
    let (app, log) = logged(app);
    let server = serve(app).await;
    let answer = follow_post(&follower(fast()), &server.url("/submit"), "")
        .await
        .unwrap();
    assert_eq!(answer.body, "moved result");
    assert_eq!(
        log.paths(),
        ["POST /submit", "GET /old/1", "GET /new/1", "GET /new/1/result"]
    );
}

#[tokio::test]
async fn a_202_without_a_monitor_is_the_answer() {
    let app = Router::new().route("/fire", post(|| async { (StatusCode::ACCEPTED, "queued") }));
    let (app, log) = logged(app);
    let server = serve(app).await;
    let answer = follow_post(&follower(fast()), &server.url("/fire"), "").await.unwrap();
    assert_eq!(
        (answer.status, answer.body.as_ref()),
        (StatusCode::ACCEPTED, &b"queued"[..])
    );
    assert_eq!(log.all().len(), 1);
}

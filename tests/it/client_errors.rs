//! Every way following a job can fail is a typed `FollowError`, never a
//! hang: against this crate's server where it can produce the outcome, and
//! against stand-in servers (real HTTP on 127.0.0.1) for the rest.
#![cfg(feature = "client")]

use crate::common;
use crate::follow;

use crate::demo_app as app;

use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use http::header::{CONTENT_TYPE, LOCATION};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_accepted::client::FollowError;
use tower_accepted::{Completion, client::FollowLayer, store::MemoryStore};

use common::{HttpClient, serve};
use follow::{Error, fast, follower, post as follow_post};

const STYLES: [Completion; 3] = [Completion::SeeOther, Completion::Created, Completion::Ok];

fn accepted(header: &'static str, link: &'static str) -> Response {
    (
        StatusCode::ACCEPTED,
        [(header, link)],
        axum::Json(json!({"status": "running"})),
    )
        .into_response()
}

fn running() -> Response {
    (
        StatusCode::OK,
        [("retry-after", "0")],
        axum::Json(json!({"status": "running"})),
    )
        .into_response()
}

/// A server whose `POST /submit` answers `202` with `header: link`, and the
/// given routes.
async fn stand_in(header: &'static str, link: &'static str, routes: Router) -> common::Server {
    serve(routes.route("/submit", post(move || async move { accepted(header, link) }))).await
}

async fn outcome(layer: FollowLayer, server: &common::Server) -> Error {
    match follow_post(&follower(layer), &server.url("/submit"), "").await {
        Ok(answer) => panic!("expected an error, got {answer:?}"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn a_failed_job_is_a_failed_error_with_its_code() {
    for style in STYLES {
        let server = serve(app::app(app::layer(style))).await;
        let error = follow_post(
            &follower(FollowLayer::new()),
            &server.url("/fail?mode=panic&delay_ms=100"),
            "",
        )
        .await
        .unwrap_err();
        let FollowError::Failed(doc) = &error else {
            panic!("{style:?}: {error:?}")
        };
        assert_eq!(doc.error().and_then(|e| e.code()), Some("panicked"), "{style:?}");
        assert_eq!(doc.status_word(), "failed");
        assert!(error.to_string().contains("panicked"), "{error}");
        assert!(error.status_document().is_some());
    }
}

#[tokio::test]
async fn a_canceled_job_is_a_canceled_error() {
    for style in STYLES {
        let server = serve(app::app(app::layer(style))).await;
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let tx = Mutex::new(Some(tx));
        let client = follower(
            FollowLayer::new()
                .long_poll(Duration::from_secs(1))
                .on_status(move |doc| {
                    if let (Some(id), Some(tx)) = (doc.json()["id"].as_str(), tx.lock().unwrap().take()) {
                        let _ = tx.send(id.to_owned());
                    }
                }),
        );
        let url = server.url("/reports");
        let task = tokio::spawn(async move { follow_post(&client, &url, r#"{"pages": 100}"#).await });
        let id = rx.await.unwrap();
        let deleted = HttpClient::new(&server).delete(&format!("/jobs/{id}")).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        let error = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&error, FollowError::Canceled(doc) if doc.status_word() == "canceled"),
            "{style:?}: {error:?}"
        );
    }
}

#[tokio::test]
async fn an_expired_job_is_an_expired_error() {
    // This crate's server: the job ends at once and is kept 200 ms; the
    // client, without long polls, waits the 202's `Retry-After: 1` first.
    let store = MemoryStore::builder().ttl(Duration::from_millis(200)).build();
    let server = serve(app::app(app::layer(Completion::SeeOther).store(store))).await;
    let client = follower(FollowLayer::new().long_poll(Duration::ZERO));
    let error = follow_post(&client, &server.url("/echo?delay_ms=10"), "x")
        .await
        .unwrap_err();
    let FollowError::Expired { url } = &error else {
        panic!("{error:?}")
    };
    assert!(url.path().starts_with("/jobs/"), "{url}");

    // A result polled directly that is gone.
    let server = stand_in(
        "location",
        "/things/1",
        Router::new().route("/things/1", get(|| async { StatusCode::GONE })),
    )
    .await;
    let error = outcome(fast(), &server).await;
    assert!(
        matches!(&error, FollowError::Expired { url } if url.path() == "/things/1"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_monitor_that_does_not_know_the_job_is_not_found() {
    let server = stand_in(
        "operation-location",
        "/operations/1",
        Router::new().route("/operations/1", get(|| async { StatusCode::NOT_FOUND })),
    )
    .await;
    let error = outcome(fast(), &server).await;
    assert!(
        matches!(&error, FollowError::NotFound { url } if url.path() == "/operations/1"),
        "{error:?}"
    );

    // A `Location` monitor that answered as one, then forgot the job.
    let polls = follow::Counter::default();
    let routes = Router::new().route(
        "/m",
        get(move || {
            let n = polls.next();
            async move {
                if n == 0 {
                    running()
                } else {
                    StatusCode::NOT_FOUND.into_response()
                }
            }
        }),
    );
    let server = stand_in("location", "/m", routes).await;
    let error = outcome(fast(), &server).await;
    assert!(matches!(error, FollowError::NotFound { .. }), "{error:?}");
}

#[tokio::test]
async fn the_deadline_ends_the_follow() {
    // This crate's server: a 30 s report, followed for 800 ms.
    let server = serve(app::app(app::layer(Completion::SeeOther))).await;
    let started = Instant::now();
    let client = follower(FollowLayer::new().deadline(Duration::from_millis(800)));
    let error = follow_post(&client, &server.url("/reports"), r#"{"pages": 100}"#)
        .await
        .unwrap_err();
    let FollowError::DeadlineExceeded { deadline, monitor } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(*deadline, Duration::from_millis(800));
    assert!(monitor.path().starts_with("/jobs/"));
    // The long poll in flight was cut short.
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // A monitor that never answers.
    let routes = Router::new().route(
        "/m",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            running()
        }),
    );
    let server = stand_in("location", "/m", routes).await;
    let started = Instant::now();
    let error = outcome(fast().deadline(Duration::from_millis(500)), &server).await;
    assert!(matches!(error, FollowError::DeadlineExceeded { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_job_that_never_ends_exhausts_the_polls() {
    let server = stand_in("location", "/m", Router::new().route("/m", get(|| async { running() }))).await;
    let error = outcome(fast().long_poll(Duration::ZERO).max_polls(3), &server).await;
    assert!(
        matches!(&error, FollowError::TooManyPolls { polls: 3, monitor } if monitor.path() == "/m"),
        "{error:?}"
    );
}

#[tokio::test]
async fn malformed_monitor_answers() {
    let routes = || {
        Router::new()
            .route("/text", get(|| async { "hello" }))
            .route(
                "/odd-status",
                get(|| async { axum::Json(json!({"status": "sleeping"})) }),
            )
            .route("/no-status", get(|| async { axum::Json(json!({"id": 1})) }))
            .route("/error", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
            .route("/see-other", get(|| async { StatusCode::SEE_OTHER }))
            .route(
                "/bad-location",
                get(|| async { (StatusCode::SEE_OTHER, [(LOCATION, "http://bad host/")]).into_response() }),
            )
            .route(
                "/bad-result",
                get(|| async { axum::Json(json!({"status": "Succeeded", "resourceLocation": "http://bad host/"})) }),
            )
            .route(
                "/huge",
                get(|| async {
                    (
                        [(CONTENT_TYPE, "application/json")],
                        format!("{{\"status\":\"running\",\"pad\":\"{}\"}}", "x".repeat(2 << 20)),
                    )
                }),
            )
    };
    for (link, reason) in [
        ("/text", "no status document"),
        ("/odd-status", "no status document"),
        ("/no-status", "no status document"),
        ("/error", "unexpected status 500"),
        ("/see-other", "without Location"),
        ("/bad-location", "no URL"),
        ("/bad-result", "no URL"),
        ("/huge", "too large"),
    ] {
        let server = stand_in("operation-location", link, routes()).await;
        let error = outcome(fast(), &server).await;
        let FollowError::Malformed { url, reason: why } = &error else {
            panic!("{link}: {error:?}")
        };
        assert_eq!(url.path(), link);
        assert!(why.contains(reason), "{link}: {why}");
    }
    // A `202` whose monitor link is no URL.
    let server = stand_in("location", "http://bad host/", Router::new()).await;
    let error = outcome(fast(), &server).await;
    assert!(
        matches!(&error, FollowError::Malformed { reason, .. } if reason.contains("no URL")),
        "{error:?}"
    );
}

#[tokio::test]
async fn redirects_that_go_round_are_a_redirect_loop() {
    let redirect = |to: &'static str| get(move || async move { (StatusCode::FOUND, [(LOCATION, to)]).into_response() });
    let routes = Router::new()
        .route("/a", redirect("/b"))
        .route("/b", redirect("/a"))
        .route(
            "/self",
            get(|| async { (StatusCode::SEE_OTHER, [(LOCATION, "/self")]).into_response() }),
        )
        .route(
            "/chain/{n}",
            get(|axum::extract::Path(n): axum::extract::Path<u32>| async move {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(LOCATION, format!("/chain/{}", n + 1))],
                )
                    .into_response()
            }),
        );
    let server = stand_in("location", "/a", routes.clone()).await;
    let error = outcome(fast(), &server).await;
    assert!(
        matches!(&error, FollowError::RedirectLoop { url, redirects: 2 } if url.path() == "/a"),
        "{error:?}"
    );

    let server = stand_in("location", "/self", routes.clone()).await;
    let error = outcome(fast(), &server).await;
    assert!(matches!(error, FollowError::RedirectLoop { .. }), "{error:?}");

    let server = stand_in("location", "/chain/0", routes).await;
    let error = outcome(fast().max_redirects(3), &server).await;
    assert!(
        matches!(&error, FollowError::RedirectLoop { url, redirects: 4 } if url.path() == "/chain/4"),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_http_clients_own_error_is_a_service_error() {
    // The monitor is on a port where nothing listens.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/m", closed.local_addr().unwrap());
    drop(closed);
    let dead: &'static str = Box::leak(dead.into_boxed_str());
    let server = stand_in("operation-location", dead, Router::new()).await;
    let error = outcome(fast(), &server).await;
    assert!(matches!(error, FollowError::Service(_)), "{error:?}");
    assert!(error.source().is_some());
}

#[tokio::test]
async fn a_broken_monitor_body_is_a_body_error() {
    // A raw server: the monitor promises 100 bytes, sends 10 and hangs up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer: &[u8] = if head.starts_with(b"POST") {
                    b"HTTP/1.1 202 Accepted\r\noperation-location: /m\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{\"status\":"
                };
                let _ = socket.write_all(answer).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    let error = follow_post(&follower(fast()), &format!("http://{addr}/submit"), "")
        .await
        .unwrap_err();
    assert!(matches!(error, FollowError::Body(_)), "{error:?}");
    assert!(error.source().is_some());
    server.abort();
}

#[tokio::test]
async fn every_error_displays_what_happened() {
    let uri: http::Uri = "/jobs/1".parse().unwrap();
    let errors: Vec<Error> = vec![
        FollowError::Expired { url: uri.clone() },
        FollowError::NotFound { url: uri.clone() },
        FollowError::DeadlineExceeded {
            deadline: Duration::from_secs(1),
            monitor: uri.clone(),
        },
        FollowError::TooManyPolls {
            polls: 5,
            monitor: uri.clone(),
        },
        FollowError::RedirectLoop {
            url: uri.clone(),
            redirects: 2,
        },
    ];
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    for (text, word) in texts.iter().zip(["410", "404", "1s", "5 polls", "2 in a row"]) {
        assert!(text.contains(word), "{text}");
        assert!(text.contains("/jobs/1"), "{text}");
    }
    let shared: Arc<dyn std::error::Error + Send + Sync> = Arc::new(errors.into_iter().next().unwrap());
    assert!(shared.source().is_none());
}

//! `send` end to end, against real receivers on 127.0.0.1 (allowed through
//! `allow_addresses`), and the refusals of hosts that resolve to loopback.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use super::outcome::SendOutcome;
use super::{Callbacks, RefusalKind, WebhookSecret};

/// Every test ends within this, or fails.
const LIMIT: Duration = Duration::from_secs(10);

async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, test).await.expect("the test took too long")
}

/// Callbacks to any URL, loopback allowed: the receivers are local (the
/// TLS tests' too).
pub(super) fn local() -> Callbacks {
    Callbacks::new(WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap())
        .allow(|_| true)
        .allow_addresses(|ip| ip.is_loopback())
}

/// A receiver that gives every request the answer `answer` makes, and
/// hands the requests it got (body read whole) to the test. Aborting the
/// task closes the listener and every connection.
struct Receiver {
    addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<Request<Bytes>>,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receiver(answer: fn() -> Response<Full<Bytes>>) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sent, requests) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let sent = sent.clone();
            let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                let sent = sent.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let _ = sent.send(Request::from_parts(parts, body));
                    Ok::<_, Infallible>(answer())
                }
            });
            connections.spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Receiver { addr, requests, task }
}

fn status(code: u16) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .body(Full::new(Bytes::from_static(b"thanks")))
        .unwrap()
}

#[tokio::test]
async fn a_delivery_is_a_signed_json_post() {
    bounded(async {
        let mut receiver = receiver(|| status(204)).await;
        let callbacks = local();
        let url = format!("http://localhost:{}/hooks/done?job=7", receiver.addr.port());
        let payload = Bytes::from_static(br#"{"id":"7","status":"succeeded"}"#);
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let outcome = callbacks.send(&url, "job_7", payload.clone()).await;
        assert_eq!(outcome, SendOutcome::Delivered);

        let request = receiver.requests.recv().await.unwrap();
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.uri(), "/hooks/done?job=7");
        let header = |name: &str| request.headers().get(name).unwrap().to_str().unwrap().to_owned();
        assert_eq!(header("host"), format!("localhost:{}", receiver.addr.port()));
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(header("content-length"), payload.len().to_string());
        assert!(header("user-agent").starts_with("tower-accepted/"));
        assert_eq!(header("webhook-id"), "job_7");
        let timestamp: u64 = header("webhook-timestamp").parse().unwrap();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(before <= timestamp && timestamp <= after);
        assert_eq!(request.body(), &payload);
        assert_eq!(
            header("webhook-signature"),
            callbacks.secret().sign("job_7", timestamp, &payload)
        );
    })
    .await;
}

#[tokio::test]
async fn answers_become_outcomes() {
    bounded(async {
        let gone = receiver(|| status(410)).await;
        let failing = receiver(|| status(500)).await;
        let busy = receiver(|| {
            Response::builder()
                .status(503)
                .header("retry-after", "7")
                .body(Full::default())
                .unwrap()
        })
        .await;
        let mut redirecting = receiver(|| {
            Response::builder()
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header("location", "/elsewhere")
                .body(Full::default())
                .unwrap()
        })
        .await;
        let callbacks = local();
        let send = |addr: SocketAddr| callbacks.send_for_test(addr);
        assert_eq!(send(gone.addr).await, SendOutcome::Gone);
        assert_eq!(send(failing.addr).await, SendOutcome::Retry { after: None });
        let after = Some(Duration::from_secs(7));
        assert_eq!(send(busy.addr).await, SendOutcome::Retry { after });
        // A redirect is a failure, and is not followed.
        assert_eq!(send(redirecting.addr).await, SendOutcome::Retry { after: None });
        assert_eq!(redirecting.requests.recv().await.unwrap().uri(), "/");
        assert!(redirecting.requests.try_recv().is_err());
    })
    .await;
}

impl Callbacks {
    async fn send_for_test(&self, addr: SocketAddr) -> SendOutcome {
        self.send(&format!("http://{addr}/"), "job_1", Bytes::from_static(b"{}"))
            .await
    }
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out() {
    bounded(async {
        // Accepts connections and reads nothing, answers nothing.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let callbacks = local().timeout(Duration::from_millis(300));
        let start = tokio::time::Instant::now();
        assert_eq!(callbacks.send_for_test(addr).await, SendOutcome::Retry { after: None });
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "{took:?}"
        );
        holder.abort();
    })
    .await;
}

#[tokio::test]
async fn a_closed_port_is_retried() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert_eq!(local().send_for_test(addr).await, SendOutcome::Retry { after: None });
    })
    .await;
}

#[tokio::test]
async fn hosts_that_resolve_to_loopback_are_refused() {
    bounded(async {
        let receiver = receiver(|| status(200)).await;
        let port = receiver.addr.port();
        // Every URL allowed, no address: `localhost` resolves to loopback.
        let strict = Callbacks::new(WebhookSecret::random()).allow(|_| true);
        for url in [
            format!("http://localhost:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            "http://[::ffff:127.0.0.1]/".to_owned(),
            format!("http://127.0.0.1:{port}/"),
            format!("http://2130706433:{port}/"),
        ] {
            let refused = strict.check(&url).await.unwrap_err();
            assert_eq!(refused.kind(), RefusalKind::ForbiddenAddress, "{url}");
        }
        // The same receiver, allowed, is reached.
        let url = format!("http://localhost:{port}/");
        let target = local().check(&url).await.unwrap();
        assert!(target.addrs.iter().all(|addr| addr.ip().is_loopback()), "{target:?}");
    })
    .await;
}

#[tokio::test]
async fn send_checks_the_url_again() {
    bounded(async {
        let mut receiver = receiver(|| status(200)).await;
        let url = format!("http://localhost:{}/", receiver.addr.port());
        // Accepted once (by a configuration that allowed loopback), the URL
        // is checked again at delivery: now refused, and nothing is sent.
        assert!(local().check(&url).await.is_ok());
        let strict = Callbacks::new(WebhookSecret::random()).allow(|_| true);
        let outcome = strict.send(&url, "job_1", Bytes::from_static(b"{}")).await;
        let SendOutcome::Refused(refused) = outcome else {
            panic!("not refused: {outcome:?}");
        };
        assert_eq!(refused.kind(), RefusalKind::ForbiddenAddress);
        assert!(receiver.requests.try_recv().is_err());
        // A name that does not resolve is retried, not refused for good.
        let outcome = local().send("http://nonexistent.invalid/", "job_1", Bytes::new()).await;
        assert_eq!(outcome, SendOutcome::Retry { after: None });
    })
    .await;
}

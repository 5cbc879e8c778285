//! `send` over TLS end to end (feature `callbacks-tls`), against real
//! `https` receivers on 127.0.0.1 whose certificates the tests make: one
//! the callbacks trust, one they do not, one for another name.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::Callbacks;
use super::outcome::SendOutcome;

/// Every test ends within this, or fails.
const LIMIT: Duration = Duration::from_secs(10);

async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, test).await.expect("the test took too long")
}

/// A certificate authority of the test's own.
struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Self(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    fn der(&self) -> Vec<u8> {
        self.0.der().to_vec()
    }

    /// A server's certificate for `names` (host names or IP addresses),
    /// signed by this authority, and its private key.
    fn issue(&self, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let names: Vec<String> = names.iter().map(|&name| name.to_owned()).collect();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, &self.0).unwrap();
        let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
        (cert.der().clone(), key)
    }
}

/// Callbacks to any URL, loopback allowed (the receivers are local),
/// trusting `ca` besides the default roots.
fn trusting(ca: &Ca) -> Callbacks {
    untrusting().add_root_certificate(ca.der()).unwrap()
}

/// The same with the default roots only.
fn untrusting() -> Callbacks {
    super::send_tests::local()
}

/// An `https` receiver that answers `204` to every request, and hands the
/// test each request it got (body read whole) with the name the client
/// sent as SNI. Dropping it closes the listener and every connection.
struct Receiver {
    addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<(Option<String>, Request<Bytes>)>,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receiver((cert, key): (CertificateDer<'static>, PrivateKeyDer<'static>)) -> Receiver {
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sent, requests) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, sent) = (acceptor.clone(), sent.clone());
            connections.spawn(async move {
                // A client that refuses the certificate ends here.
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let sni = stream.get_ref().1.server_name().map(str::to_owned);
                let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (sent, sni) = (sent.clone(), sni.clone());
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let _ = sent.send((sni, Request::from_parts(parts, body)));
                        Ok::<_, Infallible>(Response::builder().status(204).body(Full::new(Bytes::new())).unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Receiver { addr, requests, task }
}

#[tokio::test]
async fn a_trusted_receiver_gets_the_signed_post_by_its_name() {
    bounded(async {
        let ca = Ca::new();
        let mut receiver = receiver(ca.issue(&["localhost"])).await;
        let callbacks = trusting(&ca);
        let url = format!("https://localhost:{}/hook?job=7", receiver.addr.port());
        let payload = Bytes::from_static(br#"{"status":"succeeded"}"#);
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();

        let outcome = callbacks.send(&url, "job_7", payload.clone()).await;

        assert_eq!(outcome, SendOutcome::Delivered);
        let (sni, request) = receiver.requests.recv().await.unwrap();
        // The connection went to the checked address, yet the handshake
        // named the host.
        assert_eq!(sni.as_deref(), Some("localhost"));
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.uri(), "/hook?job=7");
        assert_eq!(request.body(), &payload);
        let header = |name: &str| request.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("host"), format!("localhost:{}", receiver.addr.port()));
        assert_eq!(header("webhook-id"), "job_7");
        let timestamp: u64 = header("webhook-timestamp").parse().unwrap();
        assert!(timestamp >= before);
        assert_eq!(
            header("webhook-signature"),
            callbacks.secret().sign("job_7", timestamp, &payload)
        );
    })
    .await;
}

#[tokio::test]
async fn an_ip_literal_is_verified_as_an_address() {
    bounded(async {
        let ca = Ca::new();
        let mut receiver = receiver(ca.issue(&["127.0.0.1"])).await;
        let url = format!("https://127.0.0.1:{}/hook", receiver.addr.port());

        let outcome = trusting(&ca).send(&url, "job_8", Bytes::from_static(b"{}")).await;

        assert_eq!(outcome, SendOutcome::Delivered);
        let (sni, _) = receiver.requests.recv().await.unwrap();
        // An address is no name: no SNI is sent for it.
        assert_eq!(sni, None);
    })
    .await;
}

#[tokio::test]
async fn an_untrusted_certificate_is_retried_never_delivered() {
    bounded(async {
        let ca = Ca::new();
        let mut receiver = receiver(ca.issue(&["localhost"])).await;
        let url = format!("https://localhost:{}/hook", receiver.addr.port());

        // Only the Mozilla roots: the test's authority is unknown.
        let outcome = untrusting().send(&url, "job_9", Bytes::from_static(b"{}")).await;
        assert_eq!(outcome, SendOutcome::Retry { after: None });
        // Another authority, trusted, does not vouch for this one either.
        let outcome = trusting(&Ca::new())
            .send(&url, "job_9", Bytes::from_static(b"{}"))
            .await;
        assert_eq!(outcome, SendOutcome::Retry { after: None });

        // Nothing reached the receiver's HTTP side.
        receiver.task.abort();
        assert!(receiver.requests.recv().await.is_none());
    })
    .await;
}

#[tokio::test]
async fn a_certificate_for_another_name_is_not_delivered_to() {
    bounded(async {
        let ca = Ca::new();
        let mut receiver = receiver(ca.issue(&["hooks.example.com", "127.0.0.2"])).await;
        let callbacks = trusting(&ca);

        for url in [
            format!("https://localhost:{}/hook", receiver.addr.port()),
            format!("https://127.0.0.1:{}/hook", receiver.addr.port()),
        ] {
            let outcome = callbacks.send(&url, "job_10", Bytes::from_static(b"{}")).await;
            assert_eq!(outcome, SendOutcome::Retry { after: None }, "{url}");
        }

        receiver.task.abort();
        assert!(receiver.requests.recv().await.is_none());
    })
    .await;
}

#[tokio::test]
async fn a_handshake_that_never_ends_is_bounded_by_the_timeout() {
    bounded(async {
        // A listener that accepts and never speaks TLS: the handshake waits,
        // and the per-request timeout ends it.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let callbacks = untrusting().timeout(Duration::from_millis(300));
        let started = tokio::time::Instant::now();

        let outcome = callbacks
            .send(
                &format!("https://localhost:{port}/"),
                "job_11",
                Bytes::from_static(b"{}"),
            )
            .await;

        assert_eq!(outcome, SendOutcome::Retry { after: None });
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        silent.abort();
    })
    .await;
}

#[test]
fn garbage_is_no_root_certificate() {
    let added = untrusting().add_root_certificate(b"not a certificate".to_vec());
    assert!(added.is_err());
    let ca = Ca::new();
    let callbacks = untrusting().add_root_certificate(ca.der()).unwrap();
    assert!(format!("{callbacks:?}").contains("added_roots: 1"));
}

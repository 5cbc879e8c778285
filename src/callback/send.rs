//! One delivery attempt: the URL checked again, a connection to an address
//! that passed (and TLS over it for `https`), a signed `POST`, and the
//! receiver's answer read into a [`SendOutcome`].

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::config::Callbacks;
use super::outcome::{SendOutcome, classify};
use super::policy::CallbackTarget;
use super::refused::{CallbackRefused, RefusalKind};
use crate::BoxError;

/// How much of the receiver's answer body is read before it is dropped:
/// enough for a short acknowledgement to arrive whole, no more.
const MAX_ANSWER: usize = 16 * 1024;

/// What the requests say they are.
const USER_AGENT: &str = concat!("tower-accepted/", env!("CARGO_PKG_VERSION"));

impl Callbacks {
    /// Makes one attempt to deliver `payload` (JSON) to `url`, signed for
    /// `webhook_id` and the current time, within the per-request timeout.
    ///
    /// The URL is checked again first (the answer of DNS may have changed
    /// since the submission: rebinding), and the connection goes only to
    /// an address that check accepted. One connection per attempt, no
    /// redirects followed, at most 16 KiB of the answer read.
    pub(crate) async fn send(&self, url: &str, webhook_id: &str, payload: Bytes) -> SendOutcome {
        let deadline = Instant::now() + self.per_request();
        let target = match timeout_at(deadline, self.check(url)).await {
            Ok(Ok(target)) => target,
            // A name that does not resolve now may resolve later.
            Ok(Err(refused)) if refused.kind() == RefusalKind::Unresolvable => {
                return SendOutcome::Retry { after: None };
            }
            Ok(Err(refused)) => return SendOutcome::Refused(refused),
            Err(_) => return SendOutcome::Retry { after: None },
        };
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let Some(request) = self.request(&target, webhook_id, timestamp, payload) else {
            // Only a webhook id that is no header value gets here: no
            // attempt could ever carry it.
            return SendOutcome::Refused(CallbackRefused::new(RefusalKind::Malformed));
        };
        match timeout_at(deadline, self.exchange(&target, request, deadline)).await {
            Ok(Ok((status, headers))) => classify(status, &headers, SystemTime::now()),
            Ok(Err(error)) => {
                tracing::debug!(error = %error, "a callback attempt failed");
                SendOutcome::Retry { after: None }
            }
            Err(_) => {
                tracing::debug!("a callback attempt timed out");
                SendOutcome::Retry { after: None }
            }
        }
    }

    /// The signed `POST` of `payload`, in origin form with the target's
    /// `Host`.
    fn request(
        &self,
        target: &CallbackTarget,
        webhook_id: &str,
        timestamp: u64,
        payload: Bytes,
    ) -> Option<Request<Full<Bytes>>> {
        let signature = self.secret().sign(webhook_id, timestamp, &payload);
        let path = target.uri.path_and_query().map_or("/", |path| path.as_str());
        let host = target.uri.authority()?.as_str();
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, host)
            .header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(header::USER_AGENT, HeaderValue::from_static(USER_AGENT))
            .header("webhook-id", HeaderValue::from_str(webhook_id).ok()?)
            .header("webhook-timestamp", timestamp)
            .header("webhook-signature", signature)
            .body(Full::new(payload))
            .ok()
    }

    /// Sends `request` over a new connection to the first of the target's
    /// addresses that accepts one (through TLS for `https`); gives the
    /// answer's status and headers once its body was read (up to
    /// [`MAX_ANSWER`]) or `deadline` came.
    async fn exchange(
        &self,
        target: &CallbackTarget,
        request: Request<Full<Bytes>>,
        deadline: Instant,
    ) -> Result<(StatusCode, http::HeaderMap), BoxError> {
        let stream = connect(&target.addrs).await?;
        #[cfg(feature = "callbacks-tls")]
        if target.uri.scheme_str() == Some("https") {
            let stream = super::tls::handshake(self.tls_config(), &target.uri, stream).await?;
            return converse(stream, request, deadline).await;
        }
        converse(stream, request, deadline).await
    }
}

/// One HTTP/1 exchange of `request` over `stream`.
async fn converse<S>(
    stream: S,
    request: Request<Full<Bytes>>,
    deadline: Instant,
) -> Result<(StatusCode, http::HeaderMap), BoxError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let exchange = async move {
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        // The status decides; the body is read only so that a receiver that
        // writes a short answer is not cut off, and not past the deadline.
        let _ = timeout_at(deadline, drain(body)).await;
        Ok::<_, BoxError>((parts.status, parts.headers))
    };
    // The connection is driven here rather than spawned, so that the
    // deadline's drop of this future closes it: nothing outlives an attempt.
    tokio::pin!(connection, exchange);
    tokio::select! {
        biased;
        answer = &mut exchange => answer,
        // The connection ended (closed after the answer, or broken): the
        // exchange ends too, with the answer or with its error.
        _ = &mut connection => exchange.await,
    }
}

/// The first connection `addrs` accept, in order.
async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, BoxError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Small requests: no waiting to fill a segment.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(error) => last = Some(error),
        }
    }
    Err(last.map_or_else(|| "no address to connect to".into(), Into::into))
}

/// Reads `body` until its end or [`MAX_ANSWER`] bytes; errors end it too.
async fn drain(mut body: hyper::body::Incoming) {
    let mut read = 0;
    while read <= MAX_ANSWER {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
            _ => return,
        }
    }
}

//! A small HTTP client, the answers it sees, and the checks of a `202`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::server::Server;

/// How long one exchange, body included, may take: a server that hangs
/// fails its test in seconds.
pub const EXCHANGE_WITHIN: Duration = Duration::from_secs(20);

/// An answer as the client saw it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The `status` word of a status document (empty if there is none).
    pub fn status_word(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|doc| doc["status"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Asserts a problem document (RFC 9457) with `status`.
    pub fn assert_problem(&self, status: StatusCode) -> serde_json::Value {
        assert_eq!(self.status, status, "body: {:?}", self.body);
        assert_eq!(self.header("content-type"), Some("application/problem+json"));
        let doc = self.json();
        assert_eq!(doc["status"], status.as_u16());
        assert!(
            doc["type"].is_string() && doc["title"].is_string() && doc["detail"].is_string(),
            "{doc}"
        );
        doc
    }

    /// The path of `Location`, without scheme and authority.
    pub fn location(&self) -> String {
        let location = self.header("location").expect("a Location header");
        match location.find("://") {
            Some(i) => {
                let rest = &location[i + 3..];
                rest[rest.find('/').unwrap_or(rest.len())..].to_owned()
            }
            None => location.to_owned(),
        }
    }
}

/// A plain HTTP/1 client that does not follow redirects.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl HttpClient {
    pub fn new(server: &Server) -> Self {
        Self::at(server.addr)
    }

    /// A client of the server at `addr`.
    pub fn at(addr: SocketAddr) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{addr}"),
        }
    }

    /// One exchange, body included, within [`EXCHANGE_WITHIN`].
    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Answer {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(format!("{}{}", self.base, path));
        for (name, value) in headers {
            request = request.header(*name, HeaderValue::from_str(value).unwrap());
        }
        let request = request.body(Full::new(body.into())).unwrap();
        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, tower_accepted::BoxError>(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(EXCHANGE_WITHIN, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => panic!("{method} {path} failed: {e}"),
            Err(_) => panic!("{method} {path}: no whole answer within {EXCHANGE_WITHIN:?}"),
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn post(&self, path: &str, body: impl Into<Bytes>) -> Answer {
        self.send(Method::POST, path, &[], body).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, &[], Bytes::new()).await
    }
}

/// Asserts a `202 Accepted` for a new job as DESIGN.md §2 describes it:
/// `Location` and the same `Operation-Location`, `Retry-After` in whole
/// seconds of at least 1, a JSON status document of a pending or running
/// job whose id the `Location` names. Returns the monitor path.
pub fn assert_accepted(answer: &Answer) -> String {
    assert_eq!(answer.status, StatusCode::ACCEPTED, "body: {:?}", answer.body);
    let location = answer.header("location").expect("202 has a Location");
    assert_eq!(
        answer.header("operation-location"),
        Some(location),
        "Operation-Location is the same URL as Location"
    );
    let retry: u64 = answer
        .header("retry-after")
        .unwrap_or_else(|| panic!("202 without Retry-After: {answer:?}"))
        .parse()
        .expect("Retry-After in whole seconds");
    assert!(retry >= 1, "Retry-After: {retry}");
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let doc = answer.json();
    assert!(
        matches!(doc["status"].as_str(), Some("pending" | "running")),
        "a new job is pending or running: {doc}"
    );
    let monitor = answer.location();
    let id = doc["id"].as_str().unwrap_or_else(|| panic!("no id: {doc}"));
    assert_eq!(
        monitor.rsplit('/').next(),
        Some(id),
        "Location {monitor} names the job {id}"
    );
    monitor
}

/// `POST path` with `body`; asserts the `202` and returns the monitor path.
pub async fn submit(client: &HttpClient, path: &str, body: impl Into<Bytes>) -> String {
    assert_accepted(&client.post(path, body).await)
}

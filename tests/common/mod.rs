//! Shared test helpers: a real server on 127.0.0.1 and a small HTTP client.
#![allow(dead_code, unreachable_pub)]

#[cfg(feature = "redis")]
pub mod redis;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A server listening on an ephemeral port of 127.0.0.1.
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `app` with axum on 127.0.0.1.
pub async fn serve(app: Router) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Server { addr, task }
}

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
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{}", server.addr),
        }
    }

    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Answer {
        let mut request = Request::builder().method(method).uri(format!("{}{}", self.base, path));
        for (name, value) in headers {
            request = request.header(*name, HeaderValue::from_str(value).unwrap());
        }
        let request = request.body(Full::new(body.into())).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .expect("the server answered within 30 s")
            .expect("the request went through");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
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

    /// Polls the monitor at `path` with long polls until it answers for a
    /// terminal job; returns that answer. Gives up after 60 s in all (a
    /// stuck job fails its test in a minute, not in seventeen).
    pub async fn until_done(&self, path: &str) -> Answer {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline {
            let answer = self.get(&format!("{path}?wait=5")).await;
            let status = answer.json()["status"].as_str().unwrap_or_default().to_owned();
            if !matches!(status.as_str(), "pending" | "running") {
                return answer;
            }
        }
        panic!("the job at {path} did not end within 60 s");
    }
}

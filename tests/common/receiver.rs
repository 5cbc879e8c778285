//! A webhook receiver on 127.0.0.1 that keeps every request it gets (when,
//! headers, body), answers each with the next of a script of replies, and
//! counts the requests it holds at once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::server::{Server, serve};
use super::wait::until_some;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    /// At once, with this status and an empty body.
    Status(u16),
    /// Never: the request is held until the sender gives up.
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hook {
    pub at: Instant,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Hook {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header: {:?}", self.headers))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

#[derive(Default)]
struct Inner {
    hooks: Mutex<Vec<Hook>>,
    script: Mutex<VecDeque<Reply>>,
    then: Mutex<Option<Reply>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

/// A receiver serving on 127.0.0.1 (stopped when dropped).
pub struct Receiver {
    pub server: Server,
    inner: Arc<Inner>,
}

/// Counts a request held by the receiver, until its handler ends or is
/// dropped (the sender gave up).
struct Held(Arc<Inner>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Receiver {
    /// Answers the first requests with `script`, then every other with
    /// `then`.
    pub async fn start(script: &[Reply], then: Reply) -> Self {
        let inner = Arc::new(Inner::default());
        inner.script.lock().unwrap().extend(script.iter().copied());
        *inner.then.lock().unwrap() = Some(then);
        let app = Router::new().fallback(receive).with_state(Arc::clone(&inner));
        let server = serve(app).await;
        Self { server, inner }
    }

    /// A receiver that answers `200` to everything.
    pub async fn ok() -> Self {
        Self::start(&[], Reply::Status(200)).await
    }

    /// `http://127.0.0.1:PORT` and `path`.
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// The requests so far.
    pub fn hooks(&self) -> Vec<Hook> {
        self.inner.hooks.lock().unwrap().clone()
    }

    /// Waits (at most the wait helpers' deadline) for `n` requests; returns
    /// them.
    pub async fn wait_for(&self, n: usize) -> Vec<Hook> {
        until_some(&format!("{n} callbacks at the receiver"), || async {
            let hooks = self.hooks();
            if hooks.len() >= n { Ok(hooks) } else { Err(hooks.len()) }
        })
        .await
    }

    /// Requests held now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// The most requests it held at once.
    pub fn most_in_flight(&self) -> usize {
        self.inner.most_in_flight.load(Ordering::Acquire)
    }
}

async fn receive(State(inner): State<Arc<Inner>>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let now = inner.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
    inner.most_in_flight.fetch_max(now, Ordering::AcqRel);
    let _held = Held(Arc::clone(&inner));
    inner.hooks.lock().unwrap().push(Hook {
        at,
        path: uri.to_string(),
        headers,
        body,
    });
    let reply = inner
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or(*inner.then.lock().unwrap())
        .unwrap_or(Reply::Status(200));
    match reply {
        Reply::Status(status) => StatusCode::from_u16(status).unwrap(),
        Reply::Hang => {
            // Longer than any test: the sender's timeout ends it.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK
        }
    }
}

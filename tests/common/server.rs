//! Servers on an ephemeral port of 127.0.0.1, aborted when dropped.

use std::net::SocketAddr;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tower::Service;
use tower_accepted::BoxError;

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

/// Serves a tower service on plain hyper 1 (HTTP/1, no axum) on 127.0.0.1,
/// as a hyper user without a framework would.
pub async fn serve_hyper<S, B>(service: S) -> Server
where
    S: Service<http::Request<Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Server { addr, task }
}

/// How many requests the server is done with: their service future
/// answered or was dropped (a connection closed mid-request).
#[derive(Clone, Default)]
pub struct Finished(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Finished {
    pub fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Counts, on the drop of the service's future, whatever ended it.
struct FinishGuard(Finished);

impl Drop for FinishGuard {
    fn drop(&mut self) {
        (self.0).0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `app` with every request counted in [`Finished`] once the server is done
/// with it.
pub fn count_finished(app: Router) -> (Router, Finished) {
    let finished = Finished::default();
    let counter = finished.clone();
    let app = app.layer(tower::util::MapFutureLayer::new(move |future| {
        let guard = FinishGuard(counter.clone());
        async move {
            let _guard = guard;
            future.await
        }
    }));
    (app, finished)
}

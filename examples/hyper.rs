//! The layer on plain hyper 1, without axum.
//!
//! `cargo run --example hyper`; `ADDR` overrides `127.0.0.1:3001`. Then:
//! `curl -i -X POST http://127.0.0.1:3001/shout -d hello` and follow the
//! `Location`.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tower::ServiceBuilder;
use tower_accepted::{AcceptedLayer, Job, RequestBody};

/// A slow handler: shouts the request body back after a second.
async fn shout(request: Request<RequestBody<Incoming>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let job = request.extensions().get::<Job>().cloned().unwrap_or_else(Job::detached);
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    job.set_message("thinking it over");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loud = String::from_utf8_lossy(&body).to_uppercase();
    Ok(Response::new(Full::new(Bytes::from(loud))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let service = ServiceBuilder::new().layer(AcceptedLayer::new()).service_fn(shout);

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("hyper example listening on http://{}", listener.local_addr()?);
    println!("  curl -i -X POST http://{}/shout -d hello", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection error: {e}");
            }
        });
    }
}

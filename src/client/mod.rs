//! The following client (feature `client`): a tower layer for HTTP clients
//! that drives any `202 Accepted` endpoint to its result.
//!
//! Wrap an HTTP client with [`FollowLayer`]. A call answered with anything
//! but `202` returns that answer. A call answered with `202 Accepted` and a
//! monitor link is followed: the client polls the status monitor, honours
//! `Retry-After`, long-polls where the server allows it, and returns the
//! final response, as if the call had been synchronous. Every way this can
//! go wrong is a [`FollowError`], never a hang.
//!
//! ```no_run
//! use bytes::Bytes;
//! use http::Request;
//! use http_body_util::{BodyExt, Full};
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::{Layer, ServiceExt};
//! use tower_accepted::client::FollowLayer;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!     let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//!     let client = FollowLayer::new()
//!         .on_status(|doc| eprintln!("{} {:?}", doc.status_word(), doc.progress()))
//!         .layer(http);
//!     let request = Request::post("http://127.0.0.1:3000/reports")
//!         .header("authorization", "Bearer demo")
//!         .body(Full::new(Bytes::from(r#"{"pages": 10}"#)))?;
//!     // POST → 202 → polls … → 303 → GET the result: here is the report.
//!     let response = client.oneshot(request).await?;
//!     println!("{}: {:?}", response.status(), response.into_body().collect().await?.to_bytes());
//!     Ok(())
//! }
//! ```
//!
//! # Styles understood
//!
//! | the `202` names | while running | when done |
//! |---|---|---|
//! | `Location` (this crate's default, two-oh-two) | `200` + status document | `303 See Other` or `201 Created` + `Location` of the result: fetched |
//! | `Operation-Location` (Microsoft's REST guidelines; this crate sends it too) | `200` + `{"status": "Running"}` (`NotStarted`, `Running`, `Succeeded`, `Failed`, `Canceled`, any case; this crate's lower-case words) | terminal status; the result at `resourceLocation` (or `result`) is fetched |
//! | `Location` (Azure "Location" style) | `202` | `200` with the result itself |
//! | `Location` of the result itself | `404` | `200` with the result; `410 Gone` once expired |
//!
//! With `Operation-Location`, a final document that names no result leads,
//! as in the Azure SDKs, to the original URL for `PUT` and `PATCH`, to the
//! `202`'s `Location` for others when it differs, or else is itself the
//! final response.
//!
//! A `Location` URL's `200` is read by what came before it: once the URL has
//! answered `202` or `404`, its `200` (or `204`) is the result, whatever it
//! holds; before that, a status document is read as one, and any other `200`
//! is a monitor's "still running" (as RFC 9110 and two-oh-two have it: the
//! monitor answers `200` until a `303` or `201` names the result). So a
//! server of the last two styles whose very first answer is already the
//! result is polled until the deadline; in practice the first poll, sent as
//! soon as the `202` arrives, finds the job running.
//!
//! Monitor redirects (`301`, `302`, `307`, `308`) are followed; `429` and
//! `503` are waited out. A `202` that names no monitor is returned as it is.
//!
//! A job that ended with a response is the call's response, whatever its
//! status: a handler's `500`, stored and replayed by the server (this
//! crate's servers mark it `failed` with `result_status`), comes back as
//! that `500`, not as an error.
//!
//! # Timing
//!
//! - `Retry-After` in seconds or as an HTTP-date (and Azure's
//!   `retry-after-ms`) sets the next poll, within
//!   [`min_interval`](FollowLayer::min_interval) and
//!   [`max_interval`](FollowLayer::max_interval);
//! - without it, exponential backoff with jitter from
//!   [`initial_interval`](FollowLayer::initial_interval);
//! - long polls ([`long_poll`](FollowLayer::long_poll), `Prefer: wait=N`):
//!   a server that holds the poll answers the moment the job ends;
//! - an overall [`deadline`](FollowLayer::deadline) and a
//!   [`max_polls`](FollowLayer::max_polls) limit.
//!
//! # Outcomes
//!
//! [`FollowError`] tells them apart: [`Failed`](FollowError::Failed) (with
//! the status document's `error`), [`Canceled`](FollowError::Canceled),
//! [`Expired`](FollowError::Expired) (`410`), [`NotFound`](FollowError::NotFound),
//! [`DeadlineExceeded`](FollowError::DeadlineExceeded),
//! [`TooManyPolls`](FollowError::TooManyPolls),
//! [`Malformed`](FollowError::Malformed),
//! [`RedirectLoop`](FollowError::RedirectLoop), and the wrapped client's own
//! error, [`Service`](FollowError::Service).
//!
//! Dropping the response future stops the polls; with
//! [`cancel_on_drop`](FollowLayer::cancel_on_drop) it also sends `DELETE` to
//! the monitor, so that the server stops the work.
//!
//! # Links and headers
//!
//! Relative links resolve against the URL of the answer that carried them
//! (RFC 3986): the `202`'s against the original request's URL, a result link
//! against its monitor's. `Authorization` and `Cookie`, and the headers
//! chosen by [`forward_headers`](FollowLayer::forward_headers), go with
//! every poll, the final `GET` and the `DELETE` to the same origin (scheme
//! and authority) as the original request; to others only with
//! [`forward_cross_origin`](FollowLayer::forward_cross_origin).
//!
//! # Progress
//!
//! [`FollowLayer::on_status`] (or an [`OnStatus`] in a request's
//! extensions) sees every [`StatusDocument`]: status, progress, message.
//! `examples/client.rs` draws a progress bar with it.

mod body;
mod config;
mod document;
mod error;
mod future;
mod layer;
mod link;
mod poll;
mod service;

pub use body::FollowBody;
pub use config::OnStatus;
pub use document::{OperationError, Status, StatusDocument};
pub use error::FollowError;
pub use future::ResponseFuture;
pub use layer::FollowLayer;
pub use service::Follow;

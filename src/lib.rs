//! Tower middleware that makes any slow HTTP endpoint asynchronous.
//!
//! Wrap a service with [`AcceptedLayer`] and every request it selects is
//! answered at once with `202 Accepted` and a `Location` to poll, while the
//! wrapped service does the real work in the background. The client polls
//! the status monitor, is sent on with `303 See Other` when the job is done,
//! and fetches the result: exactly the response the service would have given
//! synchronously. Handlers do not change.
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{Router, routing::post};
//! use tower_accepted::AcceptedLayer;
//!
//! async fn slow_report(body: String) -> String {
//!     tokio::time::sleep(Duration::from_secs(5)).await;
//!     format!("report on {} bytes", body.len())
//! }
//!
//! #[tokio::main]
//! async fn main() {
//!     let app = Router::new()
//!         .route("/reports", post(slow_report))
//!         .layer(AcceptedLayer::new());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//!     axum::serve(listener, app).await.unwrap();
//! }
//! ```
//!
//! # The protocol
//!
//! | request | answer |
//! |---|---|
//! | `POST /reports` (any deferred request) | `202`, `Location` and `Operation-Location: /jobs/{id}`, `Retry-After`, status document |
//! | `GET /jobs/{id}` while pending or running | `200`, status document, `Retry-After` |
//! | `GET /jobs/{id}` once the handler answered | `303 See Other`, `Location: /jobs/{id}/result` |
//! | `GET /jobs/{id}` failed without answer, or canceled | `200`, status document with `error` |
//! | `GET /jobs/{id}/result` | the handler's response, replayed byte for byte |
//! | `GET /jobs/{id}?wait=10` | long poll: answers when the job ends, or after 10 s |
//! | `GET /jobs/{id}/events`, or the monitor with `Accept: text/event-stream` | Server-Sent Events: an event per change, the terminal one last, resumable with `Last-Event-ID` |
//! | `DELETE /jobs/{id}` | cancels a running job, or forgets a finished one: `204` |
//! | unknown id / expired id | `404` / `410` problem document |
//!
//! A status document looks like this (`progress`, `message`, `result`,
//! `result_status` and `error` appear only when they apply):
//!
//! ```json
//! { "id": "9b2f…", "status": "running", "created_at": "2026-11-22T10:00:00Z",
//!   "updated_at": "2026-11-22T10:00:03Z", "progress": 0.4, "message": "page 4 of 10" }
//! ```
//!
//! Statuses are `pending`, `running`, `succeeded`, `failed` and `canceled`.
//! A handler's response of 400 or above is stored and replayed too, but its
//! job is `failed` with `error.code = "http_status"`. Jobs that end without a
//! response carry an `error.code`: `panicked`, `error`, `timeout`,
//! `result_too_large`, `shutdown` (and `lost` with shared stores): the words
//! of [`ErrorCode`](store::ErrorCode). Errors are `application/problem+json` documents
//! (RFC 9457).
//!
//! Clients can also ask: `Prefer: wait=5` on a submission returns the
//! handler's own response if it is ready within 5 s (a `202` otherwise), and
//! with [`AcceptedLayer::respond_async_only`] only requests with
//! `Prefer: respond-async` are deferred.
//!
//! On the client side, the `client` feature adds `FollowLayer`: a tower
//! layer for HTTP clients that follows a `202 Accepted` (of this crate's
//! servers, and of the other common styles) to the final response; see the
//! `client` module.
//!
//! # The API at a glance
//!
//! Every public item has one path. The server side is at the root, the
//! storage of jobs in [`store`], the following client in `client`.
//!
//! | item | what it is | feature |
//! |---|---|---|
//! | [`AcceptedLayer`] | the layer and its builder: what to defer, limits, routes, store | |
//! | [`Accepted`] | the service the layer makes around yours | |
//! | [`ResponseFuture`] | the future of an [`Accepted`] call | |
//! | [`JobRoutes`], [`JobRoutesFuture`] | the job routes alone, for `nest_service` | |
//! | [`Job`] | the handler's handle: progress, message, cancellation, attempt (an axum extractor with `axum`) | |
//! | [`durable`] | durable jobs: what runs again where, and what rests in the store ([`AcceptedLayer::durable`], [`AcceptedLayer::run_jobs_with`]) | |
//! | [`NotReady`] | why [`AcceptedLayer::ready`] (a `/readyz` probe) says no: shutting down, or the store failed its [`health`](store::JobStore::health) check | |
//! | [`AcceptedLayer::drain_on`], [`AcceptedLayer::shutdown`] | a graceful shutdown, as axum's `with_graceful_shutdown` future or on its own | |
//! | `metrics` | the names of the metrics the layer records, and `describe()` | `metrics` |
//! | [`Completion`] | how a finished job is announced: `303` to the result, `201 Created`, or inline | |
//! | [`Problem`] | an RFC 9457 problem document (`IntoResponse` with `axum`) | |
//! | [`RequestBody`], [`ResponseBody`] | the body types the layer hands on and answers with | |
//! | [`BoxError`] | the boxed error of bodies and services | |
//! | [`store::JobStore`] | where jobs live: the trait a store implements | |
//! | [`store::MemoryStore`], [`store::MemoryStoreBuilder`] | the in-process store (the default) | |
//! | `store::RedisStore`, `store::RedisStoreBuilder` | jobs shared by replicas through Redis | `redis` |
//! | `store::PostgresStore`, `store::PostgresStoreBuilder`, `sqlx` | jobs and the durable queue in PostgreSQL; the sqlx it is built on | `postgres` |
//! | [`store::JobRecord`], [`store::JobStatus`], [`store::JobId`] | a job as a store keeps it, its status, its id | |
//! | [`store::Outcome`], [`store::JobError`], [`store::ErrorCode`], [`store::OtherCode`] | how a job ended | |
//! | [`store::Lookup`], [`store::Cancel`], [`store::CreatedOnce`], [`store::KeyLookup`] | what a store's operations answer | |
//! | [`store::IdempotencyKey`], [`store::ListCursor`], [`store::Page`] | keys, listing cursors and pages | |
//! | [`store::Claim`], [`store::Claimed`], [`store::DurableJob`], [`store::Swept`], [`store::LOST_MESSAGE`], [`store::OUT_OF_ATTEMPTS`] | execution: claims fenced by their attempt, durable jobs, sweeps | |
//! | [`store::StoreError`], [`store::InvalidJobId`], [`store::InvalidJobStatus`] | errors of stores and of parsing | |
//! | `store::suite` | the conformance kit a store's own tests run | `test-util` |
//! | `AcceptedLayer::callbacks`, `callback::Callbacks`, `callback::WebhookSecret` | completion callbacks (a `Callback-Url` on a submission): which URLs, the Standard Webhooks signing secret, the bounds of delivery | `callbacks` |
//! | `callback::CallbackRefused`, `callback::RefusalKind`, `callback::InvalidSecret` | why a callback URL or a secret was refused | `callbacks` |
//! | `client::FollowLayer`, `client::Follow`, `client::ResponseFuture` | a client middleware that follows a `202` to the final response | `client` |
//! | `client::FollowBody`, `client::FollowError`, `client::OnStatus` | its body, its errors, its progress callback | `client` |
//! | `client::StatusDocument`, `client::Status`, `client::OperationError` | a status document as the client reads it (any common style) | `client` |
//!
//! # Operations
//!
//! The layer logs through `tracing`: a `job` span per job (at `DEBUG`,
//! following from the submitting request's span; a handler's own events
//! carry its `job.id`), an event per change of state (a job's end at
//! `INFO`, failures at `WARN`, a handler's panic at `ERROR` with its
//! payload), and rate-limited warnings of refusals and store faults. With
//! the feature `metrics` it records counters, gauges and histograms through
//! the `metrics` facade (see the `metrics` module). [`AcceptedLayer::ready`]
//! answers a readiness probe; [`AcceptedLayer::drain_on`] shuts down with
//! the server, keeping the job routes answering while jobs drain.
//!
//! # Progress and cancellation
//!
//! The handler finds a [`Job`] handle in the request extensions
//! (`Extension<Job>` in axum) to report progress and learn of cancellation:
//!
//! ```
//! use axum::Extension;
//! use tower_accepted::Job;
//!
//! async fn render(Extension(job): Extension<Job>) -> &'static str {
//!     for page in 1..=10 {
//!         job.set_progress(page as f32 / 10.0);
//!         job.set_message(format!("rendering page {page} of 10"));
//!         tokio::time::sleep(std::time::Duration::from_millis(300)).await;
//!     }
//!     "done"
//! }
//! # let _: axum::routing::MethodRouter = axum::routing::post(render);
//! ```
//!
//! # Decisions where the standards are silent
//!
//! - Ids are random UUIDs and are the capability to a job: whoever holds one
//!   can poll, fetch and cancel that job.
//! - After `DELETE` of a finished job its id answers `404` (it was
//!   forgotten); only jobs that expired answer `410`.
//! - A `Prefer: wait` whose job fails without a response within the wait
//!   gets the result route's problem document (`500`, or `504` for a
//!   timeout) rather than a `202`.
//! - An invalid `wait` in `Prefer` is ignored (RFC 7240); in the query it is
//!   a `400`.
//! - Trailers of a handler's response are not stored.
//! - `OPTIONS` requests (CORS preflights), `CONNECT` and protocol upgrades
//!   (`Upgrade:`, as WebSockets) are not deferred unless a
//!   [`defer_if`](AcceptedLayer::defer_if) predicate says so; a deferred
//!   `HEAD` gets its `202` without a body.
//! - The layer claims its own routes only: the monitor and result of a
//!   well-formed id, and `GET /jobs`. Other paths under the prefix
//!   (`/jobs/stats`, a malformed id) and `POST /jobs` reach the application
//!   ([`claim_prefix`](AcceptedLayer::claim_prefix) claims them all).
//! - A `DELETE` of a canceled job answers `204` and keeps its record until
//!   it expires, so that two clients canceling one job never erase it.
//! - The layer is always ready (`poll_ready`): the job routes answer while
//!   the wrapped service is busy; submissions wait for it in their job.
//! - With an [`owner`](AcceptedLayer::owner) function, a job submitted
//!   anonymously stays reachable by whoever holds its id; an owned job is
//!   unknown (`404`) to everyone but its owner.
//! - `Idempotency-Key` needs no configuration; a key is scoped by owner, or
//!   without one by a digest of the request's credentials (see
//!   [`credential_headers`](AcceptedLayer::credential_headers)), and is held
//!   as long as its job is kept. A response answered directly
//!   (`Prefer: wait`) is kept only when its request had a key.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod admission;
mod body;
#[cfg(feature = "callbacks")]
#[cfg_attr(docsrs, doc(cfg(feature = "callbacks")))]
pub mod callback;
mod claimed;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
mod config;
mod document;
mod durability;
pub mod durable;
mod events;
mod future;
// Only for `cargo fuzz` (which sets `--cfg fuzzing`) and this crate's own
// tests: never part of the API.
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub mod fuzzing;
mod headers;
mod idempotency;
mod job;
mod job_routes;
mod json;
mod layer;
mod list;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod problem;
mod query;
mod readiness;
mod response;
mod routes;
mod runner;
mod service;
mod submit;
mod telemetry;

pub mod store;

pub use body::{RequestBody, ResponseBody};
pub use config::Completion;
pub use future::{JobRoutesFuture, ResponseFuture};
pub use job::Job;
pub use layer::AcceptedLayer;
pub use problem::Problem;
pub use readiness::NotReady;
pub use service::{Accepted, JobRoutes};
/// The sqlx that [`PostgresStore`](store::PostgresStore) is built on
/// (feature `postgres`), for the pool it takes
/// ([`builder_with_pool`](store::PostgresStore::builder_with_pool)) and
/// queries of your own, at the version the store was built with.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use sqlx;

/// The boxed error type used by the bodies and by service errors.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

//! Shared test helpers, one file per concern: servers on 127.0.0.1
//! (`server`), a small HTTP client and the checks of a `202` (`http`),
//! waits with a deadline of seconds (`wait`), raw TCP exchanges (`tcp`), a
//! response body that breaks (`body`), a route held until a test opens its
//! gate (`gate`), silenced planned panics (`panics`),
//! a `redis-server` of a test's own (`private_redis`), a three-master
//! Redis Cluster of a test's own (`private_cluster`), replica processes
//! of the `replicas` example (`replica`), a `MemoryStore`
//! with hooks (`store`), two apps sharing one store (`sharing`), a shutdown
//! begun in a task (`shutdown`), calls of a router in process, for the
//! tests on the paused clock (`oneshot`), a reader of event streams (`sse`), the examples built for child
//! processes (`examples`), Python virtual environments for the interop
//! tests (`python`), a webhook receiver that records what it gets
//! (`receiver`) and a `tracing` subscriber that keeps what it sees
//! (`traces`).
#![allow(dead_code, unreachable_pub)]

pub mod body;
pub mod examples;
pub mod gate;
pub mod http;
pub mod oneshot;
pub mod panics;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod private_cluster;
#[cfg(feature = "postgres")]
pub mod private_postgres;
#[cfg(feature = "redis")]
pub mod private_redis;
pub mod python;
pub mod receiver;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub mod replica;
pub mod server;
pub mod sharing;
pub mod shutdown;
pub mod sse;
pub mod store;
pub mod tcp;
pub mod traces;
pub mod wait;

#[allow(unused_imports)]
pub use http::{Answer, HttpClient, assert_accepted, submit};
#[allow(unused_imports)]
pub use server::{Server, serve, serve_hyper};
#[allow(unused_imports)]
pub use wait::{poll_until, until, until_some};

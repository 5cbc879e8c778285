//! The integration tests, one module per area, in one binary: on two cores,
//! linking axum, hyper and redis once instead of twenty times is most of
//! what a test run costs. `tests/soak.rs` keeps a process of its own for its
//! allocation-counting global allocator.

#[path = "../common/mod.rs"]
mod common;
#[path = "../../examples/demo/app.rs"]
#[allow(dead_code)]
mod demo_app;
#[cfg(feature = "client")]
mod follow;

mod axum_extractor;
mod azure_interop;
mod callback_replicas;
mod callbacks;
mod chaos;
mod client;
mod client_errors;
mod client_styles;
mod contract;
mod demo;
mod demo_metrics;
mod drain;
mod durable;
mod events;
mod expiry;
mod finish;
mod health;
mod hostile;
mod http_details;
mod hyper;
mod job_metrics;
mod owners;
mod postgres_faults;
mod postgres_plans;
mod postgres_replicas;
mod postgres_store;
mod progress;
mod redis_claims;
mod redis_cluster;
mod redis_durable;
mod redis_faults;
mod redis_keys;
mod redis_store;
mod replicas;
mod runner;
mod store_suite;
mod telemetry;
mod timing;
mod transparency;
mod two_oh_two;
mod webhook_signing;

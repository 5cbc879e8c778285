//! A route whose handler waits until the test opens a gate: a runner held
//! busy for as long as a test needs.

use std::sync::Arc;

use axum::routing::{MethodRouter, post};
use tokio::sync::Semaphore;

/// `POST` that waits for a permit of `gate` (the test adds one per job it
/// lets finish), then answers `answer`.
pub fn held(gate: &Arc<Semaphore>, answer: &'static str) -> MethodRouter {
    let gate = Arc::clone(gate);
    post(move || {
        let gate = Arc::clone(&gate);
        async move {
            let _ = gate.acquire().await;
            answer
        }
    })
}

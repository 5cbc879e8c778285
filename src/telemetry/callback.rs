//! What completion callbacks tell operators. A callback's URL is never
//! logged whole (its path or query may hold the receiver's token): its host
//! only. Warnings a submitter can cause at any rate (a receiver that is
//! down or refuses) are limited to one per second.

use super::limit::Limited;
use crate::store::JobId;

/// A submission's `Callback-Url` was refused with `400`.
pub(crate) fn callback_refused(reason: &'static str) {
    static LIMIT: Limited = Limited::new();
    if let Some(held_back) = LIMIT.allow() {
        tracing::info!(reason, held_back, "Callback-Url refused: 400");
    }
}

/// A callback was delivered, on attempt `attempt`.
pub(crate) fn delivered(id: JobId, host: &str, attempt: u32) {
    tracing::debug!(job.id = %id, callback.host = host, attempt, "callback delivered");
}

/// A callback attempt failed; the next is due in `in_ms`.
pub(crate) fn retrying(id: JobId, host: &str, attempt: u32, in_ms: u64) {
    tracing::debug!(job.id = %id, callback.host = host, attempt, retry_in_ms = in_ms, "callback not delivered: retrying");
}

/// A callback is given up for good, after `attempts` attempts, because of
/// `why`.
pub(crate) fn given_up(id: JobId, host: &str, attempts: u32, why: &'static str) {
    static LIMIT: Limited = Limited::new();
    if let Some(held_back) = LIMIT.allow() {
        tracing::warn!(job.id = %id, callback.host = host, attempts, why, held_back, "callback given up");
    }
}

/// The store did not take the outcome of an attempt (it failed, or another
/// claim recorded meanwhile): the delivery comes due again when its hold
/// lapses.
pub(crate) fn attempt_unrecorded(id: JobId) {
    tracing::debug!(job.id = %id, "a callback attempt's outcome was not recorded: it comes due again");
}

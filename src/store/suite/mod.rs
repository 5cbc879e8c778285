//! The conformance kit of [`JobStore`] (feature `test-util`): the rules of
//! the trait, written once, run against every store. `MemoryStore` and
//! `RedisStore` run it in this crate's tests; a store of your own runs it
//! from its own test with a way to make fresh stores:
//!
//! ```
//! use tower_accepted::store::MemoryStore;
//! use tower_accepted::store::suite;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // In a store crate: `#[tokio::test] async fn conforms() { … }`, with
//! // your store's constructor in place of `MemoryStore::new`.
//! suite::run_all(MemoryStore::new).await;
//! # });
//! ```
//!
//! The checks, each a public function that panics, naming what it found,
//! when the store breaks the rule its first doc line states:
//!
//! - one job's record: [`create_get_round_trip`],
//!   [`start_moves_pending_to_running_once`],
//!   [`start_records_when_it_started`], [`find_key_names_the_holder`],
//!   [`progress_is_visible_until_terminal`],
//!   [`finish_stores_the_response_byte_for_byte`],
//!   [`finish_with_error_status_is_failed`],
//!   [`finish_without_response_is_failed`], [`finish_twice_changes_nothing`],
//!   [`cancel_answers_per_state`], [`delete_removes_record_and_response`];
//! - waiting for a job to end:
//!   [`wait_terminal_resolves_at_once_when_ended_or_unknown`],
//!   [`wait_terminal_wakes_on_finish`], [`wait_terminal_wakes_on_cancel`],
//!   [`wait_terminal_wakes_on_delete`], [`many_waiters_all_wake`];
//! - telling changes: [`every_change_raises_updated_at`],
//!   [`wait_change_wakes_on_every_change`];
//! - execution (claims, durable jobs and their queues, leases), through the
//!   trait alone, without sleeping or letting a lease lapse (what a store
//!   does with a lapsed lease depends on its clock, and is its own test's
//!   business): [`claims_fence_start_progress_and_finish`],
//!   [`durable_job_not_queued_runs_as_attempt_one`],
//!   [`queued_job_is_claimed_once_with_its_request`],
//!   [`claims_take_the_oldest_first`],
//!   [`ended_queued_jobs_are_never_claimed`],
//!   [`renew_answers_claim_by_claim`],
//!   [`release_requeues_a_durable_job_for_the_next_attempt`],
//!   [`create_durable_with_a_key_creates_once`],
//!   [`sweep_leaves_held_claims_alone`];
//! - completion-callback deliveries: [`callback_round_trips`],
//!   [`delivery_is_due_once_its_job_ends`], [`delivery_claims_are_held`]
//!   (it waits for a [`HOLD`] to lapse), [`record_delivery_is_fenced`],
//!   [`delivery_is_due_when_out_of_attempts`],
//!   [`concurrent_claims_take_each_delivery_once`],
//!   [`deleted_job_drops_its_delivery`]; and, run on their own since they
//!   wait for a time to live or a lease, [`pending_delivery_keeps_its_job`]
//!   and [`lost_job_delivery_is_due`];
//! - the store's health check: [`health_answers_ok_when_the_store_works`];
//! - expiry, run on its own: [`expiry`].
//!
//! [`callbacks_on`] runs the delivery checks alone, on one store.
//! [`run_all`] and [`run_all_on`] run every check but [`expiry`],
//! [`pending_delivery_keeps_its_job`] and [`lost_job_delivery_is_due`].
//!
//! A store that is costly to make (a connection to a server) runs every
//! check on one store with [`run_all_on`] instead: each check uses fresh
//! ids, queue names and idempotency keys. [`expiry`] checks the time to live and the tombstones of a store
//! built with the durations it is given; run it on a paused clock
//! (`#[tokio::test(start_paused = true)]`) where the store's clock is
//! tokio's. The helpers ([`pending`], [`running`], [`found`],
//! [`stored_response`], [`sample_response`], [`assert_same_response`]) serve
//! a store's own tests too.

mod callbacks;
mod changes;
mod claims;
mod expiry;
mod queues;
mod records;
mod waiting;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::store::{Claim, JobId, JobRecord, JobStore, Lookup, Outcome};

pub use callbacks::{
    HOLD, callback_round_trips, concurrent_claims_take_each_delivery_once, deleted_job_drops_its_delivery,
    delivery_claims_are_held, delivery_is_due_once_its_job_ends, delivery_is_due_when_out_of_attempts,
    lost_job_delivery_is_due, pending_delivery_keeps_its_job, record_delivery_is_fenced,
};
pub use changes::{CHANGE_WITHIN, every_change_raises_updated_at, wait_change_wakes_on_every_change};
pub use claims::{
    claims_fence_start_progress_and_finish, durable_job_not_queued_runs_as_attempt_one, renew_answers_claim_by_claim,
    sweep_leaves_held_claims_alone,
};
pub use expiry::expiry;
pub use queues::{
    claims_take_the_oldest_first, create_durable_with_a_key_creates_once, ended_queued_jobs_are_never_claimed,
    queued_job_is_claimed_once_with_its_request, release_requeues_a_durable_job_for_the_next_attempt,
};
pub use records::{
    cancel_answers_per_state, create_get_round_trip, delete_removes_record_and_response, find_key_names_the_holder,
    finish_stores_the_response_byte_for_byte, finish_twice_changes_nothing, finish_with_error_status_is_failed,
    finish_without_response_is_failed, progress_is_visible_until_terminal, start_moves_pending_to_running_once,
    start_records_when_it_started,
};
pub use waiting::{
    many_waiters_all_wake, wait_terminal_resolves_at_once_when_ended_or_unknown, wait_terminal_wakes_on_cancel,
    wait_terminal_wakes_on_delete, wait_terminal_wakes_on_finish,
};

/// How long a waiter is given to wake once its job ended: the bound a
/// caller puts on a wait, and long, so that a waiter that is never woken
/// fails the check (the bound elapses) instead of a store's own re-reads
/// passing it late; a woken waiter resolves long before.
pub const WAKE_WITHIN: Duration = Duration::from_secs(30);
/// How long a wait for a job that already ended is given to resolve: one
/// read of a store that may be a network hop away.
pub const AT_ONCE: Duration = Duration::from_secs(5);
/// How long a waiter is watched to make sure it does not wake early.
pub const SETTLE: Duration = Duration::from_millis(100);

/// Runs every store-independent check, each on a fresh store from `make`.
pub async fn run_all<St: JobStore>(make: impl Fn() -> St) {
    create_get_round_trip(&make()).await;
    start_moves_pending_to_running_once(&make()).await;
    start_records_when_it_started(&make()).await;
    find_key_names_the_holder(&make()).await;
    progress_is_visible_until_terminal(&make()).await;
    finish_stores_the_response_byte_for_byte(&make()).await;
    finish_with_error_status_is_failed(&make()).await;
    finish_without_response_is_failed(&make()).await;
    finish_twice_changes_nothing(&make()).await;
    cancel_answers_per_state(&make()).await;
    delete_removes_record_and_response(&make()).await;
    wait_terminal_resolves_at_once_when_ended_or_unknown(&make()).await;
    claims_fence_start_progress_and_finish(&make()).await;
    durable_job_not_queued_runs_as_attempt_one(&make()).await;
    queued_job_is_claimed_once_with_its_request(&make()).await;
    claims_take_the_oldest_first(&make()).await;
    ended_queued_jobs_are_never_claimed(&make()).await;
    renew_answers_claim_by_claim(&make()).await;
    release_requeues_a_durable_job_for_the_next_attempt(&make()).await;
    create_durable_with_a_key_creates_once(&make()).await;
    sweep_leaves_held_claims_alone(&make()).await;
    health_answers_ok_when_the_store_works(&make()).await;
    every_change_raises_updated_at(&make()).await;
    callback_round_trips(&make()).await;
    delivery_is_due_once_its_job_ends(&make()).await;
    delivery_claims_are_held(&make()).await;
    record_delivery_is_fenced(&make()).await;
    delivery_is_due_when_out_of_attempts(&make()).await;
    concurrent_claims_take_each_delivery_once(&make()).await;
    deleted_job_drops_its_delivery(&make()).await;
    let store = Arc::new(make());
    wait_change_wakes_on_every_change(&store).await;
    wait_terminal_wakes_on_finish(&store).await;
    wait_terminal_wakes_on_cancel(&store).await;
    wait_terminal_wakes_on_delete(&store).await;
    many_waiters_all_wake(&store).await;
}

/// Runs every store-independent check on one store (for stores that are
/// costly to make, such as one connected to a server; each check uses
/// fresh ids).
pub async fn run_all_on<St: JobStore>(store: Arc<St>) {
    create_get_round_trip(&*store).await;
    start_moves_pending_to_running_once(&*store).await;
    start_records_when_it_started(&*store).await;
    find_key_names_the_holder(&*store).await;
    progress_is_visible_until_terminal(&*store).await;
    finish_stores_the_response_byte_for_byte(&*store).await;
    finish_with_error_status_is_failed(&*store).await;
    finish_without_response_is_failed(&*store).await;
    finish_twice_changes_nothing(&*store).await;
    cancel_answers_per_state(&*store).await;
    delete_removes_record_and_response(&*store).await;
    wait_terminal_resolves_at_once_when_ended_or_unknown(&*store).await;
    claims_fence_start_progress_and_finish(&*store).await;
    durable_job_not_queued_runs_as_attempt_one(&*store).await;
    queued_job_is_claimed_once_with_its_request(&*store).await;
    claims_take_the_oldest_first(&*store).await;
    ended_queued_jobs_are_never_claimed(&*store).await;
    renew_answers_claim_by_claim(&*store).await;
    release_requeues_a_durable_job_for_the_next_attempt(&*store).await;
    create_durable_with_a_key_creates_once(&*store).await;
    sweep_leaves_held_claims_alone(&*store).await;
    health_answers_ok_when_the_store_works(&*store).await;
    every_change_raises_updated_at(&*store).await;
    wait_change_wakes_on_every_change(&store).await;
    callbacks_on(&*store).await;
    wait_terminal_wakes_on_finish(&store).await;
    wait_terminal_wakes_on_cancel(&store).await;
    wait_terminal_wakes_on_delete(&store).await;
    many_waiters_all_wake(&store).await;
}

/// Runs the completion-callback delivery checks that need no particular
/// setting, on one store (each uses fresh ids and queues).
pub async fn callbacks_on<St: JobStore>(store: &St) {
    callback_round_trips(store).await;
    delivery_is_due_once_its_job_ends(store).await;
    delivery_claims_are_held(store).await;
    record_delivery_is_fenced(store).await;
    delivery_is_due_when_out_of_attempts(store).await;
    concurrent_claims_take_each_delivery_once(store).await;
    deleted_job_drops_its_delivery(store).await;
}

/// [`health`](JobStore::health) answers `Ok` on a store that works, within
/// [`AT_ONCE`], and again when asked again (it changes nothing that a
/// second call would find).
pub async fn health_answers_ok_when_the_store_works<St: JobStore>(store: &St) {
    for call in 1..=2 {
        match tokio::time::timeout(AT_ONCE, store.health()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("health (call {call}) failed on a working store: {e}"),
            Err(_) => panic!("health (call {call}) did not answer within {AT_ONCE:?}"),
        }
    }
    // The store still serves operations after its checks.
    let id = pending(store).await;
    assert_eq!(found(store, id).await.status, crate::store::JobStatus::Pending);
}

/// The record of `id`, which must be known.
pub async fn found<St: JobStore>(store: &St, id: JobId) -> JobRecord {
    match store.get(id).await.expect("get") {
        Lookup::Found(record) => record,
        other => panic!("job {id} should be known, the store says {other:?}"),
    }
}

/// A new pending job.
pub async fn pending<St: JobStore>(store: &St) -> JobId {
    let id = JobId::new();
    store.create(JobRecord::pending(id)).await.expect("create");
    id
}

/// Ends the running job `id` with `response`, asserting the store took it.
pub(crate) async fn succeed<St: JobStore>(store: &St, id: JobId, response: &Response<Bytes>) {
    let outcome = Outcome::Response(response.clone());
    assert!(
        store.finish(Claim::first(id), outcome).await.expect("finish"),
        "finish({id}) was refused"
    );
}

/// A new running job.
pub async fn running<St: JobStore>(store: &St) -> JobId {
    let id = pending(store).await;
    assert!(
        store.start(Claim::first(id)).await.expect("start"),
        "a pending job starts"
    );
    id
}

/// A response as a store keeps it: `status`, `headers` and `body`.
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use tower_accepted::store::suite::stored_response;
///
/// let response = stored_response(StatusCode::CREATED, HeaderMap::new(), "made");
/// assert_eq!(response.status(), StatusCode::CREATED);
/// assert_eq!(response.body(), "made");
/// ```
pub fn stored_response(status: StatusCode, headers: HeaderMap, body: impl Into<Bytes>) -> Response<Bytes> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// A response with a status, repeated and binary-unsafe headers and a
/// body that is not UTF-8.
pub fn sample_response(status: StatusCode) -> Response<Bytes> {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/octet-stream"));
    headers.append("set-cookie", HeaderValue::from_static("a=1; Path=/"));
    headers.append("set-cookie", HeaderValue::from_static("b=2; HttpOnly"));
    headers.append("x-multi", HeaderValue::from_static("first"));
    headers.append("x-multi", HeaderValue::from_static("second"));
    headers.append("x-multi", HeaderValue::from_static("third"));
    headers.insert(
        "x-opaque",
        HeaderValue::from_bytes(b"caf\xe9 \x80").expect("header value bytes"),
    );
    let mut body: Vec<u8> = (0..=255u8).collect();
    body.extend_from_slice(&[0, 0, 0xff, 0xfe, b'\r', b'\n', 0]);
    body.extend(std::iter::repeat_n(0xa5u8, 70_000));
    stored_response(status, headers, body)
}

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a [u8]> {
    headers.get_all(name).iter().map(HeaderValue::as_bytes).collect()
}

/// Asserts that `actual` holds the headers of `expected`: as many, and
/// every value of each name in order (what a store keeps of a response's
/// or a stored request's headers).
pub(super) fn assert_same_headers(actual: &HeaderMap, expected: &HeaderMap) {
    assert_eq!(actual.len(), expected.len(), "{actual:?}");
    for name in expected.keys() {
        assert_eq!(
            values(actual, name.as_str()),
            values(expected, name.as_str()),
            "header {name}"
        );
    }
}

/// Asserts that `actual` is `expected`: status, every header value in
/// order, every body byte (what a store keeps of a response).
pub fn assert_same_response(actual: &Response<Bytes>, expected: &Response<Bytes>) {
    assert_eq!(actual.status(), expected.status());
    assert_same_headers(actual.headers(), expected.headers());
    assert_eq!(actual.body().len(), expected.body().len());
    assert!(actual.body() == expected.body(), "the body differs");
}

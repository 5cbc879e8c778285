//! The checks of one job's record: create, start, progress, finish,
//! cancel, delete, and idempotency keys.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::{assert_same_response, found, pending, running, sample_response, stored_response, succeed};
use crate::store::{
    Cancel, Claim, ErrorCode, IdempotencyKey, JobError, JobId, JobRecord, JobStatus, JobStore, KeyLookup, Lookup,
    Outcome, unix_ms,
};

/// A created job reads back as it was given; an unknown id is `Unknown`.
pub async fn create_get_round_trip<St: JobStore>(store: &St) {
    let id = JobId::new();
    let record = JobRecord::pending(id);
    store.create(record.clone()).await.expect("create");
    let got = found(store, id).await;
    assert_eq!(got, record);
    assert_eq!(got.status, JobStatus::Pending);
    assert_eq!(got.progress, None);
    assert_eq!(got.message, None);
    assert_eq!(got.result_status, None);
    assert_eq!(got.error, None);
    assert!(!got.has_response());

    // A record with everything filled in comes back as it went.
    let mut full = JobRecord::pending(JobId::new());
    full.status = JobStatus::Running;
    full.progress = Some(0.25);
    full.message = Some("rendering page 1 of 4 — ünïcödé".into());
    store.create(full.clone()).await.expect("create");
    assert_eq!(found(store, full.id).await, full);

    assert_eq!(store.get(JobId::new()).await.expect("get"), Lookup::Unknown);
    // Two jobs do not see each other.
    assert_eq!(found(store, id).await, record);
}

/// `start` moves a pending job to running once, records when, and starts nothing else.
pub async fn start_moves_pending_to_running_once<St: JobStore>(store: &St) {
    let id = pending(store).await;
    let before = found(store, id).await;
    assert!(store.start(Claim::first(id)).await.expect("start"));
    let after = found(store, id).await;
    assert_eq!(after.status, JobStatus::Running);
    assert_eq!(after.created_at_ms, before.created_at_ms);
    assert!(after.updated_at_ms >= before.updated_at_ms);

    assert!(
        !store.start(Claim::first(id)).await.expect("start"),
        "a running job does not start again"
    );
    assert_eq!(found(store, id).await, after);

    let canceled = pending(store).await;
    assert_eq!(store.cancel(canceled).await.expect("cancel"), Cancel::Canceled);
    assert!(
        !store.start(Claim::first(canceled)).await.expect("start"),
        "a canceled job does not start"
    );
    assert_eq!(found(store, canceled).await.status, JobStatus::Canceled);

    let finished = running(store).await;
    let outcome = Outcome::Response(stored_response(StatusCode::OK, HeaderMap::new(), Bytes::new()));
    assert!(store.finish(Claim::first(finished), outcome).await.expect("finish"));
    assert!(
        !store.start(Claim::first(finished)).await.expect("start"),
        "a finished job does not start"
    );
    assert_eq!(found(store, finished).await.status, JobStatus::Succeeded);

    let unknown = JobId::new();
    assert!(
        !store.start(Claim::first(unknown)).await.expect("start"),
        "an unknown job does not start"
    );
    assert_eq!(store.get(unknown).await.expect("get"), Lookup::Unknown);
}

/// Progress and message are visible to readers until the job ends, and change nothing after;
/// `set_progress` answers whether it took them.
pub async fn progress_is_visible_until_terminal<St: JobStore>(store: &St) {
    // While pending.
    let id = pending(store).await;
    assert!(
        store
            .set_progress(Claim::first(id), Some(0.0), Some("queued".into()))
            .await
            .expect("set_progress"),
        "a pending job takes progress"
    );
    let record = found(store, id).await;
    assert_eq!(record.status, JobStatus::Pending);
    assert_eq!(record.progress, Some(0.0));
    assert_eq!(record.message.as_deref(), Some("queued"));

    // While running, each report replaces the last.
    assert!(store.start(Claim::first(id)).await.expect("start"));
    assert!(
        store
            .set_progress(Claim::first(id), Some(0.5), Some("page 2 of 4".into()))
            .await
            .expect("set_progress"),
        "a running job takes progress"
    );
    let record = found(store, id).await;
    assert_eq!(record.status, JobStatus::Running);
    assert_eq!(record.progress, Some(0.5));
    assert_eq!(record.message.as_deref(), Some("page 2 of 4"));
    assert!(
        store
            .set_progress(Claim::first(id), Some(0.75), Some("page 3 of 4".into()))
            .await
            .expect("set_progress"),
        "a running job takes progress"
    );
    let record = found(store, id).await;
    assert_eq!(record.progress, Some(0.75));
    assert_eq!(record.message.as_deref(), Some("page 3 of 4"));

    // Ended: reports are ignored, and progress and message stay.
    let outcome = Outcome::Response(stored_response(StatusCode::OK, HeaderMap::new(), Bytes::from("ok")));
    assert!(store.finish(Claim::first(id), outcome).await.expect("finish"));
    let ended = found(store, id).await;
    assert!(
        !store
            .set_progress(Claim::first(id), Some(0.1), Some("late".into()))
            .await
            .expect("set_progress"),
        "an ended job takes no progress"
    );
    let record = found(store, id).await;
    assert_eq!(record, ended);
    assert_eq!(record.status, JobStatus::Succeeded);
    assert_eq!(record.progress, Some(0.75));
    assert_eq!(record.message.as_deref(), Some("page 3 of 4"));

    // Canceled: ignored too.
    let canceled = running(store).await;
    assert_eq!(store.cancel(canceled).await.expect("cancel"), Cancel::Canceled);
    assert!(
        !store
            .set_progress(Claim::first(canceled), Some(0.9), Some("late".into()))
            .await
            .expect("set_progress"),
        "a canceled job takes no progress"
    );
    let record = found(store, canceled).await;
    assert_eq!(record.status, JobStatus::Canceled);
    assert_eq!(record.progress, None);
    assert_eq!(record.message, None);

    // Unknown: nothing is created.
    let unknown = JobId::new();
    assert!(
        !store
            .set_progress(Claim::first(unknown), Some(0.5), None)
            .await
            .expect("set_progress"),
        "an unknown job takes no progress"
    );
    assert_eq!(store.get(unknown).await.expect("get"), Lookup::Unknown);
}

/// `finish` keeps the response: status, every header value in order, and the body, byte for byte.
pub async fn finish_stores_the_response_byte_for_byte<St: JobStore>(store: &St) {
    let id = running(store).await;
    assert!(
        store.response(id).await.expect("response").is_none(),
        "no response while running"
    );
    let response = sample_response(StatusCode::CREATED);
    succeed(store, id, &response).await;

    let record = found(store, id).await;
    assert_eq!(record.status, JobStatus::Succeeded);
    assert_eq!(record.result_status, Some(201));
    assert_eq!(record.error, None);
    assert!(record.has_response());

    let stored = store.response(id).await.expect("response").expect("a stored response");
    assert_same_response(&stored, &response);
    // Reading it does not consume it.
    let again = store.response(id).await.expect("response").expect("a stored response");
    assert_same_response(&again, &response);

    // An empty body and no headers round-trip too.
    let empty_id = running(store).await;
    let empty = stored_response(StatusCode::NO_CONTENT, HeaderMap::new(), Bytes::new());
    succeed(store, empty_id, &empty).await;
    let stored = store
        .response(empty_id)
        .await
        .expect("response")
        .expect("a stored response");
    assert_same_response(&stored, &empty);
    assert_eq!(found(store, empty_id).await.result_status, Some(204));

    assert!(store.response(JobId::new()).await.expect("response").is_none());
}

/// A response of 400 or above ends the job `failed` with `http_status`, and is kept.
pub async fn finish_with_error_status_is_failed<St: JobStore>(store: &St) {
    for status in [
        StatusCode::BAD_REQUEST,
        StatusCode::UNPROCESSABLE_ENTITY,
        StatusCode::INTERNAL_SERVER_ERROR,
    ] {
        let id = running(store).await;
        let response = sample_response(status);
        succeed(store, id, &response).await;
        let record = found(store, id).await;
        assert_eq!(record.status, JobStatus::Failed, "{status}");
        let error = record.error.as_ref().expect("an error");
        assert_eq!(error.code, ErrorCode::HttpStatus);
        assert_eq!(error.code, "http_status");
        assert_eq!(record.result_status, Some(status.as_u16()));
        assert!(record.has_response());
        let stored = store
            .response(id)
            .await
            .expect("response")
            .expect("the response is kept");
        assert_same_response(&stored, &response);
    }
    // 399 is still a success.
    let id = running(store).await;
    let status = StatusCode::from_u16(399).unwrap();
    let outcome = Outcome::Response(stored_response(status, HeaderMap::new(), Bytes::new()));
    assert!(store.finish(Claim::first(id), outcome).await.expect("finish"));
    let record = found(store, id).await;
    assert_eq!(record.status, JobStatus::Succeeded);
    assert_eq!(record.result_status, Some(399));
    assert_eq!(record.error, None);
}

/// An outcome without a response ends the job `failed` with its error, and keeps no response.
pub async fn finish_without_response_is_failed<St: JobStore>(store: &St) {
    for (code, word) in [
        (ErrorCode::Panicked, "panicked"),
        (ErrorCode::Timeout, "timeout"),
        (ErrorCode::Error, "error"),
        (ErrorCode::Lost, "lost"),
        // A code the crate does not know is kept as it was written.
        (ErrorCode::from("custom_code"), "custom_code"),
    ] {
        let id = running(store).await;
        let error = JobError::new(code, format!("it ended with {word}"));
        assert!(
            store
                .finish(Claim::first(id), Outcome::Failed(error.clone()))
                .await
                .expect("finish")
        );
        let record = found(store, id).await;
        assert_eq!(record.status, JobStatus::Failed);
        assert_eq!(record.error.as_ref().map(|e| e.code.as_str()), Some(word));
        assert_eq!(record.error, Some(error));
        assert_eq!(record.result_status, None);
        assert!(!record.has_response());
        assert!(store.response(id).await.expect("response").is_none());
    }
    // A pending job may end without running (a shutdown).
    let id = pending(store).await;
    let error = JobError::new(ErrorCode::Shutdown, "shut down");
    assert!(
        store
            .finish(Claim::first(id), Outcome::Failed(error.clone()))
            .await
            .expect("finish")
    );
    assert_eq!(found(store, id).await.error, Some(error));
}

/// A terminal state never changes: a second `finish`, or a `cancel`, changes nothing.
pub async fn finish_twice_changes_nothing<St: JobStore>(store: &St) {
    let id = running(store).await;
    let first = sample_response(StatusCode::OK);
    succeed(store, id, &first).await;
    let record = found(store, id).await;

    let second = stored_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        HeaderMap::new(),
        Bytes::from("second"),
    );
    assert!(
        !store
            .finish(Claim::first(id), Outcome::Response(second))
            .await
            .expect("finish")
    );
    let failed = JobError::new(ErrorCode::Timeout, "too late");
    assert!(
        !store
            .finish(Claim::first(id), Outcome::Failed(failed))
            .await
            .expect("finish")
    );
    assert_eq!(found(store, id).await, record);
    assert_eq!(found(store, id).await.status, JobStatus::Succeeded);
    let stored = store.response(id).await.expect("response").expect("the first response");
    assert_same_response(&stored, &first);

    // A failed job stays failed.
    let id = running(store).await;
    let error = JobError::new(ErrorCode::Panicked, "boom");
    assert!(
        store
            .finish(Claim::first(id), Outcome::Failed(error.clone()))
            .await
            .expect("finish")
    );
    let record = found(store, id).await;
    let late = Outcome::Response(stored_response(StatusCode::OK, HeaderMap::new(), Bytes::from("late")));
    assert!(!store.finish(Claim::first(id), late).await.expect("finish"));
    assert_eq!(found(store, id).await, record);
    assert!(store.response(id).await.expect("response").is_none());

    // A canceled job stays canceled.
    let id = running(store).await;
    assert_eq!(store.cancel(id).await.expect("cancel"), Cancel::Canceled);
    let record = found(store, id).await;
    let late = Outcome::Response(stored_response(StatusCode::OK, HeaderMap::new(), Bytes::from("late")));
    assert!(!store.finish(Claim::first(id), late).await.expect("finish"));
    assert_eq!(found(store, id).await, record);
    assert!(store.response(id).await.expect("response").is_none());

    // An unknown job is not created by finishing it.
    let unknown = JobId::new();
    let outcome = Outcome::Response(stored_response(StatusCode::OK, HeaderMap::new(), Bytes::new()));
    assert!(!store.finish(Claim::first(unknown), outcome).await.expect("finish"));
    assert_eq!(store.get(unknown).await.expect("get"), Lookup::Unknown);
    assert!(store.response(unknown).await.expect("response").is_none());
}

/// `cancel` cancels a pending or running job, and answers for ended and unknown ones.
pub async fn cancel_answers_per_state<St: JobStore>(store: &St) {
    let id = pending(store).await;
    assert_eq!(store.cancel(id).await.expect("cancel"), Cancel::Canceled);
    let record = found(store, id).await;
    assert_eq!(record.status, JobStatus::Canceled);
    assert_eq!(record.status.as_str(), "canceled");
    assert_eq!(record.result_status, None);
    assert_eq!(store.cancel(id).await.expect("cancel"), Cancel::AlreadyTerminal);
    assert_eq!(found(store, id).await, record);

    let id = running(store).await;
    assert_eq!(store.cancel(id).await.expect("cancel"), Cancel::Canceled);
    assert_eq!(found(store, id).await.status, JobStatus::Canceled);

    let id = running(store).await;
    let response = sample_response(StatusCode::OK);
    succeed(store, id, &response).await;
    let record = found(store, id).await;
    assert_eq!(store.cancel(id).await.expect("cancel"), Cancel::AlreadyTerminal);
    assert_eq!(found(store, id).await, record);
    assert_same_response(&store.response(id).await.expect("response").expect("kept"), &response);

    let id = running(store).await;
    let error = JobError::new(ErrorCode::Timeout, "slow");
    assert!(
        store
            .finish(Claim::first(id), Outcome::Failed(error))
            .await
            .expect("finish")
    );
    assert_eq!(store.cancel(id).await.expect("cancel"), Cancel::AlreadyTerminal);
    assert_eq!(found(store, id).await.status, JobStatus::Failed);

    let unknown = JobId::new();
    assert_eq!(store.cancel(unknown).await.expect("cancel"), Cancel::Unknown);
    assert_eq!(store.get(unknown).await.expect("get"), Lookup::Unknown);
}

/// `delete` removes a job and its response, and only that job.
pub async fn delete_removes_record_and_response<St: JobStore>(store: &St) {
    let id = running(store).await;
    assert!(
        store
            .finish(Claim::first(id), Outcome::Response(sample_response(StatusCode::OK)))
            .await
            .expect("finish")
    );
    assert!(store.delete(id).await.expect("delete"));
    assert_eq!(
        store.get(id).await.expect("get"),
        Lookup::Unknown,
        "a deleted job is unknown, not expired"
    );
    assert!(store.response(id).await.expect("response").is_none());
    assert_eq!(store.cancel(id).await.expect("cancel"), Cancel::Unknown);
    assert!(!store.delete(id).await.expect("delete"), "deleting twice finds nothing");

    let id = running(store).await;
    assert!(store.delete(id).await.expect("delete"));
    assert_eq!(store.get(id).await.expect("get"), Lookup::Unknown);
    // A late finish of a deleted job brings nothing back.
    let outcome = Outcome::Response(stored_response(StatusCode::OK, HeaderMap::new(), Bytes::from("late")));
    assert!(!store.finish(Claim::first(id), outcome).await.expect("finish"));
    assert_eq!(store.get(id).await.expect("get"), Lookup::Unknown);
    assert!(store.response(id).await.expect("response").is_none());

    let id = pending(store).await;
    let other = pending(store).await;
    assert!(store.delete(id).await.expect("delete"));
    assert_eq!(
        found(store, other).await.status,
        JobStatus::Pending,
        "only the one job goes"
    );

    assert!(!store.delete(JobId::new()).await.expect("delete"));
}

/// `start` records when the job started (`started_at_ms`): none while it
/// waits, a time between its creation and now once it runs, kept after it
/// ends.
pub async fn start_records_when_it_started<St: JobStore>(store: &St) {
    let id = pending(store).await;
    let record = found(store, id).await;
    assert_eq!(record.started_at_ms, None, "a pending job has not started");
    assert!(store.start(Claim::first(id)).await.expect("start"));
    let started = found(store, id)
        .await
        .started_at_ms
        .expect("a running job records when it started");
    assert!(
        started >= record.created_at_ms && started <= unix_ms() + 1_000,
        "started at {started}, created at {}",
        record.created_at_ms
    );
    let outcome = Outcome::Response(stored_response(StatusCode::OK, HeaderMap::new(), Bytes::new()));
    assert!(store.finish(Claim::first(id), outcome).await.expect("finish"));
    assert_eq!(
        found(store, id).await.started_at_ms,
        Some(started),
        "kept after the end"
    );
}

/// `find_key` names the job holding an idempotency key, creating nothing:
/// `Free` before `create_once` and after the holder is deleted, the holder
/// for the same request, `Mismatch` for another; keys of other scopes are
/// apart.
pub async fn find_key_names_the_holder<St: JobStore>(store: &St) {
    let scope = JobId::new().to_string();
    let key = IdempotencyKey::new(Some(&scope), "order-42", "fingerprint-a");
    assert_eq!(store.find_key(&key).await.expect("find_key"), KeyLookup::Free);
    let id = JobId::new();
    let created = store
        .create_once(JobRecord::pending(id), key.clone())
        .await
        .expect("create_once");
    assert_eq!(created, crate::store::CreatedOnce::New);
    match store.find_key(&key).await.expect("find_key") {
        KeyLookup::Existing(record) => assert_eq!(record.id, id),
        other => panic!("the key's holder should be found, the store says {other:?}"),
    }
    let other_request = IdempotencyKey::new(Some(&scope), "order-42", "fingerprint-b");
    assert_eq!(
        store.find_key(&other_request).await.expect("find_key"),
        KeyLookup::Mismatch
    );
    let other_scope = IdempotencyKey::new(Some("someone else"), "order-42", "fingerprint-a");
    assert_eq!(store.find_key(&other_scope).await.expect("find_key"), KeyLookup::Free);
    assert_eq!(found(store, id).await.status, JobStatus::Pending, "nothing started");
    assert!(store.delete(id).await.expect("delete"));
    assert_eq!(store.find_key(&key).await.expect("find_key"), KeyLookup::Free);
}

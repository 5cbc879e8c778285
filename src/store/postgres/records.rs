//! The operations on one job's record: create (with or without an
//! idempotency key), read, list, start, progress, end, delete.

use bytes::Bytes;
use http::Response;
use sqlx::Row;

use super::rows;
use super::{PostgresStore, i64_ms};
use crate::store::stored_http::encode_headers;
use crate::store::{
    Cancel, Claim, CreatedOnce, DurableJob, IdempotencyKey, JobId, JobRecord, KeyLookup, ListCursor, Lookup, Outcome,
    Page, StoreError, unix_ms,
};

/// How often a keyed create tries again when the key's holder changes
/// under it (expired, deleted) before it gives up.
const KEYED_TRIES: usize = 8;

/// What a key's holder is, as its row says.
struct Holder {
    /// The holder's id.
    id: JobId,
    /// The fingerprint it was created with.
    fingerprint: String,
    /// Whether it is not past its time to live.
    kept: bool,
    /// Its record.
    record: Option<JobRecord>,
}

impl PostgresStore {
    /// Inserts a job (with its key, a durable job with its request) in one
    /// statement: `true` when it went in, `false` when its id or key was
    /// taken. A queued job into a full queue fails with
    /// [`StoreError::Full`].
    pub(super) async fn create_job(
        &self,
        record: &JobRecord,
        key: Option<&IdempotencyKey>,
        durable: Option<&DurableJob>,
    ) -> Result<bool, StoreError> {
        let queued = durable.is_some_and(|d| d.queued);
        let request = durable.map(|d| &d.request);
        let (room, inserted): (bool, bool) = self
            .bounded(
                sqlx::query_as(&self.inner.statements.create)
                    .bind(record.id.as_uuid())
                    .bind(record.status.as_str())
                    .bind(i64_ms(record.created_at_ms))
                    .bind(i64_ms(record.updated_at_ms))
                    .bind(record.started_at_ms.map(i64_ms))
                    .bind(record.progress)
                    .bind(record.message.as_deref())
                    .bind(record.owner.as_deref())
                    .bind(if queued { 0_i32 } else { 1 })
                    .bind(key.map(IdempotencyKey::scope))
                    .bind(key.map(IdempotencyKey::fingerprint))
                    .bind(durable.map(|d| d.queue.as_str()))
                    .bind(durable.map(|d| i32::try_from(d.max_attempts).unwrap_or(i32::MAX)))
                    .bind(queued)
                    .bind(request.map(|r| r.method().as_str()))
                    .bind(request.map(|r| r.uri().to_string()))
                    .bind(request.map(|r| encode_headers(r.headers())))
                    .bind(request.map(|r| r.body().to_vec()))
                    .bind(!queued && !record.status.is_terminal())
                    .bind(record.status.is_terminal())
                    .bind(self.inner.max_queued)
                    .bind(record.callback.as_ref().map(|c| c.url.as_str()))
                    .bind(record.callback.as_ref().map(|c| c.state.as_str()))
                    .bind(
                        record
                            .callback
                            .as_ref()
                            .map_or(0, |c| i32::try_from(c.attempts).unwrap_or(i32::MAX)),
                    )
                    .fetch_one(&self.inner.pool),
            )
            .await?;
        if room { Ok(inserted) } else { Err(StoreError::Full) }
    }

    /// Creates a job unless `key` is taken (a durable one with `durable`):
    /// the answer of [`create_once`](crate::store::JobStore::create_once).
    /// A key held by an expired job is freed and tried again.
    pub(super) async fn create_keyed(
        &self,
        record: &JobRecord,
        key: &IdempotencyKey,
        durable: Option<&DurableJob>,
    ) -> Result<CreatedOnce, StoreError> {
        for _ in 0..KEYED_TRIES {
            if self.create_job(record, Some(key), durable).await? {
                return Ok(CreatedOnce::New);
            }
            let Some(holder) = self.holder(key).await? else {
                // Deleted since: the key is free.
                continue;
            };
            if !holder.kept {
                self.bounded(
                    sqlx::query(&self.inner.statements.free_key)
                        .bind(holder.id.as_uuid())
                        .execute(&self.inner.pool),
                )
                .await?;
                continue;
            }
            if holder.fingerprint != key.fingerprint() {
                return Ok(CreatedOnce::Mismatch);
            }
            if let Some(existing) = holder.record {
                return Ok(CreatedOnce::Existing(existing));
            }
        }
        Err(StoreError::Unavailable(
            "the idempotency key kept changing hands".into(),
        ))
    }

    /// Who holds `key`: the answer of
    /// [`find_key`](crate::store::JobStore::find_key).
    pub(super) async fn key_holder(&self, key: &IdempotencyKey) -> Result<KeyLookup, StoreError> {
        Ok(match self.holder(key).await? {
            Some(holder) if holder.kept && holder.fingerprint != key.fingerprint() => KeyLookup::Mismatch,
            Some(Holder {
                kept: true,
                record: Some(record),
                ..
            }) => KeyLookup::Existing(record),
            _ => KeyLookup::Free,
        })
    }

    /// The row that holds `key`, if any.
    async fn holder(&self, key: &IdempotencyKey) -> Result<Option<Holder>, StoreError> {
        let row = self
            .bounded(
                sqlx::query(&self.inner.statements.key_holder)
                    .bind(key.scope())
                    .fetch_optional(&self.inner.pool),
            )
            .await?;
        Ok(row.and_then(|row| {
            let id = rows::id(&row, 0)?;
            Some(Holder {
                id,
                fingerprint: row.try_get::<Option<String>, _>(1).ok().flatten().unwrap_or_default(),
                kept: row.try_get(2).unwrap_or(false),
                record: rows::record(id, &row, 3),
            })
        }))
    }

    /// An owner's jobs, newest first, by keyset pagination.
    pub(super) async fn list_owned(
        &self,
        owner: &str,
        limit: usize,
        after: Option<ListCursor>,
    ) -> Result<Page, StoreError> {
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let s = &self.inner.statements;
        let found = match after {
            None => {
                self.bounded(
                    sqlx::query(&s.list_first)
                        .bind(owner)
                        .bind(fetch)
                        .fetch_all(&self.inner.pool),
                )
                .await?
            }
            Some(cursor) => {
                self.bounded(
                    sqlx::query(&s.list_after)
                        .bind(owner)
                        .bind(fetch)
                        .bind(i64_ms(cursor.created_at_ms))
                        .bind(cursor.id.as_uuid())
                        .fetch_all(&self.inner.pool),
                )
                .await?
            }
        };
        let more = found.len() > limit;
        let jobs: Vec<JobRecord> = found
            .iter()
            .take(limit)
            .filter_map(|row| rows::record(rows::id(row, 0)?, row, 1))
            .collect();
        let next = if more {
            jobs.last().map(|last| ListCursor::new(last.created_at_ms, last.id))
        } else {
            None
        };
        Ok(Page::new(jobs, next))
    }

    /// What the store knows of `id`.
    pub(super) async fn lookup(&self, id: JobId) -> Result<Lookup, StoreError> {
        // The job's row alone (a poll's common case: one index scan of one
        // table); its tombstone only when there is no row.
        let row = self
            .bounded(
                sqlx::query(&self.inner.statements.get)
                    .bind(id.as_uuid())
                    .fetch_optional(&self.inner.pool),
            )
            .await?;
        if let Some(row) = row {
            return Ok(rows::lookup(id, &row, 0));
        }
        let remembered: Option<bool> = self
            .bounded(
                sqlx::query_scalar(&self.inner.statements.tombstone)
                    .bind(id.as_uuid())
                    .fetch_optional(&self.inner.pool),
            )
            .await?;
        Ok(if remembered == Some(true) {
            Lookup::Expired
        } else {
            Lookup::Unknown
        })
    }

    /// Moves a pending job its claim holds to running.
    pub(super) async fn start_claimed(&self, claim: Claim) -> Result<bool, StoreError> {
        self.fenced(&self.inner.statements.start, claim).await
    }

    /// Runs `statement`, a change fenced by `claim` whose parameters are
    /// the claim and the time (start, release): whether it changed the job.
    pub(super) async fn fenced(&self, statement: &str, claim: Claim) -> Result<bool, StoreError> {
        let done = self
            .bounded(
                sqlx::query(statement)
                    .bind(claim.id().as_uuid())
                    .bind(attempt(claim))
                    .bind(i64_ms(unix_ms()))
                    .execute(&self.inner.pool),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records progress on a job its claim holds.
    pub(super) async fn write_progress(
        &self,
        claim: Claim,
        progress: Option<f32>,
        message: Option<String>,
    ) -> Result<bool, StoreError> {
        let done = self
            .bounded(
                sqlx::query(&self.inner.statements.progress)
                    .bind(claim.id().as_uuid())
                    .bind(attempt(claim))
                    .bind(progress)
                    .bind(message)
                    .bind(i64_ms(unix_ms()))
                    .execute(&self.inner.pool),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a job its claim holds with `outcome`, and wakes its waiters.
    pub(super) async fn end_claimed(&self, claim: Claim, outcome: &Outcome) -> Result<bool, StoreError> {
        let response = outcome.response();
        let error = outcome.error();
        let ended = self
            .bounded(
                sqlx::query(&self.inner.statements.finish)
                    .bind(claim.id().as_uuid())
                    .bind(attempt(claim))
                    .bind(outcome.status().as_str())
                    .bind(i64_ms(unix_ms()))
                    .bind(response.map(|r| i32::from(r.status().as_u16())))
                    .bind(response.map(|r| encode_headers(r.headers())))
                    .bind(response.map(|r| r.body().to_vec()))
                    .bind(error.as_ref().map(|e| e.code.to_string()))
                    .bind(error.map(|e| e.message))
                    .fetch_all(&self.inner.pool),
            )
            .await?;
        Ok(ended.len() == 1)
    }

    /// Cancels a job that has not ended, and wakes its waiters.
    pub(super) async fn cancel_job(&self, id: JobId) -> Result<Cancel, StoreError> {
        let row = self
            .bounded(
                sqlx::query(&self.inner.statements.cancel)
                    .bind(id.as_uuid())
                    .bind(i64_ms(unix_ms()))
                    .fetch_one(&self.inner.pool),
            )
            .await?;
        if row.try_get::<bool, _>(0).unwrap_or(false) {
            return Ok(Cancel::Canceled);
        }
        Ok(match rows::lookup(id, &row, 1) {
            Lookup::Found(_) => Cancel::AlreadyTerminal,
            Lookup::Expired => Cancel::Expired,
            _ => Cancel::Unknown,
        })
    }

    /// Removes a job and its tombstone, and wakes its waiters.
    pub(super) async fn delete_job(&self, id: JobId) -> Result<bool, StoreError> {
        self.bounded(
            sqlx::query_scalar(&self.inner.statements.delete)
                .bind(id.as_uuid())
                .fetch_one(&self.inner.pool),
        )
        .await
    }

    /// The stored response of a kept job.
    pub(super) async fn stored_response(&self, id: JobId) -> Result<Option<Response<Bytes>>, StoreError> {
        let row = self
            .bounded(
                sqlx::query(&self.inner.statements.response)
                    .bind(id.as_uuid())
                    .fetch_optional(&self.inner.pool),
            )
            .await?;
        Ok(row.and_then(|row| rows::response(&row, 0)))
    }
}

/// A claim's attempt as the `integer` column keeps it.
pub(super) fn attempt(claim: Claim) -> i32 {
    i32::try_from(claim.attempt()).unwrap_or(i32::MAX)
}

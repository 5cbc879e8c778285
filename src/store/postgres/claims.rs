//! [`PostgresStore`]'s claims: taking queued jobs, renewing and handing
//! back leases, and sweeping the leases that lapsed, all by the database's
//! clock.

use std::collections::HashSet;

use sqlx::Row;
use uuid::Uuid;

use super::records::attempt;
use super::rows::{self, RECORD_COLUMNS};
use super::{PostgresStore, i64_ms};
use crate::store::{
    Claim, Claimed, ErrorCode, JobError, LOST_MESSAGE, OUT_OF_ATTEMPTS, Outcome, StoreError, Swept, unix_ms,
};

/// How many jobs out of attempts one `claim_next` ends before it answers
/// nothing: the next call goes on.
const CLAIM_ROUNDS: usize = 16;

/// How many lapsed leases one sweep statement deals with, so that a
/// backlog (a replica with many jobs died) never holds rows long.
const SWEEP_BATCH: i64 = 256;

/// How many sweep statements one [`sweep`](crate::store::JobStore::sweep)
/// runs at most; the next sweep (every half lease) does the rest.
const SWEEP_ROUNDS: usize = 4;

impl PostgresStore {
    /// Takes the oldest job of `queue`, `FOR UPDATE SKIP LOCKED`: its next
    /// attempt and a lease. A job whose next attempt is past its attempts
    /// ends `lost` instead, and the next is taken.
    pub(super) async fn claim_job(&self, queue: &str) -> Result<Option<Claimed>, StoreError> {
        for _ in 0..CLAIM_ROUNDS {
            let row = self
                .bounded(
                    sqlx::query(&self.inner.statements.claim)
                        .bind(queue)
                        .bind(i64_ms(unix_ms()))
                        .fetch_optional(&self.inner.pool),
                )
                .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let id = rows::id(&row, 0);
            let record = id.and_then(|id| rows::record(id, &row, 1));
            let max_attempts: Option<i32> = row.try_get(1 + RECORD_COLUMNS).ok();
            let request = rows::request(&row, 2 + RECORD_COLUMNS);
            let Some(record) = record else {
                return Err(StoreError::Unavailable("a claimed job's record is unreadable".into()));
            };
            let claim = Claim::new(record.id, record.attempt);
            let out_of_attempts = max_attempts.is_some_and(|max| attempt(claim) > max);
            match request {
                Some(request) if !out_of_attempts => return Ok(Some(Claimed::new(claim, record, request))),
                _ => {
                    let lost = Outcome::Failed(JobError::new(ErrorCode::Lost, OUT_OF_ATTEMPTS));
                    self.end_claimed(claim, &lost).await?;
                }
            }
        }
        Ok(None)
    }

    /// Renews the leases of `claims` in one statement; answers, claim by
    /// claim, whether it still holds its job.
    pub(super) async fn renew_claims(&self, claims: &[Claim]) -> Result<Vec<bool>, StoreError> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = claims.iter().map(|c| *c.id().as_uuid()).collect();
        let attempts: Vec<i32> = claims.iter().map(|c| attempt(*c)).collect();
        let renewed = self
            .bounded(
                sqlx::query(&self.inner.statements.renew)
                    .bind(ids)
                    .bind(attempts)
                    .fetch_all(&self.inner.pool),
            )
            .await?;
        let held: HashSet<(Uuid, i32)> = renewed
            .iter()
            .filter_map(|row| Some((row.try_get(0).ok()?, row.try_get(1).ok()?)))
            .collect();
        Ok(claims
            .iter()
            .map(|c| held.contains(&(*c.id().as_uuid(), attempt(*c))))
            .collect())
    }

    /// Hands a durable job `claim` holds back to its queue.
    pub(super) async fn release_claim(&self, claim: Claim) -> Result<bool, StoreError> {
        self.fenced(&self.inner.statements.release, claim).await
    }

    /// Deals with the leases that lapsed by the database's clock, in
    /// batches: durable jobs with attempts left go back to their queue, the
    /// rest end `lost`.
    pub(super) async fn sweep_leases(&self) -> Result<Swept, StoreError> {
        let mut swept = Swept::default();
        for _ in 0..SWEEP_ROUNDS {
            let (requeued, lost): (i64, i64) = self
                .bounded(
                    sqlx::query_as(&self.inner.statements.sweep)
                        .bind(SWEEP_BATCH)
                        .bind(ErrorCode::Lost.as_str())
                        .bind(LOST_MESSAGE)
                        .fetch_one(&self.inner.pool),
                )
                .await?;
            swept.requeued += usize::try_from(requeued).unwrap_or(0);
            swept.lost += usize::try_from(lost).unwrap_or(0);
            if requeued + lost < SWEEP_BATCH {
                break;
            }
        }
        Ok(swept)
    }
}

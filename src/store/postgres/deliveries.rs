//! [`PostgresStore`]'s completion-callback deliveries: claims of the due
//! ones (`FOR UPDATE SKIP LOCKED`, through the partial index of due times)
//! and the attempts recorded, by the database's clock.

use std::time::Duration;

use sqlx::Row;

use super::rows::{self, RECORD_COLUMNS};
use super::{PostgresStore, i64_ms};
use crate::store::{DeliveryAttempt, DeliveryState, DueDelivery, JobId, StoreError};

impl PostgresStore {
    /// The answer of [`claim_deliveries`](crate::store::JobStore::claim_deliveries):
    /// one statement, also when nothing is due.
    pub(super) async fn claim_due(&self, limit: usize, hold: Duration) -> Result<Vec<DueDelivery>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let hold_ms = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX);
        let claimed = self
            .bounded(
                sqlx::query(&self.inner.statements.claim_deliveries)
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .bind(hold_ms)
                    .fetch_all(&self.inner.pool),
            )
            .await?;
        // `RETURNING` keeps no order: the rows are put back in the order
        // they were due.
        let mut due: Vec<(Option<i64>, DueDelivery)> = Vec::with_capacity(claimed.len());
        for row in &claimed {
            let Some(record) = rows::id(row, 0).and_then(|id| rows::record(id, row, 1)) else {
                continue;
            };
            let Some(token) = record.callback.as_ref().map(|c| c.attempts) else {
                continue;
            };
            let was: Option<i64> = row.try_get(1 + RECORD_COLUMNS).ok();
            due.push((was, DueDelivery::new(record, token)));
        }
        due.sort_by_key(|(was, _)| *was);
        Ok(due.into_iter().map(|(_, delivery)| delivery).collect())
    }

    /// The answer of [`record_delivery`](crate::store::JobStore::record_delivery).
    pub(super) async fn record_attempt(
        &self,
        id: JobId,
        token: u32,
        attempt: DeliveryAttempt,
    ) -> Result<bool, StoreError> {
        let (state, due) = match attempt {
            DeliveryAttempt::Delivered => (DeliveryState::Delivered, None),
            DeliveryAttempt::Failed => (DeliveryState::Failed, None),
            DeliveryAttempt::RetryAt(due) => (DeliveryState::Pending, Some(i64_ms(due))),
        };
        let done = self
            .bounded(
                sqlx::query(&self.inner.statements.record_delivery)
                    .bind(id.as_uuid())
                    .bind(i32::try_from(token).unwrap_or(i32::MAX))
                    .bind(state.as_str())
                    .bind(due)
                    .execute(&self.inner.pool),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

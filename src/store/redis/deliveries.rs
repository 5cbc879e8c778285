//! [`RedisStore`]'s completion-callback deliveries: claims of the due ones
//! and the attempts recorded (see [`CLAIM_DELIVERIES`] and
//! [`RECORD_DELIVERY`]).
//!
//! [`CLAIM_DELIVERIES`]: super::scripts::CLAIM_DELIVERIES
//! [`RECORD_DELIVERY`]: super::scripts::RECORD_DELIVERY

use std::time::Duration;

use super::RedisStore;
use super::codec::{FIELDS, parse_record};
use super::commands::store_error;
use crate::store::{DeliveryAttempt, DueDelivery, JobId, StoreError};

impl RedisStore {
    /// The answer of [`claim_deliveries`](crate::store::JobStore::claim_deliveries):
    /// one script, one round trip, also when nothing is due.
    pub(super) async fn claim_due(&self, limit: usize, hold: Duration) -> Result<Vec<DueDelivery>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows: Vec<Vec<Option<Vec<u8>>>> = self
            .inner
            .claim_deliveries
            .key(self.deliveries_key())
            .arg(self.job_prefix())
            .arg(limit)
            .arg(Self::ms(hold))
            .arg(Self::ms(self.inner.ttl))
            .arg(Self::ms(self.inner.tombstone_ttl))
            .arg(&FIELDS[..])
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        let mut due = Vec::with_capacity(rows.len());
        for row in rows {
            let Some((id, fields)) = row.split_first() else {
                continue;
            };
            let id = id.as_deref().and_then(|b| std::str::from_utf8(b).ok());
            // A row this store did not write is left to its hold: it comes
            // due again, and is passed by again, rather than failing the
            // other deliveries of the claim.
            let Some(record) = id.and_then(|t| t.parse().ok()).and_then(|id| parse_record(id, fields)) else {
                continue;
            };
            let Some(token) = record.callback.as_ref().map(|c| c.attempts) else {
                continue;
            };
            due.push(DueDelivery::new(record, token));
        }
        Ok(due)
    }

    /// The answer of [`record_delivery`](crate::store::JobStore::record_delivery).
    pub(super) async fn record_attempt(
        &self,
        id: JobId,
        token: u32,
        attempt: DeliveryAttempt,
    ) -> Result<bool, StoreError> {
        let (mode, due) = match attempt {
            DeliveryAttempt::Delivered => ("delivered", 0),
            DeliveryAttempt::Failed => ("failed", 0),
            DeliveryAttempt::RetryAt(due) => ("retry", due),
        };
        let recorded: i64 = self
            .inner
            .record_delivery
            .key(self.key(id, "job"))
            .key(self.deliveries_key())
            .key(self.key(id, "gone"))
            .arg(id.to_string())
            .arg(token)
            .arg(mode)
            .arg(due)
            .arg(Self::ms(self.inner.ttl))
            .arg(Self::ms(self.inner.tombstone_ttl))
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        Ok(recorded == 1)
    }
}

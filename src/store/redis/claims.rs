//! [`RedisStore`]'s claims: the fenced start and progress of a claimed
//! job, taking queued jobs, renewing and handing back leases, and sweeping
//! the leases that lapsed.

use super::RedisStore;
use super::codec::{FIELDS, REQUEST_FIELDS, parse_record, parse_request};
use super::commands::store_error;
use crate::store::{Claim, Claimed, ErrorCode, JobId, LOST_MESSAGE, OUT_OF_ATTEMPTS, StoreError, Swept, unix_ms};

/// How many times `claim_next` runs the claim script when each run passed
/// by 16 entries whose job ended: a queue this full of dead entries is
/// drained by later calls.
const CLAIM_ROUNDS: usize = 8;

/// How many lapsed leases one sweep script deals with, so that a backlog
/// (a replica with many jobs died) never holds Redis long.
const SWEEP_BATCH: usize = 256;

/// How many sweep scripts one [`sweep`](crate::store::JobStore::sweep) runs at most; the next
/// sweep (every half lease) does the rest.
const SWEEP_ROUNDS: usize = 4;

impl RedisStore {
    /// Takes the oldest job of `queue` (see [`CLAIM`](super::scripts::CLAIM)).
    pub(super) async fn claim_job(&self, queue: &str) -> Result<Option<Claimed>, StoreError> {
        let fields: Vec<&str> = FIELDS.iter().chain(REQUEST_FIELDS.iter()).copied().collect();
        for _ in 0..CLAIM_ROUNDS {
            let values: Vec<Option<Vec<u8>>> = self
                .inner
                .claim
                .key(format!("{}{}", self.queue_prefix(), queue))
                .key(self.leases_key())
                .key(self.deliveries_key())
                .arg(self.job_prefix())
                .arg(Self::ms(self.inner.lease))
                .arg(self.running_ttl())
                .arg(self.queue_prefix())
                .arg(Self::ms(self.inner.ttl))
                .arg(self.tombstone_ttl())
                .arg(&self.inner.channel)
                .arg(ErrorCode::Lost.as_str())
                .arg(OUT_OF_ATTEMPTS)
                .arg(&fields)
                .invoke_async(&mut self.conn())
                .await
                .map_err(store_error)?;
            let Some((first, rest)) = values.split_first() else {
                return Ok(None);
            };
            let first = first.as_deref().and_then(|b| std::str::from_utf8(b).ok());
            if first == Some("again") && rest.is_empty() {
                continue;
            }
            let id: JobId = first
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| StoreError::Unavailable("the claim script answered no job id".into()))?;
            let (record, request) = rest.split_at(FIELDS.len().min(rest.len()));
            let (Some(record), Some(request)) = (parse_record(id, record), parse_request(request)) else {
                // Written by something else than this store: the claim's
                // lease lapses and the sweep deals with the job.
                return Err(StoreError::Unavailable(
                    format!("job {id} was claimed but its record or request is unreadable").into(),
                ));
            };
            let claim = Claim::new(id, record.attempt);
            return Ok(Some(Claimed::new(claim, record, request)));
        }
        Ok(None)
    }

    /// Starts the job `claim` holds (see [`START`](super::scripts::START)).
    pub(super) async fn start_claimed(&self, claim: Claim) -> Result<bool, StoreError> {
        let id = claim.id();
        let started: i64 = self
            .inner
            .start
            .key(self.key(id, "job"))
            .key(self.leases_key())
            .arg(unix_ms())
            .arg(id.to_string())
            .arg(claim.attempt())
            .arg(&self.inner.channel)
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        Ok(started == 1)
    }

    /// Records progress for the claim that holds the job (see
    /// [`PROGRESS`](super::scripts::PROGRESS)).
    pub(super) async fn write_progress(
        &self,
        claim: Claim,
        progress: Option<f32>,
        message: Option<String>,
    ) -> Result<bool, StoreError> {
        let id = claim.id();
        let written: i64 = self
            .inner
            .progress
            .key(self.key(id, "job"))
            .key(self.leases_key())
            .arg(unix_ms())
            .arg(progress.map(|p| p.to_string()).unwrap_or_default())
            .arg(if message.is_some() { "1" } else { "" })
            .arg(message.unwrap_or_default())
            .arg(id.to_string())
            .arg(claim.attempt())
            .arg(&self.inner.channel)
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        Ok(written == 1)
    }

    /// Renews the leases of `claims` in one script on the renewal
    /// connection (see [`RENEW`](super::scripts::RENEW)).
    pub(super) async fn renew_claims(&self, claims: &[Claim]) -> Result<Vec<bool>, StoreError> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let mut renew = self.inner.renew.key(self.leases_key());
        renew
            .arg(self.job_prefix())
            .arg(Self::ms(self.inner.lease))
            .arg(self.running_ttl());
        for claim in claims {
            renew.key(self.key(claim.id(), "job"));
            renew.arg(claim.id().to_string()).arg(claim.attempt());
        }
        let held: Vec<i64> = renew
            .invoke_async(&mut self.inner.renew_conn.clone())
            .await
            .map_err(store_error)?;
        if held.len() != claims.len() {
            return Err(StoreError::Unavailable(
                "the renewal script answered for other claims".into(),
            ));
        }
        Ok(held.into_iter().map(|h| h == 1).collect())
    }

    /// Hands a durable job back to its queue (see
    /// [`RELEASE`](super::scripts::RELEASE)).
    pub(super) async fn release_claim(&self, claim: Claim) -> Result<bool, StoreError> {
        let id = claim.id();
        let released: i64 = self
            .inner
            .release
            .key(self.key(id, "job"))
            .key(self.leases_key())
            .arg(id.to_string())
            .arg(claim.attempt())
            .arg(self.queue_prefix())
            .arg(self.running_ttl())
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        Ok(released == 1)
    }

    /// Sweeps the lapsed leases, a batch per script, on the renewal
    /// connection (see [`SWEEP`](super::scripts::SWEEP)).
    pub(super) async fn sweep_leases(&self) -> Result<Swept, StoreError> {
        let (mut requeued, mut lost) = (0, 0);
        for _ in 0..SWEEP_ROUNDS {
            let (r, l, seen): (usize, usize, usize) = self
                .inner
                .sweep
                .key(self.leases_key())
                .key(self.deliveries_key())
                .arg(self.job_prefix())
                .arg(self.queue_prefix())
                .arg(Self::ms(self.inner.ttl))
                .arg(self.tombstone_ttl())
                .arg(&self.inner.channel)
                .arg(self.running_ttl())
                .arg(ErrorCode::Lost.as_str())
                .arg(LOST_MESSAGE)
                .arg(SWEEP_BATCH)
                .invoke_async(&mut self.inner.renew_conn.clone())
                .await
                .map_err(store_error)?;
            requeued += r;
            lost += l;
            if seen < SWEEP_BATCH {
                break;
            }
        }
        Ok(Swept::new(requeued, lost))
    }
}

//! [`MemoryStore`]'s side of the [`JobStore`] contract.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::Response;

use super::entry::{Durable, Entry, Wakeups};
use super::{MemoryStore, lock, wait};
use crate::store::{
    Cancel, Claim, Claimed, CreatedOnce, DeliveryAttempt, DueDelivery, DurableJob, ErrorCode, IdempotencyKey, JobError,
    JobId, JobRecord, JobStatus, JobStore, KeyLookup, ListCursor, Lookup, OUT_OF_ATTEMPTS, Outcome, Page, StoreError,
    Swept,
};

impl JobStore for MemoryStore {
    async fn create(&self, record: JobRecord) -> Result<(), StoreError> {
        if !record.status.is_terminal() {
            self.reserve()?;
        }
        let id = record.id;
        let mut shard = self.shard(id);
        let wakeups = self.inner.insert(&mut shard, record, None);
        drop(shard);
        wakeups.wake();
        Ok(())
    }

    async fn create_once(&self, record: JobRecord, key: IdempotencyKey) -> Result<CreatedOnce, StoreError> {
        let id = record.id;
        // Each round either ends, or clears a holder that expired or left
        // (which frees the key); only racing submissions make it go round
        // again.
        for _ in 0..8 {
            self.inner.maintain();
            if let Some((holder, fingerprint)) = self.inner.keys.holder(key.scope()) {
                match self.inner.key_holder(holder, self.inner.now()) {
                    Some(_) if fingerprint != key.fingerprint() => return Ok(CreatedOnce::Mismatch),
                    Some(existing) => return Ok(CreatedOnce::Existing(existing)),
                    None => {
                        self.inner.keys.release(key.scope(), holder);
                        continue;
                    }
                }
            }
            self.reserve()?;
            let mut shard = lock(self.shard_of(id));
            if self.inner.keys.claim(key.scope(), id, key.fingerprint()).is_some() {
                // Taken meanwhile: look at the new holder.
                drop(shard);
                self.inner.unfinished.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let wakeups = self.inner.insert(&mut shard, record, Some(key.scope().to_owned()));
            drop(shard);
            wakeups.wake();
            return Ok(CreatedOnce::New);
        }
        Err(StoreError::Unavailable(
            "the idempotency key kept changing hands".into(),
        ))
    }

    async fn find_key(&self, key: &IdempotencyKey) -> Result<KeyLookup, StoreError> {
        self.inner.maintain();
        let Some((holder, fingerprint)) = self.inner.keys.holder(key.scope()) else {
            return Ok(KeyLookup::Free);
        };
        Ok(match self.inner.key_holder(holder, self.inner.now()) {
            Some(_) if fingerprint != key.fingerprint() => KeyLookup::Mismatch,
            Some(record) => KeyLookup::Existing(record),
            None => KeyLookup::Free,
        })
    }

    async fn list(&self, owner: &str, limit: usize, after: Option<ListCursor>) -> Result<Page, StoreError> {
        let cursors = self.inner.owners.page(owner, limit.saturating_add(1), after);
        let more = cursors.len() > limit;
        let mut jobs = Vec::with_capacity(limit.min(cursors.len()));
        let now = self.inner.now();
        for cursor in cursors.iter().take(limit) {
            let shard = self.shard(cursor.id);
            if let Some(entry) = shard.jobs.get(&cursor.id).filter(|e| !e.expired(now)) {
                jobs.push(entry.record(cursor.id));
            }
        }
        let next = if more {
            cursors.get(limit.saturating_sub(1)).copied()
        } else {
            None
        };
        Ok(Page::new(jobs, next))
    }

    async fn get(&self, id: JobId) -> Result<Lookup, StoreError> {
        let mut shard = self.shard(id);
        Ok(match shard.jobs.get(&id) {
            Some(entry) if entry.expired(self.inner.now()) => Lookup::Expired,
            Some(entry) => Lookup::Found(entry.record(id)),
            None => self.inner.missing(&mut shard, id),
        })
    }

    async fn start(&self, claim: Claim) -> Result<bool, StoreError> {
        let mut shard = self.shard(claim.id());
        Ok(match shard.jobs.get_mut(&claim.id()) {
            Some(entry) if entry.status == JobStatus::Pending && entry.held_by(claim) => {
                entry.status = JobStatus::Running;
                entry.touch();
                entry.started_at_ms = entry.updated_at_ms;
                true
            }
            _ => false,
        })
    }

    async fn set_progress(
        &self,
        claim: Claim,
        progress: Option<f32>,
        message: Option<String>,
    ) -> Result<bool, StoreError> {
        let mut shard = self.shard(claim.id());
        Ok(match shard.jobs.get_mut(&claim.id()) {
            Some(entry) if entry.held_by(claim) => {
                entry.progress = progress;
                entry.set_message(message);
                entry.touch();
                true
            }
            _ => false,
        })
    }

    async fn finish(&self, claim: Claim, outcome: Outcome) -> Result<bool, StoreError> {
        Ok(self.end_job(claim, |entry| entry.finish(outcome)))
    }

    fn finish_can_fail(&self) -> bool {
        false
    }

    async fn cancel(&self, id: JobId) -> Result<Cancel, StoreError> {
        let canceled = self.end_job_of_any_attempt(id, |entry| {
            entry.status = JobStatus::Canceled;
            entry.touch();
        });
        if canceled {
            return Ok(Cancel::Canceled);
        }
        let mut shard = self.shard(id);
        Ok(match shard.jobs.get(&id) {
            Some(entry) if entry.expired(self.inner.now()) => Cancel::Expired,
            Some(_) => Cancel::AlreadyTerminal,
            None => match self.inner.missing(&mut shard, id) {
                Lookup::Expired => Cancel::Expired,
                _ => Cancel::Unknown,
            },
        })
    }

    async fn delete(&self, id: JobId) -> Result<bool, StoreError> {
        let mut shard = self.shard(id);
        let removed = self.inner.remove(&mut shard, id);
        drop(shard);
        Ok(removed.map(Wakeups::wake).is_some())
    }

    async fn response(&self, id: JobId) -> Result<Option<Response<Bytes>>, StoreError> {
        let shard = self.shard(id);
        Ok(shard
            .jobs
            .get(&id)
            .filter(|entry| !entry.expired(self.inner.now()))
            .and_then(Entry::response))
    }

    fn wait_terminal(&self, id: JobId) -> impl Future<Output = Result<(), StoreError>> + Send {
        wait::WaitTerminal::new(self, id)
    }

    async fn wait_change(&self, id: JobId, seen: u64) -> Result<(), StoreError> {
        // The job as it is, and its notifier if it is still as `seen`.
        let unchanged = || {
            let mut shard = self.shard(id);
            match shard.jobs.get_mut(&id) {
                Some(entry)
                    if entry.updated_at_ms == seen
                        && !entry.status.is_terminal()
                        && !entry.expired(self.inner.now()) =>
                {
                    Some(entry.watch())
                }
                _ => None,
            }
        };
        let Some(watch) = unchanged() else { return Ok(()) };
        let changed = watch.notified();
        tokio::pin!(changed);
        // Enabled, then looked at again: a change between the two looks
        // wakes it.
        changed.as_mut().enable();
        if unchanged().is_none() {
            return Ok(());
        }
        changed.await;
        Ok(())
    }

    async fn create_durable(
        &self,
        record: JobRecord,
        durable: DurableJob,
        key: Option<IdempotencyKey>,
    ) -> Result<CreatedOnce, StoreError> {
        let (id, created_at_ms) = (record.id, record.created_at_ms);
        let queued = durable.queued;
        let record = record.with_attempt(u32::from(!queued));
        let created = match key {
            None => self.create(record).await.map(|()| CreatedOnce::New)?,
            Some(key) => self.create_once(record, key).await?,
        };
        if created == CreatedOnce::New {
            let queue = durable.queue.clone();
            if let Some(entry) = self.shard(id).jobs.get_mut(&id) {
                entry.set_durable(Durable {
                    request: durable.request,
                    queue: durable.queue,
                    max_attempts: durable.max_attempts,
                    waiting: queued,
                });
            }
            if queued {
                self.inner.queues.push(&queue, created_at_ms, id);
            }
        }
        Ok(created)
    }

    async fn claim_next(&self, queue: &str) -> Result<Option<Claimed>, StoreError> {
        // Jobs that ended while they waited are passed by.
        while let Some(id) = self.inner.queues.pop(queue) {
            let mut shard = self.shard(id);
            let Some(entry) = shard.jobs.get_mut(&id) else { continue };
            if entry.status != JobStatus::Pending {
                continue;
            }
            let next = entry.attempt.saturating_add(1);
            let Some(durable) = entry.durable_mut().filter(|d| d.waiting) else {
                continue;
            };
            durable.waiting = false;
            if next > durable.max_attempts {
                // Out of attempts (claimed and handed back as often as it
                // may): it ends here instead of running.
                drop(shard);
                let error = JobError::new(ErrorCode::Lost, OUT_OF_ATTEMPTS);
                self.end_job_of_any_attempt(id, |entry| entry.finish(Outcome::Failed(error)));
                continue;
            }
            let request = durable.request.clone();
            entry.attempt = next;
            entry.touch();
            let claim = Claim::new(id, entry.attempt);
            return Ok(Some(Claimed::new(claim, entry.record(id), request)));
        }
        Ok(None)
    }

    /// A claim lapses only with this process: every claim still current is
    /// held.
    async fn renew(&self, claims: Vec<Claim>) -> Result<Vec<bool>, StoreError> {
        Ok(claims
            .into_iter()
            .map(|claim| {
                self.shard(claim.id())
                    .jobs
                    .get(&claim.id())
                    .is_some_and(|e| e.held_by(claim))
            })
            .collect())
    }

    async fn release(&self, claim: Claim) -> Result<bool, StoreError> {
        let id = claim.id();
        let mut shard = self.shard(id);
        let Some(entry) = shard.jobs.get_mut(&id) else {
            return Ok(false);
        };
        if !entry.held_by(claim) {
            return Ok(false);
        }
        let Some(durable) = entry.durable_mut() else {
            return Ok(false);
        };
        durable.waiting = true;
        let queue = durable.queue.clone();
        entry.status = JobStatus::Pending;
        entry.started_at_ms = 0;
        entry.touch();
        let created_at_ms = entry.created_at_ms;
        drop(shard);
        self.inner.queues.push(&queue, created_at_ms, id);
        Ok(true)
    }

    /// Leases lapse only with the process that holds them, which takes
    /// this store with it: nothing is ever found.
    async fn sweep(&self) -> Result<Swept, StoreError> {
        Ok(Swept::default())
    }

    async fn claim_deliveries(&self, limit: usize, hold: Duration) -> Result<Vec<DueDelivery>, StoreError> {
        Ok(self.claim_due_deliveries(limit, hold))
    }

    async fn record_delivery(&self, id: JobId, token: u32, attempt: DeliveryAttempt) -> Result<bool, StoreError> {
        Ok(self.record_attempt(id, token, attempt))
    }
}

//! The commands of [`RedisStore`](super::RedisStore) that its operations
//! share: key names, times to live, the create and end scripts, the
//! record's read, and how Redis errors become store errors.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use redis::RedisError;

use super::codec::FIELDS;
use super::connection::Connection;
use super::{MAX_MS, RedisStore};
use crate::store::stored_http::encode_headers;
use crate::store::{
    Claim, DurableJob, IdempotencyKey, JobId, JobRecord, JobStatus, ListCursor, Outcome, StoreError, unix_ms,
};

impl RedisStore {
    /// The key `what` (`job` or `gone`) of job `id`: `{ns}:what:id`.
    pub(super) fn key(&self, id: JobId, what: &str) -> String {
        format!("{}{}:{}", self.job_prefix(), what, id)
    }

    /// What every key of the namespace begins with, `{ns}:`: the scripts
    /// that deal with many jobs build job keys from it (`{ns}:job:<id>`,
    /// `{ns}:gone:<id>`). One hash tag for the whole namespace puts every
    /// key a script touches in one slot of a Redis Cluster.
    pub(super) fn job_prefix(&self) -> String {
        format!("{{{}}}:", self.inner.namespace)
    }

    /// The sorted set of an owner's jobs (members: list cursors, which sort
    /// by creation time then id).
    pub(super) fn owner_index(&self, owner: &str) -> String {
        format!("{{{}}}:owner:{}", self.inner.namespace, owner)
    }

    /// The name that stands for a key a script is not given (no owner
    /// index, no idempotency key, no queue): `{ns}:absent`, in the
    /// namespace's slot, never written.
    pub(super) fn absent_key(&self) -> String {
        format!("{}absent", self.job_prefix())
    }

    /// The sorted set of every lease, `{ns}:leases`: members are job ids,
    /// scores the leases' expiry in ms by the server's clock.
    pub(super) fn leases_key(&self) -> String {
        format!("{{{}}}:leases", self.inner.namespace)
    }

    /// The sorted set of callback deliveries due, `{ns}:deliveries`:
    /// members are job ids, scores their due time in ms by the server's
    /// clock.
    pub(super) fn deliveries_key(&self) -> String {
        format!("{{{}}}:deliveries", self.inner.namespace)
    }

    /// What every queue's key begins with, `{ns}:queue:`; a queue is the
    /// sorted set of the ids waiting in it, scored with their creation
    /// time.
    pub(super) fn queue_prefix(&self) -> String {
        format!("{{{}}}:queue:", self.inner.namespace)
    }

    /// The bound below which the create script trims an owner index, for a
    /// job created at `created_at_ms`: `(` and the creation time, in the
    /// members' 16 hex digits, of a job created `ttl + tombstone_ttl` ago.
    /// Such a job has expired unless it ran longer than `tombstone_ttl`
    /// (24 h by default) before ending: the slack a long run gets.
    pub(super) fn owner_index_trim_bound(&self, created_at_ms: u64) -> String {
        format!("({:016x}", created_at_ms.saturating_sub(self.tombstone_ttl()))
    }

    /// The key of the string that holds an idempotency key,
    /// `{ns}:key:<scope>`; its value is `"<id> <fingerprint>"` of its job.
    pub(super) fn idempotency_key(&self, key: &IdempotencyKey) -> String {
        format!("{{{}}}:key:{}", self.inner.namespace, key.scope())
    }

    /// Runs the create script; `Some(holder)` when the idempotency key is
    /// taken (`"<id> <fingerprint>"`). A durable job is written with its
    /// request, queue and attempts; a queued one waits in its queue
    /// (attempt 0), any other is the caller's attempt 1 and takes its
    /// lease. Fails with [`StoreError::Full`] when the queue is full.
    pub(super) async fn create_job(
        &self,
        record: &JobRecord,
        key: Option<&IdempotencyKey>,
        durable: Option<&DurableJob>,
    ) -> Result<Option<String>, StoreError> {
        let id = record.id;
        let queued = durable.is_some_and(|d| d.queued);
        let mut fields: Vec<(&str, Vec<u8>)> = vec![
            ("st", record.status.as_str().into()),
            ("c", record.created_at_ms.to_string().into()),
            ("u", record.updated_at_ms.to_string().into()),
            ("at", if queued { "0" } else { "1" }.into()),
        ];
        if let Some(s) = record.started_at_ms {
            fields.push(("s", s.to_string().into()));
        }
        if let Some(p) = record.progress {
            fields.push(("p", p.to_string().into()));
        }
        if let Some(m) = &record.message {
            fields.push(("m", m.clone().into()));
        }
        if let Some(o) = &record.owner {
            fields.push(("o", o.clone().into()));
        }
        if let Some(callback) = &record.callback {
            fields.extend([
                ("cu", callback.url.clone().into()),
                ("cs", callback.state.as_str().into()),
                ("cn", callback.attempts.to_string().into()),
            ]);
        }
        if let Some(durable) = durable {
            let request = &durable.request;
            fields.extend([
                ("dq", durable.queue.clone().into()),
                ("dx", durable.max_attempts.to_string().into()),
                ("qm", request.method().as_str().into()),
                ("qu", request.uri().to_string().into()),
                ("qh", encode_headers(request.headers())),
                ("qb", request.body().to_vec()),
            ]);
        }
        let owner_index = record.owner.as_deref().map(|o| self.owner_index(o));
        let idempotency_key = key.map(|k| self.idempotency_key(k));
        let queue = durable
            .filter(|d| d.queued)
            .map(|d| format!("{}{}", self.queue_prefix(), d.queue));
        let member = ListCursor::new(record.created_at_ms, id).to_string();
        let trim = self.owner_index_trim_bound(record.created_at_ms);
        // A key the job does not have is named by a placeholder of the
        // namespace, never written: an empty name would hash to slot 0, in
        // another Cluster slot than the rest.
        let absent = self.absent_key();
        let mut create = self.inner.create.key(self.key(id, "job"));
        create
            .key(self.key(id, "gone"))
            .key(owner_index.as_deref().unwrap_or(&absent))
            .key(idempotency_key.as_deref().unwrap_or(&absent))
            .key(self.leases_key())
            .key(queue.as_deref().unwrap_or(&absent))
            .key(self.deliveries_key())
            .arg(self.running_ttl())
            .arg(Self::ms(self.inner.lease))
            .arg(member)
            .arg(if owner_index.is_some() { "1" } else { "" })
            .arg(if key.is_some() { "1" } else { "" })
            .arg(key.map_or("", IdempotencyKey::fingerprint))
            .arg(id.to_string())
            .arg(trim)
            .arg(if queued { "1" } else { "" })
            .arg(self.inner.max_queued)
            .arg(if record.status.is_terminal() { "" } else { "1" })
            .arg(fields);
        // A create whose reply was lost (a timeout, a dropped connection)
        // may have run: answering an error would leave a job created that
        // nobody runs, found by the client's retry with the same key. The
        // script is idempotent for this id, so it is run again until Redis
        // answers, a few times with a short backoff.
        let mut backoff = Duration::from_millis(50);
        let mut answer: Result<String, RedisError> = create.invoke_async(&mut self.conn()).await;
        for _ in 1..CREATE_TRIES {
            match &answer {
                Err(e) if outcome_unknown(e) => {}
                _ => break,
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            answer = create.invoke_async(&mut self.conn()).await;
        }
        match answer {
            Ok(answer) if answer == "new" => Ok(None),
            Ok(answer) if answer == "full" => Err(StoreError::Full),
            Ok(holder) => Ok(Some(holder)),
            Err(e) => {
                if outcome_unknown(&e) {
                    // Redis stayed out of reach: remove the job in case one
                    // of the tries created it. Best effort; if this fails
                    // too, the job left behind has a lease nobody renews, so
                    // the next sweep ends it `lost` (or a queued one waits
                    // for a claim, as any other).
                    let _ = self.delete_job(id).await;
                }
                Err(store_error(e))
            }
        }
    }

    /// Runs the delete script for `id`: its hash, tombstone, lease and
    /// queue entry go, and its waiters are woken. Answers 1 when the job
    /// was there.
    pub(super) async fn delete_job(&self, id: JobId) -> Result<i64, RedisError> {
        self.inner
            .delete
            .key(self.key(id, "job"))
            .key(self.key(id, "gone"))
            .key(self.leases_key())
            .key(self.deliveries_key())
            .arg(&self.inner.channel)
            .arg(id.to_string())
            .arg(self.queue_prefix())
            .invoke_async(&mut self.conn())
            .await
    }

    /// A handle on the shared connection (cheap: the manager is a handle).
    pub(super) fn conn(&self) -> Connection {
        self.inner.conn.clone()
    }

    /// A duration as the milliseconds of a `PX` or `PEXPIRE`: at least 1
    /// (Redis refuses 0) and at most [`MAX_MS`].
    pub(super) fn ms(duration: Duration) -> u64 {
        u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).clamp(1, MAX_MS)
    }

    /// The time to live of a job's hash while it runs or waits, and of the
    /// lease set and queues: longer than a lease, so that a sweep finds a
    /// lost job and ends it (both capped at [`MAX_MS`], where "longer"
    /// gives way).
    pub(super) fn running_ttl(&self) -> u64 {
        Self::ms(self.inner.ttl.saturating_add(self.inner.lease))
    }

    /// The time to live of an ended job's tombstone: it outlives the job by
    /// `tombstone_ttl`.
    pub(super) fn tombstone_ttl(&self) -> u64 {
        Self::ms(self.inner.ttl.saturating_add(self.inner.tombstone_ttl))
    }

    /// Runs the end script: a `finish` by `claim` (fenced: only while the
    /// claim holds the job) or a `cancel` (`claim` is `None`). Answers
    /// `ended`, `terminal`, `expired`, `unknown` or (a finish whose claim
    /// does not hold the job) `fenced`.
    pub(super) async fn end_job(
        &self,
        id: JobId,
        claim: Option<Claim>,
        status: JobStatus,
        outcome: Option<&Outcome>,
    ) -> Result<String, StoreError> {
        let (rs, rh, rb, error) = match outcome {
            Some(Outcome::Response(response)) => (
                response.status().as_u16().to_string(),
                encode_headers(response.headers()),
                response.body().to_vec(),
                outcome.and_then(Outcome::error),
            ),
            Some(Outcome::Failed(error)) => (String::new(), Vec::new(), Vec::new(), Some(error.clone())),
            None => (String::new(), Vec::new(), Vec::new(), None),
        };
        // The code as its word (`ErrorCode::as_str`), as it always was.
        let (ec, em) = error.map_or((String::new(), String::new()), |e| (e.code.to_string(), e.message));
        self.inner
            .end
            .key(self.key(id, "job"))
            .key(self.key(id, "gone"))
            .key(self.leases_key())
            .key(self.deliveries_key())
            .arg(if claim.is_some() { "finish" } else { "cancel" })
            .arg(unix_ms())
            .arg(Self::ms(self.inner.ttl))
            .arg(self.tombstone_ttl())
            .arg(&self.inner.channel)
            .arg(id.to_string())
            .arg(status.as_str())
            .arg(rs)
            .arg(rh)
            .arg(rb)
            .arg(ec)
            .arg(em)
            .arg(claim.map_or(0, |c| c.attempt()))
            .arg(self.queue_prefix())
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)
    }

    /// Reads a job: its record fields, and whether its tombstone exists.
    pub(super) async fn read(&self, id: JobId) -> Result<(Vec<Option<Vec<u8>>>, bool), StoreError> {
        redis::pipe()
            .cmd("HMGET")
            .arg(self.key(id, "job"))
            .arg(&FIELDS[..])
            .cmd("EXISTS")
            .arg(self.key(id, "gone"))
            .query_async(&mut self.conn())
            .await
            .map_err(store_error)
    }
}

/// How many times a create is run before the store gives up on a Redis
/// that does not answer: with the backoff (50, 100, 200 ms), the tries span
/// about four command timeouts plus 350 ms.
const CREATE_TRIES: u32 = 4;

/// Whether a command that failed with `e` may have run: its reply timed out
/// or its connection failed. A reply that is an error (`OOM`, a script
/// error) means Redis answered, and running it again would answer the same.
fn outcome_unknown(e: &RedisError) -> bool {
    e.is_timeout() || e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()
}

/// Locks `mutex`, through poisoning: every critical section leaves its data
/// consistent.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A Redis error as [`StoreError::Unavailable`].
pub(super) fn unavailable(e: RedisError) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

/// A Redis error as a store error: `OOM` (`maxmemory` reached) is
/// [`StoreError::Full`], anything else [`StoreError::Unavailable`].
pub(super) fn store_error(e: RedisError) -> StoreError {
    if e.code() == Some("OOM") {
        StoreError::Full
    } else {
        unavailable(e)
    }
}

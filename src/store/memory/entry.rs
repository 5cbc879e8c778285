//! A job as [`MemoryStore`](super::MemoryStore) keeps it, its waiters, and
//! the wake-ups that are fired once the shard's lock is released.

use std::sync::Arc;
use std::task::Waker;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use slab::Slab;
use tokio::sync::Notify;

use crate::store::{Claim, DeliveryState, JobCallback, JobError, JobId, JobRecord, JobStatus, Outcome, unix_ms};

/// What a finished job counts against the store's byte budget besides its
/// response and texts: the entry, its place in the map and in the expiry
/// queue, and a tombstone later. `benches/memory.rs` measures about 180
/// bytes a finished job besides its body; the rest is a margin for the
/// allocator and for the map's growth.
const ENTRY_BYTES: usize = 320;

/// A job as the store keeps it: a [`JobRecord`] and its stored response,
/// packed (about a hundred bytes, inline in the map), since a store holds
/// many of them. What most jobs lack (message, error, owner, key, extra
/// waiters) is boxed apart, and the stored headers are a slice rather than a
/// `HeaderMap`.
pub(super) struct Entry {
    pub(super) created_at_ms: u64,
    pub(super) updated_at_ms: u64,
    /// When the job started running; 0 while it has not.
    pub(super) started_at_ms: u64,
    /// When the job expires, in the store's ticks; 0 while it has not
    /// ended. Also names its place in the expiry queue.
    pub(super) expires_at: u64,
    /// What the job counts against the byte budget once it ended.
    pub(super) bytes: usize,
    pub(super) progress: Option<f32>,
    pub(super) result_status: Option<u16>,
    pub(super) status: JobStatus,
    /// The attempt under way or last made (see [`JobRecord::attempt`]).
    pub(super) attempt: u32,
    /// Whether `headers` and `body` hold a stored response (with status
    /// `result_status`).
    has_response: bool,
    /// The first task waiting for the job to end (most often the job's
    /// runner), [`WaiterKey`] 0; the others are in `extra`. Taken when it
    /// ends.
    waiter: Option<Waker>,
    extra: Option<Box<Extra>>,
    headers: Box<[(HeaderName, HeaderValue)]>,
    body: Bytes,
}

/// The parts of a job that most jobs do not have.
#[derive(Default)]
struct Extra {
    message: Option<String>,
    error: Option<JobError>,
    owner: Option<String>,
    /// The idempotency key (scope) this job holds, if any.
    key: Option<String>,
    /// Waiters after the first (long polls, as a rule), each removed in
    /// O(1) by its key.
    waiters: Slab<Waker>,
    /// What a durable job keeps to run again.
    durable: Option<Durable>,
    /// The completion callback and its delivery.
    callback: Option<JobCallback>,
    /// Notified at every change of the job, for the event streams that
    /// watch it; made by the first of them.
    watch: Option<Arc<Notify>>,
}

impl Drop for Extra {
    /// A job that leaves the store (deleted, expired) wakes its watchers,
    /// who find it gone.
    fn drop(&mut self) {
        if let Some(watch) = &self.watch {
            watch.notify_waiters();
        }
    }
}

/// A durable job's request, queue and attempts (spent by claims: its
/// leases lapse only with the process, which takes the store with it).
pub(super) struct Durable {
    pub(super) request: Request<Bytes>,
    pub(super) queue: String,
    pub(super) max_attempts: u32,
    /// Whether it waits in its queue: no attempt holds it meanwhile, not
    /// even the one that was released.
    pub(super) waiting: bool,
}

impl Extra {
    fn is_empty(&self) -> bool {
        self.message.is_none()
            && self.error.is_none()
            && self.owner.is_none()
            && self.key.is_none()
            && self.waiters.is_empty()
            && self.durable.is_none()
            && self.watch.is_none()
            && self.callback.is_none()
    }
}

/// Where a waiter's waker is kept: 0 for the inline slot, `n + 1` for slot
/// `n` of the extra waiters.
pub(super) type WaiterKey = usize;

/// Wakers taken out of an entry under its shard's lock, to be woken after
/// the lock is released (a woken task on another thread would otherwise
/// find the lock still held).
#[derive(Default)]
#[must_use = "wakers must be woken once the lock is released"]
pub(super) struct Wakeups {
    first: Option<Waker>,
    rest: Vec<Waker>,
}

impl Wakeups {
    pub(super) fn add(&mut self, mut other: Wakeups) {
        if self.first.is_none() {
            self.first = other.first.take();
        }
        self.rest.extend(other.first);
        self.rest.append(&mut other.rest);
    }

    pub(super) fn wake(self) {
        if let Some(waker) = self.first {
            waker.wake();
        }
        for waker in self.rest {
            waker.wake();
        }
    }
}

impl Entry {
    pub(super) fn new(record: JobRecord, key: Option<String>) -> Self {
        let extra = Extra {
            message: record.message,
            error: record.error,
            owner: record.owner,
            key,
            waiters: Slab::new(),
            durable: None,
            watch: None,
            callback: record.callback,
        };
        Self {
            created_at_ms: record.created_at_ms,
            updated_at_ms: record.updated_at_ms,
            started_at_ms: record.started_at_ms.unwrap_or(0),
            expires_at: 0,
            bytes: 0,
            progress: record.progress,
            result_status: record.result_status,
            status: record.status,
            attempt: record.attempt,
            has_response: false,
            waiter: None,
            extra: (!extra.is_empty()).then(|| Box::new(extra)),
            headers: Box::default(),
            body: Bytes::new(),
        }
    }

    /// The job's record, as the store was given it and changed it since.
    pub(super) fn record(&self, id: JobId) -> JobRecord {
        let extra = self.extra.as_deref();
        // A literal rather than `JobRecord::new` (this crate may): a field
        // added to the record fails to compile here until it is kept.
        JobRecord {
            id,
            status: self.status,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            started_at_ms: (self.started_at_ms != 0).then_some(self.started_at_ms),
            progress: self.progress,
            message: extra.and_then(|e| e.message.clone()),
            result_status: self.result_status,
            error: extra.and_then(|e| e.error.clone()),
            owner: extra.and_then(|e| e.owner.clone()),
            attempt: self.attempt,
            callback: extra.and_then(|e| e.callback.clone()),
        }
    }

    /// The completion callback, if the job has one.
    pub(super) fn callback(&self) -> Option<&JobCallback> {
        self.extra.as_deref().and_then(|e| e.callback.as_ref())
    }

    /// The completion callback, to record an attempt.
    pub(super) fn callback_mut(&mut self) -> Option<&mut JobCallback> {
        self.extra.as_deref_mut().and_then(|e| e.callback.as_mut())
    }

    /// Whether the job's callback is yet to be delivered: then it does not
    /// expire (its delivery would be lost with it).
    pub(super) fn delivery_pending(&self) -> bool {
        self.callback().is_some_and(|c| c.state == DeliveryState::Pending)
    }

    /// Keeps what a durable job needs to run again.
    pub(super) fn set_durable(&mut self, durable: Durable) {
        self.extra_mut().durable = Some(durable);
    }

    /// What a durable job keeps to run again, to change.
    pub(super) fn durable_mut(&mut self) -> Option<&mut Durable> {
        self.extra.as_deref_mut().and_then(|e| e.durable.as_mut())
    }

    /// What a durable job keeps to run again; `None` for other jobs.
    pub(super) fn durable(&self) -> Option<&Durable> {
        self.extra.as_deref().and_then(|e| e.durable.as_ref())
    }

    fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    pub(super) fn owner(&self) -> Option<&str> {
        self.extra.as_deref().and_then(|e| e.owner.as_deref())
    }

    pub(super) fn key(&self) -> Option<&str> {
        self.extra.as_deref().and_then(|e| e.key.as_deref())
    }

    /// Whether `claim` holds this job: it has not ended and `claim` is its
    /// current attempt. Attempt 0 (a durable job waiting for its first
    /// claim) is nobody's: claims count from 1.
    pub(super) fn held_by(&self, claim: Claim) -> bool {
        !self.status.is_terminal()
            && claim.attempt() != 0
            && self.attempt == claim.attempt()
            && self.durable().is_none_or(|d| !d.waiting)
    }

    /// Marks the job changed now (as [`JobRecord::touch`]), at least a
    /// millisecond past its last change (event streams tell changes by
    /// it), and wakes its watchers.
    pub(super) fn touch(&mut self) {
        self.updated_at_ms = unix_ms().max(self.updated_at_ms.saturating_add(1));
        if let Some(watch) = self.extra.as_deref().and_then(|e| e.watch.as_ref()) {
            watch.notify_waiters();
        }
    }

    /// The notifier of the job's changes (see [`touch`](Self::touch)).
    pub(super) fn watch(&mut self) -> Arc<Notify> {
        Arc::clone(self.extra_mut().watch.get_or_insert_with(Arc::default))
    }

    pub(super) fn set_message(&mut self, message: Option<String>) {
        match message {
            Some(message) => self.extra_mut().message = Some(message),
            None => {
                if let Some(extra) = &mut self.extra {
                    extra.message = None;
                }
            }
        }
    }

    /// Records a terminal outcome, as [`JobRecord::finish`] does, and keeps
    /// its response.
    pub(super) fn finish(&mut self, outcome: Outcome) {
        self.status = outcome.status();
        let error = outcome.error();
        match error {
            Some(error) => self.extra_mut().error = Some(error),
            None => {
                if let Some(extra) = &mut self.extra {
                    extra.error = None;
                }
            }
        }
        match outcome {
            Outcome::Response(response) => {
                let (parts, body) = response.into_parts();
                self.result_status = Some(parts.status.as_u16());
                self.has_response = true;
                self.headers = pack_headers(parts.headers);
                self.body = body;
            }
            Outcome::Failed(_) => self.result_status = None,
        }
        self.touch();
    }

    /// What the job weighs once it ended: its response, its texts and the
    /// store's own bookkeeping.
    pub(super) fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        let texts = self.extra.as_deref().map_or(0, |e| {
            e.message.as_ref().map_or(0, String::len)
                + e.error.as_ref().map_or(0, |e| e.code.as_str().len() + e.message.len())
                + e.owner.as_ref().map_or(0, String::len)
                + e.key.as_ref().map_or(0, String::len)
                + e.durable.as_ref().map_or(0, |d| d.request.body().len() + d.queue.len())
                + e.callback.as_ref().map_or(0, |c| c.url.len())
        });
        ENTRY_BYTES
            .saturating_add(self.body.len())
            .saturating_add(headers)
            .saturating_add(texts)
    }

    pub(super) fn response(&self) -> Option<Response<Bytes>> {
        if !self.has_response {
            return None;
        }
        let status = StatusCode::from_u16(self.result_status?).ok()?;
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        for (name, value) in self.headers.iter() {
            headers.append(name.clone(), value.clone());
        }
        let mut response = Response::new(self.body.clone());
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Some(response)
    }

    pub(super) fn expired(&self, now: u64) -> bool {
        self.expires_at != 0 && self.expires_at <= now && !self.delivery_pending()
    }

    /// Takes every waiter out, to be woken once the lock is released.
    pub(super) fn take_waiters(&mut self) -> Wakeups {
        let rest = match &mut self.extra {
            Some(extra) if !extra.waiters.is_empty() => extra.waiters.drain().collect(),
            _ => Vec::new(),
        };
        Wakeups {
            first: self.waiter.take(),
            rest,
        }
    }

    pub(super) fn add_waiter(&mut self, waker: Waker) -> WaiterKey {
        if self.waiter.is_none() {
            self.waiter = Some(waker);
            0
        } else {
            self.extra_mut().waiters.insert(waker) + 1
        }
    }

    /// The waker kept under `key`, if any.
    fn waiter(&self, key: WaiterKey) -> Option<&Waker> {
        match key {
            0 => self.waiter.as_ref(),
            n => self.extra.as_ref().and_then(|e| e.waiters.get(n - 1)),
        }
    }

    /// Whether `waker` is the one kept under `key`: a waiter of a job that
    /// ended, or was replaced under the same id, finds its place gone or
    /// taken by another.
    pub(super) fn holds_waiter(&self, key: WaiterKey, waker: &Waker) -> bool {
        self.waiter(key).is_some_and(|kept| kept.will_wake(waker))
    }

    /// Replaces the waker registered under `key` (the task moved), in O(1).
    pub(super) fn replace_waiter(&mut self, key: WaiterKey, waker: Waker) {
        let slot = match key {
            0 => self.waiter.as_mut(),
            n => self.extra.as_mut().and_then(|e| e.waiters.get_mut(n - 1)),
        };
        if let Some(slot) = slot {
            *slot = waker;
        }
    }

    /// Removes `waker` from under `key`, in O(1); nothing when another
    /// waker is kept there (its own was taken meanwhile).
    pub(super) fn remove_waiter(&mut self, key: WaiterKey, waker: &Waker) {
        if !self.holds_waiter(key, waker) {
            return;
        }
        match key {
            0 => self.waiter = None,
            n => {
                if let Some(extra) = &mut self.extra {
                    extra.waiters.try_remove(n - 1);
                }
            }
        }
    }
}

/// A stored response's headers, as a slice (a `HeaderMap` reserves room for
/// several times as many).
fn pack_headers(headers: HeaderMap) -> Box<[(HeaderName, HeaderValue)]> {
    let mut packed = Vec::with_capacity(headers.len());
    let mut last: Option<HeaderName> = None;
    for (name, value) in headers {
        // A name comes once, before all its values.
        if let Some(name) = name {
            last = Some(name);
        }
        if let Some(name) = &last {
            packed.push((name.clone(), value));
        }
    }
    packed.into_boxed_slice()
}

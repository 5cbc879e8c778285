//! The store's background work: waking local waiters when jobs end
//! anywhere, and renewing the leases of the jobs this replica runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::{Client, RedisError};
use tokio::sync::Notify;

use super::codec::parse_status;
use super::{Inner, MAX_DURATION, RedisStore, lock};
use crate::store::{JobId, JobStatus};

/// The keys besides its own that a job this replica runs keeps alive.
#[derive(Debug, Clone, Default)]
pub(super) struct Owned {
    /// The owner's index of jobs, for an owned job.
    pub(super) owner_index: Option<String>,
    /// The idempotency key the job holds, if any.
    pub(super) idempotency_key: Option<String>,
}

/// Local waiters by job id, woken by the listener.
#[derive(Default)]
pub(super) struct Waiters {
    /// One notifier per job that has local waiters.
    map: Mutex<HashMap<JobId, Arc<Notify>>>,
}

/// One waiter's registration; removed from the map with the last waiter.
pub(super) struct Waiter<'a> {
    /// Where it is registered.
    waiters: &'a Waiters,
    /// The job it waits for.
    id: JobId,
    /// Notified when the job ends (or may have: after a reconnection).
    pub(super) notify: Arc<Notify>,
}

impl Waiters {
    /// Registers a waiter of `id`, sharing the job's notifier with the
    /// others.
    pub(super) fn register(&self, id: JobId) -> Waiter<'_> {
        let notify = Arc::clone(lock(&self.map).entry(id).or_default());
        Waiter {
            waiters: self,
            id,
            notify,
        }
    }

    /// Wakes the waiters of `id`.
    fn wake(&self, id: JobId) {
        if let Some(notify) = lock(&self.map).get(&id) {
            notify.notify_waiters();
        }
    }

    /// Wakes every waiter, to look again.
    fn wake_all(&self) {
        for notify in lock(&self.map).values() {
            notify.notify_waiters();
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut map = lock(&self.waiters.map);
        // The map's reference and ours: no other waiter is left.
        if map.get(&self.id).is_some_and(|n| Arc::strong_count(n) <= 2) {
            map.remove(&self.id);
        }
    }
}

/// How the listener tells that its connection died without saying so.
#[derive(Debug, Clone, Copy)]
pub(super) struct Liveness {
    /// How often the listener sends `PING` on its subscription.
    pub(super) interval: Duration,
    /// How long a `PING`, a connection or a subscription may take before
    /// the connection is taken for dead.
    pub(super) bound: Duration,
}

/// Listens for ended jobs on the store's channel and wakes local waiters;
/// reconnects with backoff, and wakes everyone after a reconnection, since
/// messages sent meanwhile were missed.
///
/// A connection that dies silently (a frozen Redis, a network partition:
/// no RST, no EOF) would leave the listener waiting forever and every
/// waiter woken only by its own periodic re-read. So the listener sends
/// `PING` every `liveness.interval` and drops a connection whose answer
/// takes longer than `liveness.bound`; connecting and subscribing are
/// bounded alike, since they too can hang on such a connection.
pub(super) async fn listen(
    client: Client,
    channel: String,
    waiters: Arc<Waiters>,
    subscribed: tokio::sync::oneshot::Sender<()>,
    liveness: Liveness,
) {
    let mut subscribed = Some(subscribed);
    let mut delay = Duration::from_millis(50);
    loop {
        let connect = async {
            let mut pubsub = client.get_async_pubsub().await.ok()?;
            pubsub.subscribe(&channel).await.ok()?;
            Some(pubsub)
        };
        if let Ok(Some(pubsub)) = tokio::time::timeout(liveness.bound, connect).await {
            delay = Duration::from_millis(50);
            if let Some(tx) = subscribed.take() {
                let _ = tx.send(());
            }
            waiters.wake_all();
            let (mut sink, messages) = pubsub.split();
            relay(messages, &mut sink, &waiters, liveness).await;
        }
        waiters.wake_all();
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Wakes the waiters of the jobs named on `messages` until the connection
/// closes or a `PING` goes unanswered for `liveness.bound`. Messages that
/// arrive during a `PING` wait in the stream's buffer.
async fn relay(mut messages: PubSubStream, sink: &mut PubSubSink, waiters: &Waiters, liveness: Liveness) {
    // An interval of zero panics.
    let mut ticker = tokio::time::interval(liveness.interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: the connection was just proven alive.
    ticker.tick().await;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return };
                if let Some(id) = message
                    .get_payload::<String>()
                    .ok()
                    .and_then(|p| p.parse::<JobId>().ok())
                {
                    waiters.wake(id);
                }
            }
            _ = ticker.tick() => {
                let ping = sink.ping::<redis::Value>();
                if !matches!(tokio::time::timeout(liveness.bound, ping).await, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}

/// Renews the leases of the jobs this replica runs, every third of a lease,
/// in one pipeline; forgets jobs that ended. The period is kept between
/// 1 ms (a zero sleep would spin) and [`MAX_DURATION`] (so that the next
/// deadline never overflows an `Instant`), whatever the lease.
///
/// A renewal that fails (a timeout, Redis out of reach) is tried again
/// after a third of the period rather than a whole one, so that a single
/// failure leaves two thirds of the lease to spare; it never drops a job
/// from `owned`: only an answer that the job ended or is gone does.
/// A job enters `owned` only once its create succeeded, so "gone" is never
/// a job whose create has not run yet.
pub(super) async fn renew_leases(store: Weak<Inner>) {
    let period = match store.upgrade() {
        Some(inner) => (inner.lease / 3).clamp(Duration::from_millis(1), MAX_DURATION),
        None => return,
    };
    let retry = (period / 3).max(Duration::from_millis(1));
    let mut next = tokio::time::Instant::now() + period;
    loop {
        tokio::time::sleep_until(next).await;
        next = tokio::time::Instant::now() + period;
        let Some(inner) = store.upgrade() else { return };
        let store = RedisStore { inner };
        let owned: Vec<(JobId, Owned)> = lock(&store.inner.owned)
            .iter()
            .map(|(id, o)| (*id, o.clone()))
            .collect();
        if owned.is_empty() {
            continue;
        }
        let ttl = store.running_ttl();
        let lease = RedisStore::ms(store.inner.lease);
        // One pipeline: the script is loaded first (a restarted Redis has
        // lost it), then invoked by its digest for each job.
        let mut pipe = redis::pipe();
        pipe.load_script(&store.inner.renew).ignore();
        for (id, extra) in &owned {
            let mut renew = store.inner.renew.key(store.key(*id, "job"));
            renew.key(store.key(*id, "lease"));
            // The owner index and the idempotency key live as long as the job.
            for key in [&extra.owner_index, &extra.idempotency_key].into_iter().flatten() {
                renew.key(key);
            }
            renew.arg(ttl).arg(lease);
            pipe.invoke_script(&renew);
        }
        let ids: Vec<JobId> = owned.iter().map(|(id, _)| *id).collect();
        let Ok(states) = pipe
            .query_async::<Vec<Option<String>>>(&mut store.inner.renew_conn.clone())
            .await
        else {
            next = tokio::time::Instant::now() + retry;
            continue;
        };
        let ended: Vec<JobId> = ids
            .iter()
            .zip(states)
            .filter(|(_, st)| st.as_deref().and_then(parse_status).is_none_or(JobStatus::is_terminal))
            .map(|(id, _)| *id)
            .collect();
        if ended.is_empty() {
            continue;
        }
        let mut cleanup = redis::pipe();
        for id in &ended {
            lock(&store.inner.owned).remove(id);
            cleanup.cmd("DEL").arg(store.key(*id, "lease")).ignore();
        }
        let _: Result<(), RedisError> = cleanup.query_async(&mut store.inner.renew_conn.clone()).await;
    }
}

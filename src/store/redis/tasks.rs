//! The store's background work: waking local waiters when jobs end
//! anywhere. (Leases are the layer's to renew, with
//! [`JobStore::renew`](crate::store::JobStore::renew): it knows which
//! claims it holds.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::Client;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::Notify;

use super::lock;
use crate::store::JobId;

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
/// reconnects with backoff (to the next node, on a cluster), and wakes everyone after a reconnection, since
/// messages sent meanwhile were missed.
///
/// A connection that dies silently (a frozen Redis, a network partition:
/// no RST, no EOF) would leave the listener waiting forever and every
/// waiter woken only by its own periodic re-read. So the listener sends
/// `PING` every `liveness.interval` and drops a connection whose answer
/// takes longer than `liveness.bound`; connecting and subscribing are
/// bounded alike, since they too can hang on such a connection.
pub(super) async fn listen(
    clients: Vec<Client>,
    channel: String,
    waiters: Arc<Waiters>,
    subscribed: tokio::sync::oneshot::Sender<()>,
    liveness: Liveness,
) {
    let mut subscribed = Some(subscribed);
    let mut delay = Duration::from_millis(50);
    // A cluster's nodes in turn: a message published on any reaches all.
    let mut next = 0;
    loop {
        let Some(client) = clients.get(next % clients.len().max(1)) else {
            return;
        };
        next = next.wrapping_add(1);
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

//! The store's background work: waking local waiters when jobs end
//! anywhere. (Leases are the layer's to renew, with
//! [`JobStore::renew`](crate::store::JobStore::renew): it knows which
//! claims it holds.)

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::Client;
use redis::aio::{PubSubSink, PubSubStream};

use crate::store::waiters::Waiters;

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
                if let Ok(payload) = message.get_payload::<String>() {
                    waiters.announce(&payload);
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

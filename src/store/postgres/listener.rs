//! The store's one `LISTEN` connection: it wakes this process's waiters
//! (long polls, and runners whose job was canceled elsewhere) when a job
//! ends anywhere.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::oneshot;

use crate::store::waiters::Waiters;

/// How often the listener checks that its connection answers, since one
/// that died silently (a frozen server, a partition) tells nothing.
const PING_EVERY: Duration = Duration::from_secs(1);

/// The longest pause between two tries to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Listens on `channel` for the ids of ended jobs and wakes their waiters.
///
/// A lost connection is replaced (with backoff), and every waiter is woken
/// once the new one listens: notifications sent meanwhile were missed, so
/// each waiter reads its job again. The connection is pinged every
/// [`PING_EVERY`], within `bound`, so that a silent death is found too.
/// `listening` is told when the first connection listens.
pub(super) async fn listen(
    pool: PgPool,
    channel: String,
    waiters: Arc<Waiters>,
    listening: oneshot::Sender<()>,
    bound: Duration,
) {
    let mut listening = Some(listening);
    let mut backoff = Duration::from_millis(20);
    loop {
        // A pool of one connection of its own, made with the store's
        // options: the listener never holds a connection of the store's
        // (or the application's) pool, and a dead one it drops (whose
        // `UNLISTEN` may hang on a frozen server) leaves with its own pool.
        let own = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(bound)
            .connect_lazy_with(PgConnectOptions::clone(&pool.connect_options()));
        let connected = tokio::time::timeout(bound, async {
            let mut listener = PgListener::connect_with(&own).await?;
            listener.listen(&channel).await?;
            Ok::<_, sqlx::Error>(listener)
        })
        .await;
        let Ok(Ok(mut listener)) = connected else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        };
        backoff = Duration::from_millis(20);
        match listening.take() {
            Some(tell) => {
                let _ = tell.send(());
            }
            None => waiters.wake_all(),
        }
        relay(&mut listener, &waiters, bound).await;
        // Whatever ended while no connection listened was missed.
        waiters.wake_all();
    }
}

/// Wakes the waiters of each notified id until the connection is lost or
/// stops answering its ping.
async fn relay(listener: &mut PgListener, waiters: &Waiters, bound: Duration) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // `try_recv` is cancel-safe: a ping never loses a notification.
            received = listener.try_recv() => match received {
                Ok(Some(notification)) => {
                    waiters.announce(notification.payload());
                }
                Ok(None) | Err(_) => return,
            },
            _ = ping.tick() => {
                let answered = tokio::time::timeout(bound, sqlx::query("SELECT 1").execute(&mut *listener)).await;
                if !matches!(answered, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}

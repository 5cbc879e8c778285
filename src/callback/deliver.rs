//! The delivery of completion callbacks: a loop per layer takes the due
//! deliveries from the store (woken when a job with a callback ends here,
//! when a retry it scheduled comes due, and every second for the rest:
//! deliveries of replicas that went away, retries scheduled elsewhere), and
//! sends each one on a task of its own, under a permit of the bound on
//! deliveries at once, so that a slow receiver delays neither jobs nor
//! other deliveries beyond that bound.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, OwnedSemaphorePermit};

use super::config::Callbacks;
use super::outcome::SendOutcome;
use crate::admission::Family;
use crate::config::LayerState;
use crate::response::monitor_document;
use crate::store::{DeliveryAttempt, DueDelivery, JobStore};
use crate::telemetry::{self, StoreOp, store};

/// How often the store is asked for due deliveries when nothing here woke
/// the loop: how late a delivery of a replica that went away, or a retry
/// scheduled by another replica, may start.
const POLL: Duration = Duration::from_secs(1);

/// Added to twice the per-request timeout for a claim's hold: the attempt
/// (bounded by the timeout) and the record of its outcome fit well within
/// it, so that no other replica takes a delivery still being made.
const HOLD_MARGIN: Duration = Duration::from_secs(5);

/// A layer's delivery loop: whether it runs, and how it is woken.
pub(crate) struct Deliveries {
    started: AtomicBool,
    /// Given with `notify_one`, so that a wake-up while the loop is busy
    /// claiming is kept for its next wait rather than lost.
    wake: Arc<Notify>,
    /// The earliest retry this process scheduled and has not looked for
    /// yet, in ms since the Unix epoch; `u64::MAX`: none.
    next_retry: Arc<AtomicU64>,
}

impl Default for Deliveries {
    fn default() -> Self {
        Self {
            started: AtomicBool::new(false),
            wake: Arc::default(),
            next_retry: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }
}

impl Deliveries {
    /// A job with a callback ended here: its delivery is due now.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// A retry is due at `at_ms`: the loop looks then, not a poll later.
    fn retry_at(&self, at_ms: u64) {
        if self.next_retry.fetch_min(at_ms, Ordering::AcqRel) > at_ms {
            self.wake.notify_one();
        }
    }
}

/// Starts the delivery loop of the layer whose state is `shared`, once, if
/// it sends callbacks. Called on every request the layer sees, as the
/// durable upkeep is (one load and a branch once started, or when the layer
/// sends none).
pub(crate) fn ensure_deliveries<St: JobStore>(shared: &Arc<LayerState<St>>) {
    let Some(callbacks) = &shared.config.callbacks else {
        return;
    };
    let deliveries = &shared.deliveries;
    if deliveries.started.load(Ordering::Acquire) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if deliveries.started.swap(true, Ordering::AcqRel) {
        return;
    }
    let state = Arc::downgrade(shared);
    let family = Arc::clone(&shared.family);
    runtime.spawn(deliveries_loop(state, family, callbacks.clone()));
}

/// Takes due deliveries while the layer lives; ends with it, or once its
/// shutdown's drain is over (a pending delivery stays in the store, for
/// another replica or a restart).
async fn deliveries_loop<St: JobStore>(state: Weak<LayerState<St>>, family: Arc<Family>, callbacks: Callbacks) {
    let (wake, next_retry) = match state.upgrade() {
        Some(shared) => (
            Arc::clone(&shared.deliveries.wake),
            Arc::clone(&shared.deliveries.next_retry),
        ),
        None => return,
    };
    let permits = callbacks.permits();
    let hold = callbacks.per_request().saturating_mul(2).saturating_add(HOLD_MARGIN);
    loop {
        // Take as many as there are permits free, at least one, until
        // fewer are due than were asked for.
        loop {
            let first = tokio::select! {
                biased;
                () = family.closing.fired() => return,
                permit = Arc::clone(&permits).acquire_owned() => permit,
            };
            let Ok(first) = first else { return };
            let mut taken = vec![first];
            while let Ok(permit) = Arc::clone(&permits).try_acquire_owned() {
                taken.push(permit);
            }
            let Some(shared) = state.upgrade() else { return };
            let asked = taken.len();
            let claim = shared.store.claim_deliveries(asked, hold);
            let Ok(due) = store(&shared.telemetry.meters, StoreOp::ClaimDeliveries, claim).await else {
                break;
            };
            let got = due.len();
            for (delivery, permit) in due.into_iter().zip(taken) {
                tokio::spawn(deliver(Arc::clone(&shared), callbacks.clone(), delivery, permit));
            }
            if got < asked {
                break;
            }
        }
        let retry = next_retry.load(Ordering::Acquire);
        let until_retry = Duration::from_millis(retry.saturating_sub(now_ms()));
        tokio::select! {
            biased;
            () = family.closing.fired() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(POLL.min(until_retry)) => {}
        }
        if retry != u64::MAX && now_ms() >= retry {
            // Seen: the claim that follows takes it. A retry scheduled
            // meanwhile lowered it already, and stays.
            let _ = next_retry.compare_exchange(retry, u64::MAX, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

/// Makes one attempt of `due`, holding `permit` throughout, and records
/// what it came to.
async fn deliver<St: JobStore>(
    shared: Arc<LayerState<St>>,
    callbacks: Callbacks,
    due: DueDelivery,
    permit: OwnedSemaphorePermit,
) {
    let DueDelivery { record, token, .. } = due;
    let Some(callback) = &record.callback else {
        // A store answers only jobs with a callback; nothing to send.
        return;
    };
    let id = record.id;
    let host = host_of(&callback.url);
    // The monitor's document, as a poll would get it now.
    let (payload, _) = monitor_document(&shared.config, &record);
    // Stable across attempts and replicas: the receiver deduplicates by it.
    let webhook_id = format!("msg_{id}");
    let outcome = callbacks.send(&callback.url, &webhook_id, payload).await;
    let attempt = token.saturating_add(1);
    let now = now_ms();
    let recorded = match outcome {
        SendOutcome::Delivered => {
            telemetry::delivered(id, host, attempt);
            DeliveryAttempt::Delivered
        }
        SendOutcome::Gone => {
            telemetry::given_up(id, host, attempt, "gone");
            DeliveryAttempt::Failed
        }
        SendOutcome::Refused(refused) => {
            telemetry::given_up(id, host, attempt, refused.kind().as_str());
            DeliveryAttempt::Failed
        }
        // The schedule counts from the job's end, which is when the first
        // attempt was due.
        SendOutcome::Retry { after } => match callbacks.next_attempt_at(attempt, record.updated_at_ms, now) {
            Some(next) => {
                let asked = after.map_or(0, |after| u64::try_from(after.as_millis()).unwrap_or(u64::MAX));
                let at = next.max(now.saturating_add(asked));
                telemetry::retrying(id, host, attempt, at.saturating_sub(now));
                DeliveryAttempt::RetryAt(at)
            }
            None => {
                telemetry::given_up(id, host, attempt, "out_of_retries");
                DeliveryAttempt::Failed
            }
        },
    };
    // The receiver is done with: the next delivery may start while this
    // one is recorded.
    drop(permit);
    let record = shared.store.record_delivery(id, token, recorded);
    match store(&shared.telemetry.meters, StoreOp::RecordDelivery, record).await {
        Ok(true) => {
            if let DeliveryAttempt::RetryAt(at) = recorded {
                shared.deliveries.retry_at(at);
            }
        }
        // Another claim recorded meanwhile, or the store failed: the
        // delivery comes due again when its hold lapses (a delivered one
        // may then be sent again; receivers deduplicate by `webhook-id`).
        Ok(false) | Err(_) => telemetry::attempt_unrecorded(id),
    }
}

/// The host of a callback URL, for the log: never its path or query,
/// which may hold the receiver's token.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // User information is refused at submission; cut it anyway.
    authority.rsplit('@').next().unwrap_or(authority)
}

/// The wall clock in ms since the Unix epoch, as the store's due times are.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{ensure_deliveries, host_of};
    use crate::AcceptedLayer;
    use crate::callback::{Callbacks, WebhookSecret};

    /// Waits (up to 5 s) until the runtime has `n` tasks alive.
    async fn alive(n: usize) {
        let metrics = tokio::runtime::Handle::current().metrics();
        let waited = tokio::time::timeout(Duration::from_secs(5), async {
            while metrics.num_alive_tasks() != n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "{} tasks alive, not {n}", metrics.num_alive_tasks());
    }

    #[tokio::test]
    async fn the_loop_runs_only_with_callbacks_once_and_ends_with_the_layer() {
        let before = tokio::runtime::Handle::current().metrics().num_alive_tasks();
        let plain = AcceptedLayer::new();
        ensure_deliveries(plain.shared());
        alive(before).await;

        let layer = AcceptedLayer::new().callbacks(Callbacks::new(WebhookSecret::random()));
        ensure_deliveries(layer.shared());
        ensure_deliveries(layer.shared());
        alive(before + 1).await;
        // In its wait: it asked the store once, and found nothing due.
        tokio::time::sleep(Duration::from_millis(100)).await;
        alive(before + 1).await;
        // The loop holds no strong reference: dropping the layer ends it
        // (within a poll).
        let dropped = std::time::Instant::now();
        drop(layer);
        alive(before).await;
        assert!(
            dropped.elapsed() >= Duration::from_millis(500),
            "{:?}",
            dropped.elapsed()
        );

        let layer = AcceptedLayer::new().callbacks(Callbacks::new(WebhookSecret::random()));
        ensure_deliveries(layer.shared());
        tokio::time::sleep(Duration::from_millis(100)).await;
        alive(before + 1).await;
        // A shutdown's end ends it too, the layer still held.
        assert_eq!(layer.shutdown(Duration::from_secs(1)).await, 0);
        alive(before).await;
        drop(layer);
    }

    #[test]
    fn the_log_sees_the_host_only() {
        assert_eq!(
            host_of("http://hooks.example.com:8080/done?token=t"),
            "hooks.example.com:8080"
        );
        assert_eq!(host_of("http://127.0.0.1:9/"), "127.0.0.1:9");
        assert_eq!(host_of("http://[::1]:9?x=1"), "[::1]:9");
        assert_eq!(host_of("http://user:pw@h.example/"), "h.example");
    }
}

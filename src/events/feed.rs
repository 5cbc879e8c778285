//! The task that reads one job's changes for every stream of it in this
//! process: one read per change, whatever the number of streams.

use std::sync::Arc;
use std::time::Duration;

use super::frame::frame_of;
use super::hub::{Change, Feed};
use crate::config::LayerState;
use crate::store::{JobId, JobStore, Lookup};
use crate::telemetry::{StoreOp, store};

/// How long a feed trusts the store's announcements before it reads the
/// job anyway (a store's own waits re-read too; this bounds the default's).
const RECHECK: Duration = Duration::from_secs(60);

/// The longest pause between reads while the store fails.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Feeds `feed` with the changes of job `id` until the job ends or leaves,
/// or no stream is left. A store that fails is read again after a pause
/// that grows to [`MAX_BACKOFF`]: streams wait (their heartbeats go on)
/// rather than end on a blip.
pub(crate) async fn feed<St: JobStore>(shared: Arc<LayerState<St>>, id: JobId, feed: Feed) {
    let _unwinding = Unwinding {
        shared: &shared,
        id,
        feed: &feed,
    };
    let mut seen: Option<u64> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        match store(&shared.telemetry.meters, StoreOp::Get, shared.store.get(id)).await {
            Ok(Lookup::Found(record)) => {
                if seen != Some(record.updated_at_ms) {
                    backoff = Duration::from_millis(100);
                    seen = Some(record.updated_at_ms);
                    let frame = frame_of(&shared.config, &record);
                    let terminal = frame.terminal;
                    feed.send_replace(Some(Arc::new(Change::Event(frame))));
                    if terminal {
                        shared.events.retire(id, &feed);
                        return;
                    }
                }
            }
            Ok(_) => {
                feed.send_replace(Some(Arc::new(Change::Gone)));
                shared.events.retire(id, &feed);
                return;
            }
            Err(_) => {
                // Logged and counted by `store`; read again after a pause.
                if pause(&shared, id, &feed, &mut backoff).await {
                    return;
                }
                continue;
            }
        }
        let Some(seen) = seen else { continue };
        let waited = tokio::select! {
            () = feed.closed() => {
                if shared.events.retire_if_unused(id, &feed) {
                    return;
                }
                continue;
            }
            waited = tokio::time::timeout(RECHECK, shared.store.wait_change(id, seen)) => waited,
        };
        if matches!(waited, Ok(Err(_))) && pause(&shared, id, &feed, &mut backoff).await {
            return;
        }
    }
}

/// Waits `backoff` (doubled for the next time) before the store is asked
/// again; `true` when every stream left meanwhile and the feed retired.
async fn pause<St: JobStore>(shared: &LayerState<St>, id: JobId, feed: &Feed, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (wait * 2).min(MAX_BACKOFF);
    tokio::select! {
        () = feed.closed() => shared.events.retire_if_unused(id, feed),
        () = tokio::time::sleep(wait) => false,
    }
}

/// Ends the streams of a feed whose task panics (a user's
/// `map_status_document`, a store's `get`): told their job is gone, they
/// end, their clients reconnect to a new feed, and the map forgets this one.
struct Unwinding<'a, St> {
    shared: &'a LayerState<St>,
    id: JobId,
    feed: &'a Feed,
}

impl<St> Drop for Unwinding<'_, St> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.feed.send_replace(Some(Arc::new(Change::Gone)));
            self.shared.events.retire(self.id, self.feed);
        }
    }
}

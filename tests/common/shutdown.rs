//! A shutdown begun in a task of its own, for tests that check what the
//! layer does while it drains.

use std::time::Duration;

use tokio::task::JoinHandle;
use tower_accepted::AcceptedLayer;
use tower_accepted::store::JobStore;

/// Starts `layer.shutdown(deadline)` in a task and returns once it has been
/// polled, so that the layer has stopped accepting; the task answers the
/// number of jobs the shutdown ended.
pub async fn begin_shutdown<St: JobStore>(layer: AcceptedLayer<St>, deadline: Duration) -> JoinHandle<usize> {
    let (began, began_rx) = tokio::sync::oneshot::channel();
    let shutdown = tokio::spawn(async move {
        let mut shutdown = std::pin::pin!(layer.shutdown(deadline));
        // Poll it once, so that it has stopped accepting, then say so.
        tokio::select! {
            biased;
            ended = &mut shutdown => {
                let _ = began.send(());
                return ended;
            }
            () = std::future::ready(()) => {}
        }
        let _ = began.send(());
        shutdown.await
    });
    began_rx.await.expect("the shutdown task runs");
    shutdown
}

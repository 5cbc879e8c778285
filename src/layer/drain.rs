//! Graceful shutdown of a layer's runner: [`AcceptedLayer::shutdown`], and
//! [`AcceptedLayer::drain_on`], the same drain in the shape a server's own
//! graceful shutdown takes.

use std::future::Future;
use std::time::Duration;

use super::AcceptedLayer;
use crate::store::JobStore;

impl<St: JobStore> AcceptedLayer<St> {
    /// Shuts the runner down gracefully: new submissions get `503` at once
    /// and no queued durable job is claimed any more; jobs under way get up
    /// to `deadline` to finish; those still running then are dropped, the
    /// [durable](crate::durable) ones handed back to their queue for another
    /// replica, the others ended `failed` with `shutdown`. A queued job that
    /// would not start before the deadline, by its place in the queue and
    /// the mean run time of the jobs so far, ends so at once rather than at
    /// the deadline. Resolves when no job is left, with the number ended
    /// `shutdown`.
    ///
    /// Job routes keep answering throughout, so that clients can fetch the
    /// results of the jobs that finish meanwhile. Long polls answer as soon
    /// as their job ends; once the drain is over, just before this
    /// resolves, those still waiting answer at once with their job's state,
    /// and later ones do not wait, so that they do not hold up the server's
    /// own graceful shutdown. Serving with axum, [`drain_on`] does this in
    /// the server's graceful shutdown, in one call.
    ///
    /// It reaches every layer made from this one or its clones by builder
    /// calls (which share its runner, or, when they change its limits, have
    /// one of their own in the same family).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_accepted::AcceptedLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = AcceptedLayer::new();
    /// // … serve, then on SIGTERM:
    /// let ended = layer.shutdown(Duration::from_secs(10)).await;
    /// assert_eq!(ended, 0);
    /// # }
    /// ```
    ///
    /// [`drain_on`]: AcceptedLayer::drain_on
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        let ended = self.shared.family.shutdown(deadline).await;
        let ended = ended + crate::durable::fail_queued_after_shutdown(&self.shared).await;
        self.shared.family.close();
        ended
    }

    /// Waits for `signal`, then drains as [`shutdown`] does (with
    /// `deadline`), and resolves when the drain is over: the future a
    /// server's graceful shutdown waits for before it stops listening.
    ///
    /// With axum, `axum::serve(listener, app).with_graceful_shutdown(layer.drain_on(signal, deadline))`
    /// keeps the listener open while the jobs under way drain, so that
    /// clients can still fetch their results, and closes it after: on the
    /// signal, new submissions get `503` with `Retry-After`; monitors,
    /// results and long polls keep answering; once the drain is over the
    /// long polls still waiting answer at once, and axum then closes the
    /// listener and waits for its connections to finish. (Calling
    /// [`shutdown`] after `axum::serve` returns, instead, drains with the
    /// listener closed: nobody can fetch what finishes.)
    ///
    /// It resolves to `()`, as `with_graceful_shutdown` asks; the number of
    /// jobs ended is [`shutdown`]'s answer, for whoever needs it: a future
    /// of one's own that awaits the signal, then `shutdown`, does the same
    /// and keeps it. The future owns a clone of the layer, so it can be
    /// handed to a server that outlives the borrow.
    ///
    /// Choose `deadline` below the time the platform gives the process
    /// after its stop signal (Kubernetes: `terminationGracePeriodSeconds`,
    /// 30 s by default), leaving room for the connections to close.
    ///
    /// ```
    /// use std::time::Duration;
    /// use axum::{Router, routing::post};
    /// use tower_accepted::AcceptedLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let layer = AcceptedLayer::new();
    /// let app: Router = Router::new()
    ///     .route("/reports", post(|| async { "done" }))
    ///     .layer(layer.clone());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// // A real server waits for SIGTERM or Ctrl-C here, for example
    /// // `async { let _ = tokio::signal::ctrl_c().await; }`.
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// let signal = async move {
    ///     let _ = stopped.await;
    /// };
    /// let server = tokio::spawn(async move {
    ///     axum::serve(listener, app)
    ///         .with_graceful_shutdown(layer.drain_on(signal, Duration::from_secs(25)))
    ///         .await
    /// });
    /// let _ = stop.send(());
    /// // No job was under way: the drain ends at once, then the server.
    /// server.await.expect("the server task ends")?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`shutdown`]: AcceptedLayer::shutdown
    pub fn drain_on<F>(&self, signal: F, deadline: Duration) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let layer = self.clone();
        async move {
            signal.await;
            layer.shutdown(deadline).await;
        }
    }
}

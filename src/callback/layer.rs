//! [`AcceptedLayer::callbacks`]: completion callbacks switched on for a
//! layer.

use super::config::Callbacks;
use crate::AcceptedLayer;
use crate::store::JobStore;

impl<St: JobStore> AcceptedLayer<St> {
    /// Sends completion callbacks as `callbacks` allows (feature
    /// `callbacks`; see the [module docs](crate::callback)): a submission
    /// with a `Callback-Url` header whose URL passes the checks gets its
    /// job's final status document `POST`ed there, signed, when the job
    /// ends; one whose URL does not, or any `Callback-Url` while this is
    /// not set, is refused with `400` and no job is made.
    ///
    /// The document is the monitor's, links included: set
    /// [`base_url`](Self::base_url) so that a receiver gets absolute links
    /// it can follow.
    ///
    /// ```
    /// use tower_accepted::AcceptedLayer;
    /// use tower_accepted::callback::{Callbacks, WebhookSecret};
    ///
    /// let callbacks = Callbacks::new(WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
    ///     .allow(|url| url.host() == Some("hooks.example.com"));
    /// let layer = AcceptedLayer::new()
    ///     .base_url("https://api.example.com")
    ///     .callbacks(callbacks);
    /// # let _ = layer;
    /// # Ok::<(), tower_accepted::callback::InvalidSecret>(())
    /// ```
    pub fn callbacks(self, callbacks: Callbacks) -> Self {
        self.configure(|c| c.callbacks = Some(callbacks))
    }
}

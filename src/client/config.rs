//! The following client's configuration, shared by every clone.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::document::StatusDocument;

/// Which request headers, besides `Authorization` and `Cookie`, go with
/// the polls.
pub(crate) type ForwardPredicate = Arc<dyn Fn(&HeaderName) -> bool + Send + Sync>;

/// A callback over the status documents of one job: a progress bar, a log.
///
/// Set one for every request on the layer
/// ([`FollowLayer::on_status`](super::FollowLayer::on_status)), or for a
/// single request by putting it in the request's extensions, where it takes
/// the layer's place:
///
/// ```
/// use tower_accepted::client::OnStatus;
///
/// let mut request = http::Request::post("http://127.0.0.1:3000/reports").body(String::new()).unwrap();
/// request.extensions_mut().insert(OnStatus::new(|doc| {
///     println!("{} {:?}", doc.status_word(), doc.progress());
/// }));
/// ```
#[derive(Clone)]
pub struct OnStatus(Arc<dyn Fn(&StatusDocument) + Send + Sync>);

impl OnStatus {
    /// Wraps `callback`, called with every status document the client
    /// receives (from the `202` and from each poll), in order.
    pub fn new(callback: impl Fn(&StatusDocument) + Send + Sync + 'static) -> Self {
        Self(Arc::new(callback))
    }

    pub(crate) fn call(&self, document: &StatusDocument) {
        (self.0)(document);
    }
}

impl std::fmt::Debug for OnStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnStatus")
    }
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) min_interval: Duration,
    pub(crate) max_interval: Duration,
    pub(crate) initial_interval: Duration,
    pub(crate) deadline: Duration,
    pub(crate) max_polls: u32,
    pub(crate) long_poll: Duration,
    pub(crate) max_redirects: u32,
    pub(crate) max_document_size: usize,
    pub(crate) cancel_on_drop: bool,
    pub(crate) forward: Option<ForwardPredicate>,
    pub(crate) forward_cross_origin: bool,
    pub(crate) on_status: Option<OnStatus>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(30),
            initial_interval: Duration::from_millis(500),
            deadline: Duration::from_secs(10 * 60),
            max_polls: 1000,
            long_poll: Duration::from_secs(30),
            max_redirects: 10,
            max_document_size: 1024 * 1024,
            cancel_on_drop: false,
            forward: None,
            forward_cross_origin: false,
            on_status: None,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("min_interval", &self.min_interval)
            .field("max_interval", &self.max_interval)
            .field("initial_interval", &self.initial_interval)
            .field("deadline", &self.deadline)
            .field("max_polls", &self.max_polls)
            .field("long_poll", &self.long_poll)
            .field("max_redirects", &self.max_redirects)
            .field("max_document_size", &self.max_document_size)
            .field("cancel_on_drop", &self.cancel_on_drop)
            .field("forward_cross_origin", &self.forward_cross_origin)
            .finish_non_exhaustive()
    }
}

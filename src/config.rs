//! The layer's configuration and the state every clone of it shares.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::request::Parts;
use tokio::sync::Semaphore;

use crate::admission::{Admissions, Family};
use crate::document::MapDocument;
use crate::durability::Durability;
use crate::problem::Problem;
use crate::routes::{PathTemplate, Routes};
use crate::store::JobId;

/// Which requests the layer turns into jobs.
pub(crate) type DeferPredicate = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;
/// Who a request comes from, for owner scoping.
pub(crate) type OwnerFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;
/// A pre-acceptance check over the request head and its whole body.
pub(crate) type HeaderFilter = Arc<dyn Fn(&HeaderName) -> bool + Send + Sync>;
pub(crate) type Check = Arc<dyn Fn(&Parts, &Bytes) -> Result<(), Problem> + Send + Sync>;

/// How the status monitor answers once a job has a stored response.
///
/// ```
/// use tower_accepted::{AcceptedLayer, Completion};
///
/// // The original two-oh-two example answers `201 Created` + `Location`.
/// let layer = AcceptedLayer::new().completion(Completion::Created);
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Completion {
    /// `303 See Other` with `Location` of the result and the status document
    /// (RFC 9110 §15.4.4). The default.
    #[default]
    SeeOther,
    /// `201 Created` with `Location` of the result and the status document.
    Created,
    /// `200 OK` with the terminal status document, naming the result in
    /// `result` and `resourceLocation` for every terminal state, as
    /// Microsoft's REST API guidelines and Azure SDK pollers expect.
    Ok,
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) routes: Routes,
    pub(crate) base_url: Option<Box<str>>,
    pub(crate) completion: Completion,
    pub(crate) max_body: usize,
    pub(crate) body_timeout: Duration,
    pub(crate) max_result: usize,
    pub(crate) max_running: usize,
    pub(crate) max_queued: usize,
    pub(crate) timeout: Duration,
    pub(crate) retry_after: u64,
    pub(crate) max_retry_after: u64,
    pub(crate) max_wait: Duration,
    pub(crate) grace: Duration,
    pub(crate) max_long_poll: Duration,
    pub(crate) defer: Option<DeferPredicate>,
    pub(crate) respond_async_only: bool,
    pub(crate) check: Option<Check>,
    pub(crate) map_document: Option<MapDocument>,
    pub(crate) owner: Option<OwnerFn>,
    pub(crate) max_list: usize,
    pub(crate) expose_errors: bool,
    /// Whether every path under the job routes' prefix is the layer's.
    pub(crate) claim_prefix: bool,
    /// The headers whose values scope an idempotency key when the request
    /// has no owner.
    pub(crate) credentials: Arc<[HeaderName]>,
    /// Which deferred requests become durable jobs; `None`: none.
    pub(crate) durable: Option<DeferPredicate>,
    /// How many attempts a durable job may have.
    pub(crate) max_attempts: u32,
    /// The queue durable jobs of this layer wait in.
    pub(crate) queue: Arc<str>,
    /// Which headers a durable job's stored request keeps (hop-by-hop ones
    /// never are); `None`: all.
    pub(crate) stored_headers: Option<HeaderFilter>,
    /// How long an event stream may stay silent before a comment line.
    pub(crate) event_heartbeat: Duration,
    /// How many event streams may be open at once.
    pub(crate) max_event_streams: usize,
    /// Completion callbacks: `None` refuses every `Callback-Url`.
    #[cfg(feature = "callbacks")]
    pub(crate) callbacks: Option<crate::callback::Callbacks>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            routes: Routes {
                monitor: template("/jobs/{id}"),
                result: template("/jobs/{id}/result"),
            },
            base_url: None,
            completion: Completion::SeeOther,
            max_body: 2 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            max_result: 16 * 1024 * 1024,
            max_running: 64,
            max_queued: 1024,
            timeout: Duration::from_secs(15 * 60),
            retry_after: 1,
            max_retry_after: 30,
            max_wait: Duration::from_secs(10),
            grace: Duration::ZERO,
            max_long_poll: Duration::from_secs(60),
            defer: None,
            respond_async_only: false,
            check: None,
            map_document: None,
            owner: None,
            max_list: 100,
            expose_errors: false,
            claim_prefix: false,
            credentials: Arc::new([header::AUTHORIZATION, header::COOKIE]),
            durable: None,
            max_attempts: 3,
            queue: Arc::from("default"),
            stored_headers: None,
            event_heartbeat: Duration::from_secs(15),
            max_event_streams: 1024,
            #[cfg(feature = "callbacks")]
            callbacks: None,
        }
    }
}

/// Parses a template the crate or its user wrote; a bad one is a
/// programming error, found when the layer is configured.
pub(crate) fn template(text: &str) -> PathTemplate {
    match PathTemplate::parse(text) {
        Ok(template) => template,
        Err(e) => panic!("invalid path template {text:?}: {e}"),
    }
}

impl Config {
    /// The owner of a request, when an owner function is set and names one.
    pub(crate) fn owner_of(&self, parts: &Parts) -> Option<String> {
        self.owner.as_ref().and_then(|owner| owner(parts))
    }

    /// Whose an `Idempotency-Key` is: the request's owner (`o:` and the
    /// owner), or else a digest of its credentials (`c:` and the digest),
    /// or else nobody's in particular (`""`: callers without owner or
    /// credentials cannot be told apart).
    pub(crate) fn key_scope(&self, parts: &Parts, owner: Option<&str>) -> String {
        match owner {
            Some(owner) => format!("o:{owner}"),
            None => crate::idempotency::credentials_digest(&parts.headers, &self.credentials)
                .map_or_else(String::new, |digest| format!("c:{digest}")),
        }
    }

    /// The URL of job `id` on `template`, absolute when a base URL is set.
    pub(crate) fn link(&self, template: &PathTemplate, id: JobId) -> String {
        let base = self.base_url.as_deref().unwrap_or("");
        let mut out = String::with_capacity(base.len() + template.len());
        out.push_str(base);
        template.render(id, &mut out);
        out
    }
}

/// What every clone of a layer, and every service it made, shares.
pub(crate) struct LayerState<St> {
    pub(crate) config: Config,
    pub(crate) store: Arc<St>,
    pub(crate) admissions: Arc<Admissions>,
    /// Every runner made from the same layer, for its shutdown.
    pub(crate) family: Arc<Family>,
    /// The claims this layer's runner holds, and the work that keeps them.
    pub(crate) durability: Durability,
    /// The layer's metric handles (feature `metrics`) and log limits.
    pub(crate) telemetry: crate::telemetry::Telemetry,
    /// The jobs with event streams open, each fed by one reader.
    pub(crate) events: crate::events::hub::Hub,
    /// The places of open event streams ([`Config::max_event_streams`]).
    pub(crate) streams: Arc<Semaphore>,
    /// The completion callbacks' delivery loop: whether it runs, and its
    /// wake-up.
    #[cfg(feature = "callbacks")]
    pub(crate) deliveries: crate::callback::Deliveries,
}

impl<St> LayerState<St> {
    /// The state of a new layer.
    pub(crate) fn new(config: Config, store: Arc<St>) -> Self {
        Self::derived::<St>(config, store, None)
    }

    /// The state of a layer made by a builder call on `from`'s: the same
    /// runner while the limits stay the same, a new one of the same family
    /// when they change.
    pub(crate) fn derived<T>(config: Config, store: Arc<St>, from: Option<&LayerState<T>>) -> Self {
        let same_limits = from
            .is_some_and(|f| (f.config.max_running, f.config.max_queued) == (config.max_running, config.max_queued));
        let family = from.map_or_else(Arc::default, |f| Arc::clone(&f.family));
        let admissions = match from {
            Some(from) if same_limits => Arc::clone(&from.admissions),
            _ => {
                let admissions = Arc::new(Admissions::new(config.max_running, config.max_queued));
                family.join(&admissions);
                admissions
            }
        };
        // Streams are bounded in the whole family while the bound stays.
        let streams = match from {
            Some(from) if from.config.max_event_streams == config.max_event_streams => Arc::clone(&from.streams),
            _ => Arc::new(Semaphore::new(config.max_event_streams.min(Semaphore::MAX_PERMITS))),
        };
        Self {
            config,
            store,
            admissions,
            family,
            durability: Durability::default(),
            telemetry: crate::telemetry::Telemetry::default(),
            events: crate::events::hub::Hub::default(),
            streams,
            #[cfg(feature = "callbacks")]
            deliveries: crate::callback::Deliveries::default(),
        }
    }
}

//! The poll loop: from a `202 Accepted` to the final response.

mod style;
mod timing;

use std::future::poll_fn;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, COOKIE, HOST, LOCATION};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use http_body::Body;
use tokio::time::Instant;
use tower_service::Service;

use self::style::{Mode, OPERATION_LOCATION, Step, Watch};
use self::timing::Backoff;
use super::body::FollowBody;
use super::config::{Config, OnStatus};
use super::error::FollowError;
use super::link::{resolve, same_origin};
use crate::BoxError;

/// How long a `DELETE` sent for an abandoned job may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the client keeps of the original request, in case it is answered
/// with `202`.
pub(crate) struct Start<S> {
    service: S,
    config: Arc<Config>,
    method: Method,
    uri: Uri,
    host: Option<String>,
    headers: HeaderMap,
    on_status: Option<OnStatus>,
}

impl<S> Start<S> {
    pub(crate) fn new<B>(request: &Request<B>, service: S, config: Arc<Config>) -> Self {
        let mut headers = HeaderMap::new();
        for (name, value) in request.headers() {
            let forward = name == AUTHORIZATION || name == COOKIE || config.forward.as_ref().is_some_and(|f| f(name));
            if forward {
                headers.append(name.clone(), value.clone());
            }
        }
        let on_status = request
            .extensions()
            .get::<OnStatus>()
            .cloned()
            .or_else(|| config.on_status.clone());
        Self {
            service,
            method: request.method().clone(),
            uri: request.uri().clone(),
            host: request
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned),
            headers,
            on_status,
            config,
        }
    }
}

impl<S> std::fmt::Debug for Start<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Start")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

/// Sends the polls; sends `DELETE` to the monitor when dropped while armed.
struct Poller<S, ReqBody>
where
    S: Service<Request<ReqBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Default + Send + 'static,
{
    service: S,
    config: Arc<Config>,
    origin: Uri,
    host: Option<String>,
    headers: HeaderMap,
    /// The monitor to cancel if the job is abandoned.
    armed: Option<Uri>,
    _body: PhantomData<fn() -> ReqBody>,
}

impl<S, ReqBody, ResBody> Poller<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Default + Send + 'static,
{
    fn request(&self, method: Method, url: &Uri, wait: Option<u64>) -> Request<ReqBody> {
        let mut request = Request::new(ReqBody::default());
        *request.method_mut() = method;
        *request.uri_mut() = url.clone();
        let headers = request.headers_mut();
        if self.config.forward_cross_origin || same_origin(&self.origin, self.host.as_deref(), url) {
            for (name, value) in &self.headers {
                headers.append(name.clone(), value.clone());
            }
            if url.authority().is_none()
                && let Some(host) = self.host.as_deref().and_then(|h| HeaderValue::from_str(h).ok())
            {
                // In-process: the request names no authority; keep the original's.
                headers.insert(HOST, host);
            }
        }
        if let Some(Ok(prefer)) = wait.map(|seconds| HeaderValue::try_from(format!("wait={seconds}"))) {
            headers.insert("prefer", prefer);
        }
        request
    }

    async fn send(&mut self, request: Request<ReqBody>) -> Result<Response<ResBody>, S::Error> {
        poll_fn(|cx| self.service.poll_ready(cx)).await?;
        self.service.call(request).await
    }
}

impl<S, ReqBody> Drop for Poller<S, ReqBody>
where
    S: Service<Request<ReqBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Default + Send + 'static,
{
    fn drop(&mut self) {
        let Some(url) = self.armed.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut request = Request::new(ReqBody::default());
        *request.method_mut() = Method::DELETE;
        *request.uri_mut() = url.clone();
        if self.config.forward_cross_origin || same_origin(&self.origin, self.host.as_deref(), &url) {
            for (name, value) in &self.headers {
                request.headers_mut().append(name.clone(), value.clone());
            }
        }
        let mut service = self.service.clone();
        runtime.spawn(async move {
            let _ = tokio::time::timeout(CANCEL_TIMEOUT, async move {
                if poll_fn(|cx| service.poll_ready(cx)).await.is_ok() {
                    // The answer (204, or 404 if the job ended meanwhile) changes nothing.
                    let _ = service.call(request).await;
                }
            })
            .await;
        });
    }
}

/// The link in header `name`, as sent; `Err` when it is not text.
fn header_link<'h>(headers: &'h HeaderMap, name: &str) -> Option<Result<&'h str, ()>> {
    headers.get(name).map(|v| v.to_str().map_err(|_| ()))
}

/// Follows the job that `accepted` (a `202`) announced, to its final response.
pub(crate) async fn follow<S, ReqBody, ResBody>(
    start: Start<S>,
    accepted: Response<ResBody>,
) -> Result<Response<FollowBody<ResBody>>, FollowError<S::Error>>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Default + Send + 'static,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    let Start {
        service,
        config,
        method,
        uri,
        host,
        headers,
        on_status,
    } = start;
    let began = Instant::now();
    let deadline = began
        .checked_add(config.deadline)
        .unwrap_or_else(|| began + Duration::from_secs(100 * 365 * 86_400));
    let (parts, body) = accepted.into_parts();
    let operation = header_link(&parts.headers, OPERATION_LOCATION);
    let location = header_link(&parts.headers, LOCATION.as_str());
    let (mode, link) = match (operation, location) {
        (Some(link), _) => (Mode::Operation, link),
        (None, Some(link)) => (Mode::Location, link),
        // Accepted, with nothing to follow: that is the answer.
        (None, None) => return Ok(Response::from_parts(parts, FollowBody::new(body))),
    };
    let Some(mut monitor) = link.ok().and_then(|l| resolve(&uri, l)) else {
        return Err(FollowError::malformed(&uri, "the 202's monitor link is no URL"));
    };
    let location = match (mode, location) {
        (Mode::Operation, Some(Ok(l))) => resolve(&uri, l).filter(|l| *l != monitor),
        _ => None,
    };
    let pace = style::Pace {
        retry_after: timing::retry_after(&parts.headers, std::time::SystemTime::now()),
        long_polled: false,
    };
    let mut watch = Watch {
        mode,
        method: method.clone(),
        origin: uri.clone(),
        location,
        not_ready_seen: false,
        monitor_seen: false,
    };
    // Armed from here on: a drop while the 202's body is read cancels too.
    let mut poller = Poller {
        armed: config.cancel_on_drop.then(|| monitor.clone()),
        service,
        config: Arc::clone(&config),
        origin: uri,
        host,
        headers,
        _body: PhantomData,
    };
    if let Some(doc) = style::document(body, config.max_document_size).await
        && let Some(on_status) = &on_status
    {
        on_status.call(&doc);
    }
    let mut backoff = Backoff::new(config.initial_interval);
    let mut polls = 0u32;
    let mut redirects = 0u32;
    let mut visited: Vec<Uri> = Vec::new();
    let exceeded = |monitor: &Uri| FollowError::DeadlineExceeded {
        deadline: config.deadline,
        monitor: monitor.clone(),
    };
    // With long polling the first poll goes out at once: the server holds it.
    let mut before_next = config.long_poll.is_zero().then_some(pace);
    loop {
        if let Some(pace) = before_next.take() {
            let delay = match pace.retry_after {
                Some(after) => after.clamp(config.min_interval, config.max_interval.max(config.min_interval)),
                None => backoff.next_delay(config.min_interval, config.max_interval),
            };
            let until = Instant::now().checked_add(delay).map_or(deadline, |t| t.min(deadline));
            tokio::time::sleep_until(until).await;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(exceeded(&monitor));
        }
        if polls >= config.max_polls {
            return Err(FollowError::TooManyPolls { polls, monitor });
        }
        polls += 1;
        let left = deadline - now;
        let wait = Some(config.long_poll.min(left).as_secs()).filter(|s| *s > 0);
        let request = poller.request(Method::GET, &monitor, wait);
        let response = match tokio::time::timeout_at(deadline, poller.send(request)).await {
            Err(_) => return Err(exceeded(&monitor)),
            Ok(Err(e)) => return Err(FollowError::Service(e)),
            Ok(Ok(response)) => response,
        };
        match style::step(&mut watch, &config, on_status.as_ref(), &monitor, response).await {
            Step::Wait(pace) => {
                redirects = 0;
                visited.clear();
                if pace.long_polled {
                    backoff.reset(config.initial_interval);
                    before_next = Some(style::Pace {
                        retry_after: Some(config.min_interval),
                        long_polled: true,
                    });
                } else {
                    if pace.retry_after.is_some() {
                        backoff.reset(config.initial_interval);
                    }
                    before_next = Some(pace);
                }
            }
            Step::Redirect(target) => {
                redirects += 1;
                if redirects > config.max_redirects || target == monitor || visited.contains(&target) {
                    return Err(FollowError::RedirectLoop { url: target, redirects });
                }
                visited.push(std::mem::replace(&mut monitor, target));
                if poller.armed.is_some() {
                    poller.armed = Some(monitor.clone());
                }
            }
            Step::Fetch(target) => {
                if target == monitor {
                    return Err(FollowError::RedirectLoop {
                        url: target,
                        redirects: redirects + 1,
                    });
                }
                // The job has ended: nothing is left to cancel.
                poller.armed = None;
                let fetch = if method == Method::HEAD {
                    Method::HEAD
                } else {
                    Method::GET
                };
                let request = poller.request(fetch, &target, None);
                return match tokio::time::timeout_at(deadline, poller.send(request)).await {
                    Err(_) => Err(exceeded(&target)),
                    Ok(Err(e)) => Err(FollowError::Service(e)),
                    Ok(Ok(response)) => Ok(response.map(FollowBody::new)),
                };
            }
            Step::Done(response) => {
                poller.armed = None;
                return Ok(response);
            }
            Step::Fail(error) => {
                if matches!(
                    error,
                    FollowError::Failed(_)
                        | FollowError::Canceled(_)
                        | FollowError::Expired { .. }
                        | FollowError::NotFound { .. }
                ) {
                    poller.armed = None;
                }
                return Err(error);
            }
        }
    }
}

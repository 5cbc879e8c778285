//! The configuration of completion callbacks: secret, allowed URLs and
//! addresses, bounds of delivery and of retries.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::secret::WebhookSecret;

type UriPredicate = Arc<dyn Fn(&http::Uri) -> bool + Send + Sync>;
type AddressPredicate = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// How completion callbacks are signed, which URLs they may go to, and how
/// hard delivery tries.
///
/// A builder whose methods take `self` by value; clones share the
/// configuration and the bound on concurrent deliveries.
///
/// The default allows no URL: name your receivers with
/// [`allow`](Self::allow). Even an allowed URL is refused when its host is
/// (or resolves to) a loopback, private, link-local, metadata or other
/// special-purpose address, unless [`allow_addresses`](Self::allow_addresses)
/// accepts that address.
///
/// ```
/// use std::time::Duration;
/// use tower_accepted::callback::{Callbacks, WebhookSecret};
///
/// let callbacks = Callbacks::new(WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
///     .allow(|url| url.scheme_str() == Some("http") && url.host() == Some("hooks.example.com"))
///     .timeout(Duration::from_secs(15))
///     .retry_for(Duration::from_secs(6 * 60 * 60));
/// # Ok::<(), tower_accepted::callback::InvalidSecret>(())
/// ```
#[derive(Clone)]
pub struct Callbacks {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    secret: WebhookSecret,
    allow: Option<UriPredicate>,
    allow_addresses: Option<AddressPredicate>,
    timeout: Duration,
    max_concurrency: usize,
    permits: Arc<Semaphore>,
    retry_for: Duration,
    max_attempts: u32,
    first_retry: Duration,
    #[cfg(feature = "callbacks-tls")]
    tls: super::tls::Tls,
}

/// Default time of one attempt, everything included: within the 15 to 30 s
/// the specification recommends receivers be given, shortened because a
/// receiver should acknowledge and process later.
const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONCURRENCY: usize = 16;
const RETRY_FOR: Duration = Duration::from_secs(24 * 60 * 60);
/// Default number of attempts. With the backoff's schedule (5 s doubling,
/// at most an hour between attempts, drawn between half and all of it) 25
/// attempts span about 8 to 15 hours: a receiver that is down that long
/// has cost 25 requests, and is likely down for good; the 24 h of
/// `retry_for` end the deliveries whose waits `Retry-After` answers or a
/// backlog stretched.
const MAX_ATTEMPTS: u32 = 25;

impl Callbacks {
    /// Callbacks signed with `secret`, allowing no URL yet; 10 s per
    /// attempt, 16 deliveries at once, retried for up to 24 h and 25
    /// attempts.
    ///
    /// ```
    /// use tower_accepted::callback::{Callbacks, WebhookSecret};
    ///
    /// let callbacks = Callbacks::new(WebhookSecret::random());
    /// # let _ = callbacks;
    /// ```
    pub fn new(secret: WebhookSecret) -> Self {
        Self {
            inner: Arc::new(Inner {
                secret,
                allow: None,
                allow_addresses: None,
                timeout: TIMEOUT,
                max_concurrency: MAX_CONCURRENCY,
                permits: Arc::new(Semaphore::new(MAX_CONCURRENCY)),
                retry_for: RETRY_FOR,
                max_attempts: MAX_ATTEMPTS,
                first_retry: super::backoff::BASE,
                #[cfg(feature = "callbacks-tls")]
                tls: super::tls::Tls::new(),
            }),
        }
    }

    /// Which callback URLs are accepted: `predicate` sees the parsed
    /// absolute URL (after the syntax checks). It replaces an earlier one.
    ///
    /// Compare the scheme and host, and the port where it matters;
    /// prefix matches on the URL's text are easy to get wrong
    /// (`http://hooks.example.com.evil.test/`).
    ///
    /// ```
    /// use tower_accepted::callback::{Callbacks, WebhookSecret};
    ///
    /// let callbacks = Callbacks::new(WebhookSecret::random()).allow(|url| {
    ///     url.host().is_some_and(|host| host == "example.com" || host.ends_with(".example.com"))
    /// });
    /// # let _ = callbacks;
    /// ```
    pub fn allow(mut self, predicate: impl Fn(&http::Uri) -> bool + Send + Sync + 'static) -> Self {
        self.inner_mut().allow = Some(Arc::new(predicate));
        self
    }

    /// Allows addresses that are refused by default (loopback, private,
    /// link-local, metadata, …) when `predicate` says yes. Ordinary public
    /// addresses need no allowance. IPv4-mapped IPv6 addresses
    /// (`::ffff:127.0.0.1`) reach the predicate as their IPv4 address. It
    /// replaces an earlier one.
    ///
    /// For a receiver on the same host or network, in development or
    /// behind a known gateway; a URL must still pass [`allow`](Self::allow).
    ///
    /// ```
    /// use std::net::IpAddr;
    /// use tower_accepted::callback::{Callbacks, WebhookSecret};
    ///
    /// let callbacks = Callbacks::new(WebhookSecret::random())
    ///     .allow(|url| url.host() == Some("127.0.0.1"))
    ///     .allow_addresses(|ip: IpAddr| ip.is_loopback());
    /// # let _ = callbacks;
    /// ```
    pub fn allow_addresses(mut self, predicate: impl Fn(IpAddr) -> bool + Send + Sync + 'static) -> Self {
        self.inner_mut().allow_addresses = Some(Arc::new(predicate));
        self
    }

    /// The time one attempt may take, all of it: resolving, connecting,
    /// sending, and reading the answer. Default 10 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_accepted::callback::{Callbacks, WebhookSecret};
    ///
    /// let callbacks = Callbacks::new(WebhookSecret::random()).timeout(Duration::from_secs(20));
    /// # let _ = callbacks;
    /// ```
    pub fn timeout(mut self, per_request: Duration) -> Self {
        self.inner_mut().timeout = per_request;
        self
    }

    /// How many deliveries run at once in this process (at least 1).
    /// Default 16. Others wait their turn; jobs never wait for them.
    ///
    /// ```
    /// use tower_accepted::callback::{Callbacks, WebhookSecret};
    ///
    /// let callbacks = Callbacks::new(WebhookSecret::random()).max_concurrency(4);
    /// # let _ = callbacks;
    /// ```
    pub fn max_concurrency(mut self, n: usize) -> Self {
        let n = n.max(1);
        let inner = self.inner_mut();
        inner.max_concurrency = n;
        inner.permits = Arc::new(Semaphore::new(n));
        self
    }

    /// How long after its first attempt a delivery is retried at most.
    /// Default 24 h.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_accepted::callback::{Callbacks, WebhookSecret};
    ///
    /// let callbacks = Callbacks::new(WebhookSecret::random()).retry_for(Duration::from_secs(3600));
    /// # let _ = callbacks;
    /// ```
    pub fn retry_for(mut self, d: Duration) -> Self {
        self.inner_mut().retry_for = d;
        self
    }

    /// How many attempts a delivery makes at most, the first included (at
    /// least 1). Default 25: with the backoff between attempts (from 5 s,
    /// doubling, at most an hour, with jitter) that is 8 to 15 hours of
    /// trying.
    ///
    /// ```
    /// use tower_accepted::callback::{Callbacks, WebhookSecret};
    ///
    /// let callbacks = Callbacks::new(WebhookSecret::random()).max_attempts(10);
    /// # let _ = callbacks;
    /// ```
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.inner_mut().max_attempts = n.max(1);
        self
    }

    /// The wait after the first failed attempt, which doubles after each
    /// further one (at most an hour). Default 5 s, as the specification's
    /// example schedule. Shorter suits receivers that recover within
    /// seconds (a restart on the same host) and tests that watch a retry
    /// happen; longer spares a receiver that sheds load. Each wait is drawn
    /// between half and all of its nominal length.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_accepted::callback::{Callbacks, WebhookSecret};
    ///
    /// let callbacks = Callbacks::new(WebhookSecret::random()).first_retry(Duration::from_secs(1));
    /// # let _ = callbacks;
    /// ```
    pub fn first_retry(mut self, wait: Duration) -> Self {
        self.inner_mut().first_retry = wait;
        self
    }

    /// Trusts `der`, a DER-encoded X.509 certificate, as a root for `https`
    /// callbacks too (feature `callbacks-tls`): a private CA's, or a
    /// receiver's self-signed certificate. The Mozilla roots of
    /// `webpki-roots` stay trusted.
    ///
    /// ```
    /// use tower_accepted::callback::{Callbacks, WebhookSecret};
    ///
    /// # let ca = rcgen::generate_simple_self_signed(vec!["hooks.internal".to_owned()])?;
    /// # let der = ca.cert.der().to_vec();
    /// // `der`: the CA's certificate, e.g. read from a file.
    /// let callbacks = Callbacks::new(WebhookSecret::random())
    ///     .add_root_certificate(der)?
    ///     .allow(|url| url.scheme_str() == Some("https") && url.host() == Some("hooks.internal"));
    /// # let _ = callbacks;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "callbacks-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "callbacks-tls")))]
    pub fn add_root_certificate(mut self, der: impl Into<Vec<u8>>) -> Result<Self, super::tls::InvalidCertificate> {
        self.inner_mut().tls.add(der.into())?;
        Ok(self)
    }

    #[cfg(feature = "callbacks-tls")]
    pub(crate) fn tls_config(&self) -> Option<Arc<tokio_rustls::rustls::ClientConfig>> {
        self.inner.tls.config()
    }

    fn inner_mut(&mut self) -> &mut Inner {
        Arc::make_mut(&mut self.inner)
    }

    pub(crate) fn secret(&self) -> &WebhookSecret {
        &self.inner.secret
    }

    pub(crate) fn url_allowed(&self, url: &http::Uri) -> bool {
        self.inner.allow.as_ref().is_some_and(|allow| allow(url))
    }

    pub(crate) fn address_allowed(&self, ip: IpAddr) -> bool {
        self.inner.allow_addresses.as_ref().is_some_and(|allow| allow(ip))
    }

    pub(crate) fn per_request(&self) -> Duration {
        self.inner.timeout
    }

    pub(crate) fn retry_window(&self) -> Duration {
        self.inner.retry_for
    }

    pub(crate) fn attempts(&self) -> u32 {
        self.inner.max_attempts
    }

    pub(crate) fn first_wait(&self) -> Duration {
        self.inner.first_retry
    }

    /// The bound on deliveries at once: a permit per delivery in flight.
    pub(crate) fn permits(&self) -> Arc<Semaphore> {
        Arc::clone(&self.inner.permits)
    }
}

impl fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        let mut f = f.debug_struct("Callbacks");
        f.field("secret", &inner.secret)
            .field("allow", &inner.allow.as_ref().map(|_| ".."))
            .field("allow_addresses", &inner.allow_addresses.as_ref().map(|_| ".."))
            .field("timeout", &inner.timeout)
            .field("max_concurrency", &inner.max_concurrency)
            .field("retry_for", &inner.retry_for)
            .field("max_attempts", &inner.max_attempts)
            .field("first_retry", &inner.first_retry);
        #[cfg(feature = "callbacks-tls")]
        f.field("added_roots", &inner.tls.added());
        f.finish()
    }
}

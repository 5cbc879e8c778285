//! Completion callbacks (feature `callbacks`): a signed `POST` of a job's
//! final status document to a URL its submitter named.
//!
//! Deliveries follow the [Standard Webhooks] specification: each carries
//! `webhook-id` (stable across retries, for the receiver to deduplicate),
//! `webhook-timestamp` (the attempt's time, Unix seconds) and
//! `webhook-signature` (`v1,` and an HMAC-SHA256 of
//! `{id}.{timestamp}.{body}` under a [`WebhookSecret`]), so that receivers
//! verify them with the specification's libraries in any language.
//!
//! [`Callbacks`] holds the secret and the rules: which URLs are accepted
//! (none by default), which otherwise refused addresses are allowed (none by
//! default), and the bounds of delivery (time per attempt, deliveries at
//! once, attempts and time in all). A URL is refused ([`CallbackRefused`])
//! unless it is an absolute `http` URL without user information that the
//! allow-predicate accepts, and every address its host resolves to is an
//! ordinary public one or explicitly allowed: loopback, private,
//! link-local, shared (CGNAT), metadata, multicast, broadcast, documentation
//! and reserved ranges are refused, in IPv4, IPv6 and IPv4 written in IPv6
//! (`::ffff:127.0.0.1`). Each attempt resolves the host again, checks the
//! answer again, and connects only to an address that passed.
//!
//! ```
//! use tower_accepted::callback::{Callbacks, WebhookSecret};
//!
//! let callbacks = Callbacks::new(WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?)
//!     .allow(|url| url.host() == Some("hooks.example.com"));
//! # let _ = callbacks;
//! # Ok::<(), tower_accepted::callback::InvalidSecret>(())
//! ```
//!
//! Failed attempts are retried with exponential backoff and jitter (from
//! 5 s, doubling, at most an hour apart), until a `2xx`, a `410 Gone`, the
//! attempts or the time are spent. Receivers must verify the signature,
//! reject timestamps far from their clock (the libraries allow 5 minutes),
//! and deduplicate by `webhook-id`: a delivery may arrive more than once.
//!
//! `https` URLs need the feature `callbacks-tls` (refused without it): the
//! connection still goes to an address that passed the checks, and the
//! receiver's certificate is verified for the URL's host name (sent as
//! SNI) against the Mozilla roots of `webpki-roots` and any added with
//! `Callbacks::add_root_certificate`.
//!
//! [Standard Webhooks]: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md

mod address;
mod backoff;
mod config;
mod outcome;
mod policy;
mod refused;
mod secret;
mod send;
#[cfg(test)]
mod send_tests;
#[cfg(feature = "callbacks-tls")]
mod tls;
#[cfg(all(test, feature = "callbacks-tls"))]
mod tls_tests;

pub use config::Callbacks;
pub use refused::{CallbackRefused, RefusalKind};
pub use secret::{InvalidSecret, WebhookSecret};
#[cfg(feature = "callbacks-tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "callbacks-tls")))]
pub use tls::InvalidCertificate;

#[allow(unused_imports, reason = "for the integration (issue 15)")]
pub(crate) use outcome::SendOutcome;
#[allow(unused_imports, reason = "for the integration (issue 15)")]
pub(crate) use policy::{CallbackTarget, MAX_URL_LEN};

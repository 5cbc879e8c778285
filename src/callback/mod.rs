//! Completion callbacks (feature `callbacks`): a signed `POST` of a job's
//! final status document to a URL its submitter named.
//!
//! Switch them on with [`AcceptedLayer::callbacks`](crate::AcceptedLayer::callbacks);
//! a submission then names its receiver in a `Callback-Url` header:
//!
//! ```text
//! POST /reports HTTP/1.1
//! Callback-Url: http://hooks.example.com/reports/done?token=abc
//! ```
//!
//! A URL that does not pass the checks below (or any `Callback-Url`, when
//! callbacks are not switched on) gets `400` with a problem document saying
//! why, and no job is made. An accepted one is kept with the job (in the
//! store, never shown: the status document says only
//! `"callback": {"state", "attempts"}`). When the job ends, however it
//! ends (succeeded, failed, canceled, lost), its delivery is due: the
//! monitor's status document for the ended job, exactly as a poll would get
//! it, is `POST`ed to the URL (its `callback` object says `pending` and the
//! attempts made before this one, as the monitor did then). Set [`base_url`](crate::AcceptedLayer::base_url)
//! so that its links (`result`) are absolute: a receiver has no other way
//! to resolve them. The header's name is the design's plain
//! `Callback-Url`; Sonatype Nexus asks for `Nexus-Callback-Url`, but no
//! registry names one and a vendor prefix would say nothing more. An
//! idempotent retry (the same `Idempotency-Key`) gets the job its key made,
//! with that job's callback: no second one. A submission answered at once
//! (`Prefer: wait`) is called back all the same: its job is kept for the
//! delivery. A durable job's stored request
//! keeps the header like any other (leave it out with
//! [`stored_headers`](crate::AcceptedLayer::stored_headers) if the URL is a
//! secret): harmless, since a claimed job runs its handler without being
//! accepted again.
//!
//! Deliveries are made by a task per layer, started with the layer's first
//! request: woken when a job with a callback ends in this process, when a
//! retry it scheduled comes due, and every second otherwise, so that it
//! also takes the deliveries of replicas that went away and the retries
//! they scheduled (a pending delivery lives in the store, with its job:
//! with a shared store it survives its replica). Each delivery runs on a
//! task of its own, under a permit of [`Callbacks::max_concurrency`]: a slow
//! or silent receiver holds a permit for at most the per-request timeout,
//! and never delays a job. A claimed delivery is held for twice the
//! timeout and 5 s, after which another replica may take it: one whose
//! replica died while sending is sent again.
//!
//! Deliveries follow the [Standard Webhooks] specification: each carries
//! `webhook-id` (`msg_` and the job's id: stable across retries and
//! replicas, for the receiver to deduplicate),
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
mod deliver;
mod layer;
mod outcome;
mod policy;
mod refused;
mod request;
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

pub(crate) use deliver::{Deliveries, ensure_deliveries};
pub(crate) use request::{CALLBACK_URL, requested};

//! A submission's `Callback-Url`: read, checked, and made the callback its
//! job is created with, or the `400` that refuses it before any job exists.
//!
//! The header's name is the plain `Callback-Url` of the design rather than
//! a vendor's (Sonatype Nexus asks for `Nexus-Callback-Url`): no registry
//! names one, and a prefix would only say whose server this is.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName};
use http::{Response, StatusCode};

use super::refused::{CallbackRefused, RefusalKind};
use crate::config::Config;
use crate::problem::Problem;
use crate::store::JobCallback;

/// The header a submission names its callback URL in.
pub(crate) const CALLBACK_URL: HeaderName = HeaderName::from_static("callback-url");

/// The callback a submission with a `Callback-Url` header (`headers`) asks
/// for, if the layer sends callbacks and the URL passes every check (one
/// value, text, allowed, its addresses allowed after DNS); otherwise the
/// `400` problem document that refuses the submission.
///
/// Only called when the header is there: a submission without one pays a
/// single header lookup.
pub(crate) async fn requested(config: &Config, headers: &HeaderMap) -> Result<JobCallback, Response<Bytes>> {
    let Some(callbacks) = &config.callbacks else {
        crate::telemetry::callback_refused("disabled");
        return Err(bad_request(
            "this service sends no completion callbacks: leave out Callback-Url",
        ));
    };
    let mut values = headers.get_all(CALLBACK_URL).iter();
    // Two values would leave it to chance which one is called.
    let url = match (values.next().map(|value| value.to_str()), values.next()) {
        (Some(Ok(url)), None) => url.trim(),
        _ => return Err(refused(&CallbackRefused::new(RefusalKind::Malformed))),
    };
    match callbacks.check(url).await {
        Ok(_) => Ok(JobCallback::new(url)),
        Err(refusal) => Err(refused(&refusal)),
    }
}

/// The `400` of a refused URL: its reason, never a resolved address.
fn refused(refusal: &CallbackRefused) -> Response<Bytes> {
    crate::telemetry::callback_refused(refusal.kind().as_str());
    bad_request(refusal.to_string())
}

fn bad_request(detail: impl Into<String>) -> Response<Bytes> {
    Problem::new(StatusCode::BAD_REQUEST)
        .with_detail(detail)
        .into_response()
}

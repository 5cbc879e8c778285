//! What one delivery attempt came to, read from the receiver's answer as
//! the Standard Webhooks specification advises.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode, header};

use super::backoff::CAP;
use super::refused::CallbackRefused;

/// What one attempt of a delivery came to, and so what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendOutcome {
    /// A `2xx`: the delivery is done.
    Delivered,
    /// A `410 Gone`: the receiver wants no more; stop for good.
    Gone,
    /// Anything else (another status, `3xx` included since redirects are
    /// not followed; a timeout, a refused or broken connection, a name that
    /// did not resolve): try again later, if the schedule allows
    /// ([`next_attempt_at`](super::Callbacks::next_attempt_at)). `after` is
    /// the receiver's `Retry-After` on a `429` or `503`, at most an hour:
    /// wait at least that long.
    Retry {
        /// The receiver's own wait, when it gave one.
        after: Option<Duration>,
    },
    /// The URL no longer passes the checks (its host now resolves to a
    /// refused address, say): stop, the delivery cannot be made.
    Refused(CallbackRefused),
}

/// The outcome of an answer with `status` and `headers`, received at `now`.
pub(crate) fn classify(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> SendOutcome {
    if status.is_success() {
        return SendOutcome::Delivered;
    }
    if status == StatusCode::GONE {
        return SendOutcome::Gone;
    }
    let throttled = status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE;
    let after = throttled.then(|| retry_after(headers, now)).flatten();
    SendOutcome::Retry { after }
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3),
/// bounded by the longest wait of the schedule: a receiver cannot park a
/// delivery for longer than the backoff would.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else {
        let date = httpdate::parse_http_date(value).ok()?;
        // A date in the past means "now".
        date.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(CAP))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: u16, retry_after: Option<&str>) -> SendOutcome {
        let mut headers = HeaderMap::new();
        if let Some(value) = retry_after {
            headers.insert(header::RETRY_AFTER, value.parse().unwrap());
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        classify(StatusCode::from_u16(status).unwrap(), &headers, now)
    }

    #[test]
    fn statuses_are_read_as_the_specification_advises() {
        assert_eq!(outcome(200, None), SendOutcome::Delivered);
        assert_eq!(outcome(204, None), SendOutcome::Delivered);
        assert_eq!(outcome(299, None), SendOutcome::Delivered);
        assert_eq!(outcome(410, None), SendOutcome::Gone);
        for status in [301, 302, 307, 400, 404, 500, 502, 504] {
            assert_eq!(
                outcome(status, Some("7")),
                SendOutcome::Retry { after: None },
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_within_bounds() {
        let after = |secs| SendOutcome::Retry {
            after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(outcome(429, Some("7")), after(7));
        assert_eq!(outcome(503, Some("120")), after(120));
        assert_eq!(outcome(503, Some("999999999")), after(CAP.as_secs()));
        // 1_700_000_000 is Tue, 14 Nov 2023 22:13:20 GMT.
        assert_eq!(outcome(503, Some("Tue, 14 Nov 2023 22:13:50 GMT")), after(30));
        assert_eq!(outcome(503, Some("Tue, 14 Nov 2023 22:00:00 GMT")), after(0));
        assert_eq!(outcome(503, Some("soon")), SendOutcome::Retry { after: None });
        assert_eq!(outcome(503, Some("-5")), SendOutcome::Retry { after: None });
        assert_eq!(outcome(503, None), SendOutcome::Retry { after: None });
    }
}

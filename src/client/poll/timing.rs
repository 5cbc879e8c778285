//! When to poll again: `Retry-After`, or exponential backoff with jitter.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::RETRY_AFTER;

/// The delay a monitor's answer asks for: `Retry-After` in seconds or as an
/// HTTP-date (RFC 9110 §10.2.3), or, as Azure services send it,
/// `retry-after-ms` / `x-ms-retry-after-ms` in milliseconds. A date in the
/// past is no delay. `None` when there is none, or none that parses.
///
/// Dates are read by `httpdate`, in the three forms RFC 9110 §5.6.7 asks
/// recipients to accept: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`),
/// RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
/// (`Sun Nov  6 08:49:37 1994`); a date that is no day of the calendar
/// (a wrong weekday, `31 Feb`, second `60`) is none.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(value) = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        if let Some(seconds) = whole_number(value) {
            return Some(Duration::from_secs(seconds));
        }
        if let Ok(date) = httpdate::parse_http_date(value) {
            return Some(date.duration_since(now).unwrap_or(Duration::ZERO));
        }
    }
    ["retry-after-ms", "x-ms-retry-after-ms"].iter().find_map(|name| {
        let value = headers.get(*name)?.to_str().ok()?;
        whole_number(value.trim()).map(Duration::from_millis)
    })
}

/// A non-negative decimal integer; huge ones saturate.
fn whole_number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

/// Exponential backoff with "equal jitter": the n-th delay is drawn from
/// `[d/2, d]` where `d = initial × 2ⁿ`, capped at the maximum. Jitter keeps
/// many clients that started together from polling in step. The draws are
/// `fastrand`'s: a generator of each thread, seeded by the clock and the
/// thread's id, so that other threads and processes draw otherwise.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration) -> Self {
        Self { next: initial }
    }

    /// The next delay, within `[min, max]`.
    pub(crate) fn next_delay(&mut self, min: Duration, max: Duration) -> Duration {
        let ceiling = self.next.clamp(min, max.max(min));
        self.next = ceiling.saturating_mul(2);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
        (half + Duration::from_nanos(fastrand::u64(..=spread))).clamp(min, max.max(min))
    }

    /// Starts again from `initial`, as after an answer that set the pace.
    pub(crate) fn reset(&mut self, initial: Duration) {
        self.next = initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers, now), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(3)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Sun, 06 Nov 1994 08:49:47 GMT"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(10)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Sun, 06 Nov 1994 08:00:00 GMT"));
        assert_eq!(retry_after(&headers, now), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("99999999999999999999999"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(u64::MAX)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_millis(250)));
        headers.remove("retry-after-ms");
        headers.insert("x-ms-retry-after-ms", HeaderValue::from_static("40"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_millis(40)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("-1"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_millis(40)));
    }

    /// The delay `Retry-After: text` asks for at the epoch, in seconds.
    fn date(text: &str) -> Option<u64> {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(text).unwrap());
        retry_after(&headers, SystemTime::UNIX_EPOCH).map(|d| d.as_secs())
    }

    #[test]
    fn the_three_forms_of_http_date() {
        assert_eq!(date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(date("Sun Nov  6 08:49:37 1994"), Some(784_111_777));
        assert_eq!(date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(date("Tue, 29 Feb 2000 12:00:00 GMT"), Some(951_825_600));
        assert_eq!(date("Sun, 22 Nov 2026 10:00:03 GMT"), Some(1_795_341_603));
        // RFC 850's two-digit years: those more than 50 years ahead are past.
        assert_eq!(date("Thursday, 01-Jan-70 00:00:00 GMT"), Some(0));
        assert_eq!(date("Saturday, 01-Jan-00 00:00:00 GMT"), Some(946_684_800));
    }

    #[test]
    fn dates_that_are_none() {
        for bad in [
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun Nov  6 08:49:37",
            "Sun, 06 Nov 1960 08:49:37 GMT",
            // No day of the calendar.
            "Mon, 06 Nov 1994 08:49:37 GMT",
            "Sat, 31 Feb 2026 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:60 GMT",
        ] {
            assert_eq!(date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn backoff_grows_with_jitter_within_bounds() {
        let (min, max) = (Duration::from_millis(10), Duration::from_secs(8));
        let mut backoff = Backoff::new(Duration::from_millis(500));
        let mut ceiling = Duration::from_millis(500);
        for _ in 0..20 {
            let delay = backoff.next_delay(min, max);
            assert!(delay >= ceiling / 2 && delay <= ceiling, "{delay:?} for {ceiling:?}");
            ceiling = (ceiling * 2).min(max);
        }
        // Delays are drawn, not fixed: 50 draws are not all equal.
        let mut backoff = Backoff::new(Duration::from_secs(1));
        let draws: Vec<Duration> = (0..50)
            .map(|_| {
                backoff.reset(Duration::from_secs(1));
                backoff.next_delay(min, max)
            })
            .collect();
        assert!(draws.iter().any(|d| *d != draws[0]));
        backoff.reset(Duration::ZERO);
        assert_eq!(backoff.next_delay(min, max), min);
    }
}

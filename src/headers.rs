//! Request and response headers the layer reads or writes: media types,
//! `Prefer` (RFC 7240), `Retry-After` (RFC 9110) and hop-by-hop headers.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::store::{JobRecord, JobStatus};

/// The media type of status documents.
pub(crate) const JSON: HeaderValue = HeaderValue::from_static("application/json");
/// The media type of problem documents (RFC 9457).
pub(crate) const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");
/// Monitors change from one poll to the next: no cache may keep them.
pub(crate) const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
/// `Operation-Location`, the monitor header of Microsoft's REST guidelines.
pub(crate) const OPERATION_LOCATION: HeaderName = HeaderName::from_static("operation-location");
/// `Prefer` (RFC 7240).
pub(crate) const PREFER: HeaderName = HeaderName::from_static("prefer");
/// `Preference-Applied` (RFC 7240).
pub(crate) const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

/// A number of seconds as a header value (`Retry-After`), without an
/// allocation for the common small ones.
pub(crate) fn seconds_value(seconds: u64) -> HeaderValue {
    const SMALL: [&str; 61] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19",
        "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31", "32", "33", "34", "35", "36", "37",
        "38", "39", "40", "41", "42", "43", "44", "45", "46", "47", "48", "49", "50", "51", "52", "53", "54", "55",
        "56", "57", "58", "59", "60",
    ];
    match SMALL.get(seconds as usize) {
        Some(text) if seconds < SMALL.len() as u64 => HeaderValue::from_static(text),
        _ => HeaderValue::from(seconds),
    }
}

/// Seconds a client should wait before polling `record` again: the
/// configured interval, or, once the handler reports progress, the estimated
/// time left, within `[base, max]`. The estimate counts from when the job
/// started running (time in the queue is not work), or from its creation for
/// a store that does not record starts.
pub(crate) fn retry_after_secs(record: &JobRecord, base: u64, max: u64, now_ms: impl FnOnce() -> u64) -> u64 {
    let base = base.max(1);
    let max = max.max(base);
    match record.progress {
        Some(p) if record.status == JobStatus::Running && p > 0.0 && p < 1.0 => {
            let started = record.started_at_ms.unwrap_or(record.created_at_ms);
            let elapsed = now_ms().saturating_sub(started) as f64 / 1000.0;
            let left = elapsed * f64::from(1.0 - p) / f64::from(p);
            (left.ceil() as u64).clamp(base, max)
        }
        _ => base,
    }
}

/// `Retry-After` for a `503`: a random whole number of seconds from `base`
/// to twice `base` (within `max`), so that clients refused together do not
/// all come back in the same second.
pub(crate) fn jittered_retry_after(base: u64, max: u64) -> u64 {
    let base = base.max(1);
    let high = base.saturating_mul(2).min(max.max(base));
    fastrand::u64(base..=high)
}

/// The preferences of a request (RFC 7240) that this crate honours.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Preferences {
    pub(crate) respond_async: bool,
    pub(crate) wait: Option<Duration>,
}

/// Reads every `Prefer` header (RFC 7240, with the list and quoted-string
/// rules of RFC 9110 §5.6): a comma or semicolon inside a quoted value does
/// not end it. Unknown preferences, and a `wait` that is not a number, are
/// ignored as RFC 7240 asks; the first `wait` counts.
pub(crate) fn preferences(headers: &HeaderMap) -> Preferences {
    let mut prefs = Preferences::default();
    for value in headers.get_all(PREFER) {
        let Ok(value) = value.to_str() else { continue };
        for pref in split_unquoted(value, ',') {
            // Parameters after `;` refine a preference; none that we honour.
            let pref = split_unquoted(pref, ';').next().unwrap_or("").trim();
            let (name, val) = match pref.split_once('=') {
                Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
                None => (pref, None),
            };
            if name.eq_ignore_ascii_case("respond-async") {
                prefs.respond_async = true;
            } else if name.eq_ignore_ascii_case("wait") && prefs.wait.is_none() {
                prefs.wait = val.and_then(|v| parse_seconds(&v).ok());
            }
        }
    }
    prefs
}

/// The parts of `text` between `separator`s that are outside quoted strings
/// (RFC 9110 §5.6.4: `"` opens and closes one, `\` escapes inside it).
fn split_unquoted(text: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, c) in current.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                c if c == separator && !quoted => {
                    rest = Some(&current[i + 1..]);
                    return Some(&current[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(current)
    })
}

/// A token, or the content of a quoted string with its escapes undone.
fn unquote(value: &str) -> std::borrow::Cow<'_, str> {
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.into();
    };
    if !inner.contains('\\') {
        return inner.into();
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next().unwrap_or(c) } else { c });
    }
    out.into()
}

/// A `wait` value that is not a non-negative number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidWait;

/// Parses a non-negative decimal number of seconds (`10`, `0.5`); huge values
/// saturate (callers cap them).
pub(crate) fn parse_seconds(text: &str) -> Result<Duration, InvalidWait> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() && frac.is_empty() || !digits(int) || !digits(frac) || text.len() > 64 {
        return Err(InvalidWait);
    }
    let secs: f64 = text.parse().map_err(|_| InvalidWait)?;
    Ok(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// The seconds of a `Duration`, rounded up, for `Retry-After` and
/// `Preference-Applied: wait=N`.
pub(crate) fn whole_seconds(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

/// Removes the hop-by-hop headers (RFC 9110 §7.6.1), including those that
/// `Connection` names, so that a stored response can be replayed on another
/// connection.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most responses carry none: one pass over the names, without hashing.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    let hop_by_hop: Vec<HeaderName> = headers.keys().filter(|name| is_hop_by_hop(name)).cloned().collect();
    for name in hop_by_hop {
        headers.remove(name);
    }
}

/// The hop-by-hop headers of RFC 9110 §7.6.1, and two that proxies still
/// send.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::JobId;

    #[test]
    fn prefer_header() {
        let mut headers = HeaderMap::new();
        headers.append(PREFER, HeaderValue::from_static("Respond-Async, wait=10"));
        headers.append(PREFER, HeaderValue::from_static("wait=3"));
        let prefs = preferences(&headers);
        assert!(prefs.respond_async);
        assert_eq!(prefs.wait, Some(Duration::from_secs(10)));
        headers.clear();
        headers.insert(PREFER, HeaderValue::from_static("wait=soon, handling=lenient"));
        assert_eq!(preferences(&headers), Preferences::default());
    }

    #[test]
    fn prefer_values_may_be_quoted_strings() {
        let prefs = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(PREFER, HeaderValue::from_static(value));
            preferences(&headers)
        };
        // A comma or semicolon inside quotes does not end the preference.
        assert_eq!(prefs(r#"handling="strict, respond-async""#), Preferences::default());
        assert_eq!(prefs(r#"foo="a;b,c", wait=5"#).wait, Some(Duration::from_secs(5)));
        assert!(!prefs(r#"foo="a\"b, respond-async", wait=2"#).respond_async);
        assert_eq!(
            prefs(r#"foo="a\"b, respond-async", wait=2"#).wait,
            Some(Duration::from_secs(2))
        );
        // A quoted value is unquoted.
        assert_eq!(prefs(r#"wait="3""#).wait, Some(Duration::from_secs(3)));
        assert_eq!(
            prefs(r#"wait="3"; x="1,2", respond-async"#).wait,
            Some(Duration::from_secs(3))
        );
        assert!(prefs(r#"wait="3"; x="1,2", respond-async"#).respond_async);
        // An unbalanced quote swallows the rest, and nothing breaks.
        assert_eq!(prefs(r#"foo="unbalanced, wait=1"#), Preferences::default());
    }

    #[test]
    fn retry_after_counts_from_the_start_and_503s_are_jittered() {
        let mut record = JobRecord::pending(JobId::new());
        record.status = JobStatus::Running;
        record.progress = Some(0.5);
        // Queued 100 s, then half done in 2 s: 2 s left, not 100.
        record.started_at_ms = Some(record.created_at_ms + 100_000);
        assert_eq!(retry_after_secs(&record, 1, 300, || record.created_at_ms + 102_000), 2);
        let drawn: std::collections::HashSet<u64> = (0..200).map(|_| jittered_retry_after(5, 60)).collect();
        assert!(drawn.iter().all(|s| (5..=10).contains(s)), "{drawn:?}");
        assert!(drawn.len() > 1, "{drawn:?}");
        assert_eq!(jittered_retry_after(5, 5), 5);
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("close, x-private"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["x-kept"], "yes");
        for name in [
            "te",
            "trailer",
            "upgrade",
            "proxy-authenticate",
            "proxy-authorization",
            "proxy-connection",
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static("x"));
            strip_hop_by_hop(&mut headers);
            assert_eq!(headers.len(), 1, "{name}");
        }
        // A `Connection` header alone names the headers to remove too.
        headers.insert(header::CONNECTION, HeaderValue::from_static("x-kept"));
        strip_hop_by_hop(&mut headers);
        assert!(headers.is_empty());
    }

    #[test]
    fn seconds_values() {
        for n in [0, 1, 9, 10, 59, 60, 61, 3600, u64::MAX] {
            assert_eq!(seconds_value(n), HeaderValue::from(n), "{n}");
        }
    }

    #[test]
    fn retry_after_follows_progress() {
        let mut record = JobRecord::pending(JobId::new());
        assert_eq!(retry_after_secs(&record, 1, 30, || record.created_at_ms), 1);
        record.status = JobStatus::Running;
        record.progress = Some(0.25);
        // 10 s for a quarter: 30 s left, capped at 20.
        assert_eq!(retry_after_secs(&record, 1, 20, || record.created_at_ms + 10_000), 20);
        assert_eq!(retry_after_secs(&record, 1, 60, || record.created_at_ms + 2_000), 6);
    }
}

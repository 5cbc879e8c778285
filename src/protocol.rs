//! The wire formats: status documents, problem documents (RFC 9457),
//! `Prefer` (RFC 7240), `Retry-After` (RFC 9110) and `wait` parameters.

use std::cell::Cell;
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use serde::Serialize;

use crate::config::MapDocument;
use crate::json;
use crate::store::{JobError, JobId, JobRecord, JobStatus, ListCursor};

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

/// A problem document (RFC 9457): the body of every error this crate
/// answers, and what a pre-acceptance check returns to refuse a request.
///
/// ```
/// use http::StatusCode;
/// use tower_accepted::Problem;
///
/// let problem = Problem::new(StatusCode::BAD_REQUEST).with_detail("`pages` must be between 1 and 100");
/// assert_eq!(problem.status(), StatusCode::BAD_REQUEST);
/// let response = problem.into_response();
/// assert_eq!(response.headers()["content-type"], "application/problem+json");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    status: StatusCode,
    type_uri: Option<String>,
    title: Option<String>,
    detail: Option<String>,
    code: Option<String>,
    retry_after: Option<u64>,
}

/// The problem document as `serde` writes it: the reference the hand-written
/// encoder is tested against.
#[cfg(test)]
#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    type_uri: &'a str,
    title: &'a str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
}

impl Problem {
    /// A problem of type `about:blank` whose title is the status's reason
    /// phrase.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            type_uri: None,
            title: None,
            detail: None,
            code: None,
            retry_after: None,
        }
    }

    /// A human-readable explanation of this occurrence of the problem.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// A short summary of the problem type (default: the reason phrase).
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// A URI that names the problem type (default `about:blank`).
    pub fn with_type(mut self, type_uri: impl Into<String>) -> Self {
        self.type_uri = Some(type_uri.into());
        self
    }

    /// A machine-readable `code` extension member, such as a job's
    /// `error.code`.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Adds `Retry-After` with this many seconds (at least 1) to the response.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// The HTTP status of the problem.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The problem as a JSON document.
    pub fn to_json(&self) -> Bytes {
        let title = self
            .title
            .as_deref()
            .unwrap_or_else(|| self.status.canonical_reason().unwrap_or("Error"));
        json::document(|out| {
            let mut body = json::Object::new(out);
            body.str("type", self.type_uri.as_deref().unwrap_or("about:blank"));
            body.str("title", title);
            body.uint("status", u64::from(self.status.as_u16()));
            if let Some(detail) = &self.detail {
                body.str("detail", detail);
            }
            if let Some(code) = &self.code {
                body.str("code", code);
            }
            body.end();
        })
    }

    /// The problem as a response with `Content-Type: application/problem+json`.
    pub fn into_response(self) -> Response<Bytes> {
        let mut response = Response::new(self.to_json());
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, PROBLEM_JSON);
        headers.insert(header::CACHE_CONTROL, NO_STORE);
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, seconds_value(seconds));
        }
        response
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

/// The status document as `serde` writes it: the form used when the user
/// maps documents, and the reference the hand-written encoder is tested
/// against.
#[derive(Serialize)]
struct StatusDocument<'a> {
    id: JobId,
    status: JobStatus,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a JobError>,
    #[serde(rename = "resourceLocation", skip_serializing_if = "Option::is_none")]
    resource_location: Option<&'a str>,
}

/// The status document of `record`. `result` is the link to its result
/// when the document names it (`result`, and `resourceLocation` too when
/// `every_terminal_result`, as Microsoft's guidelines want); see
/// [`result_link_shown`]. `map` is the user's change to the document, if any.
///
/// Without `map` the document is written by a small encoder, byte for byte as
/// `serde_json` would write [`StatusDocument`] (the tests check it); with one
/// it goes through a `serde_json` tree, as `map` needs.
pub(crate) fn status_document(
    record: &JobRecord,
    result: Option<&str>,
    every_terminal_result: bool,
    map: Option<&MapDocument>,
) -> Bytes {
    let resource_location = result.filter(|_| every_terminal_result);
    let Some(map) = map else {
        return json::document(|out| encode_status_document(out, record, result, resource_location));
    };
    let document = StatusDocument {
        id: record.id,
        status: record.status,
        created_at: rfc3339(record.created_at_ms),
        updated_at: rfc3339(record.updated_at_ms),
        progress: record.progress,
        message: record.message.as_deref(),
        result,
        result_status: record.result_status,
        error: record.error.as_ref(),
        resource_location,
    };
    serde_json::to_value(&document)
        .and_then(|mut value| {
            if let Some(object) = value.as_object_mut() {
                map(record, object);
            }
            serde_json::to_vec(&value)
        })
        .map(Bytes::from)
        .unwrap_or_default()
}

/// Whether the status document of `record` names its result: when it has a
/// stored response, or, with `every_terminal_result`, once it ended.
pub(crate) fn result_link_shown(record: &JobRecord, every_terminal_result: bool) -> bool {
    record.has_response() || every_terminal_result && record.status.is_terminal()
}

/// The status document, in the field order of [`StatusDocument`].
fn encode_status_document(
    out: &mut Vec<u8>,
    record: &JobRecord,
    result: Option<&str>,
    resource_location: Option<&str>,
) {
    let mut id = uuid::Uuid::encode_buffer();
    let mut doc = json::Object::new(out);
    doc.plain("id", record.id.as_uuid().hyphenated().encode_lower(&mut id).as_bytes());
    doc.plain("status", record.status.as_str().as_bytes());
    write_timestamp(&mut doc, "created_at", record.created_at_ms);
    write_timestamp(&mut doc, "updated_at", record.updated_at_ms);
    if let Some(progress) = record.progress {
        doc.serialized("progress", &progress);
    }
    if let Some(message) = &record.message {
        doc.str("message", message);
    }
    if let Some(result) = result {
        doc.str("result", result);
    }
    if let Some(status) = record.result_status {
        doc.uint("result_status", u64::from(status));
    }
    if let Some(error) = &record.error {
        doc.object("error", |e| {
            e.str("code", &error.code);
            e.str("message", &error.message);
        });
    }
    if let Some(location) = resource_location {
        doc.str("resourceLocation", location);
    }
    doc.end();
}

fn write_timestamp(doc: &mut json::Object<'_>, key: &str, ms: u64) {
    // Documents written in the same second share their timestamps: the last
    // one is kept by the thread.
    thread_local! {
        static LAST: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [0; 20])) };
    }
    let secs = ms / 1000;
    let cached = LAST.with(|last| {
        let (at, bytes) = last.get();
        if at == secs {
            return Some(bytes);
        }
        let bytes = rfc3339_bytes(ms)?;
        last.set((secs, bytes));
        Some(bytes)
    });
    match cached {
        Some(bytes) => doc.plain(key, &bytes),
        None => doc.str(key, &rfc3339(ms)),
    }
}

/// `ms` as an RFC 3339 UTC timestamp of 20 bytes, for years 0 to 9999 (all
/// of them, in practice); `None` past that.
pub(crate) fn rfc3339_bytes(ms: u64) -> Option<[u8; 20]> {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let two = |n: u64| [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
    let year = year as u64;
    let (y1, y2) = (two(year / 100), two(year % 100));
    let (mo, d) = (two(month as u64), two(day as u64));
    let (h, mi, s) = (two(rem / 3600), two(rem / 60 % 60), two(rem % 60));
    Some([
        y1[0], y1[1], y2[0], y2[1], b'-', mo[0], mo[1], b'-', d[0], d[1], b'T', h[0], h[1], b':', mi[0], mi[1], b':',
        s[0], s[1], b'Z',
    ])
}

/// The civil date (year, month, day) of `days` since 1970-01-01 (Howard
/// Hinnant's algorithm).
fn civil(days: u64) -> (i64, i64, i64) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `ms` since the Unix epoch as an RFC 3339 UTC timestamp, to the second.
pub(crate) fn rfc3339(ms: u64) -> String {
    if let Some(bytes) = rfc3339_bytes(ms) {
        return bytes.iter().map(|&b| char::from(b)).collect();
    }
    let secs = ms / 1000;
    let rem = secs % 86_400;
    let (year, month, day) = civil(secs / 86_400);
    let mut out = String::with_capacity(20);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    out
}

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

/// The `wait` query parameter, if there is one (percent-decoded).
pub(crate) fn query_wait(query: Option<&str>) -> Result<Option<Duration>, InvalidWait> {
    let Some(query) = query else { return Ok(None) };
    match form_urlencoded::parse(query.as_bytes()).find(|(name, _)| name == "wait") {
        Some((_, value)) => parse_seconds(&value).map(Some),
        None => Ok(None),
    }
}

/// `Idempotency-Key` (IETF httpapi draft).
pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Reads `Idempotency-Key`: a structured-field string (`"…"`) or, leniently,
/// a bare token. Empty, longer than 255 characters, outside visible ASCII,
/// or sent twice: a `400` problem.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else { return Ok(None) };
    let bad = |detail: &str| Problem::new(StatusCode::BAD_REQUEST).with_detail(format!("Idempotency-Key {detail}"));
    if values.next().is_some() {
        return Err(bad("must be sent once"));
    }
    let raw = value.as_bytes();
    let key = match raw {
        [b'"', inner @ .., b'"'] if raw.len() >= 2 => {
            let mut key = Vec::with_capacity(inner.len());
            let mut bytes = inner.iter();
            while let Some(&b) = bytes.next() {
                match b {
                    b'\\' => match bytes.next() {
                        Some(&e @ (b'"' | b'\\')) => key.push(e),
                        _ => return Err(bad("has a bad escape")),
                    },
                    b'"' => return Err(bad("has an unescaped quote")),
                    _ => key.push(b),
                }
            }
            key
        }
        // A bare token, as many clients send it; a stray quote is an error.
        _ if raw.contains(&b'"') => return Err(bad("has an unbalanced quote")),
        _ => raw.to_vec(),
    };
    if key.is_empty() {
        return Err(bad("is empty"));
    }
    if key.len() > 255 {
        return Err(bad("is longer than 255 characters"));
    }
    if !key.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(bad("must be visible ASCII"));
    }
    Ok(String::from_utf8(key).ok())
}

/// A stable digest of what makes two submissions the same request: method,
/// path, query and body (BLAKE3, the first 128 bits in hex: the same on
/// every replica, platform and version, and fast enough, several GB/s, that
/// a 2 MiB body costs well under a millisecond).
pub(crate) fn fingerprint(method: &http::Method, uri: &http::Uri, body: &[u8]) -> String {
    let mut hasher = blake3::Hasher::new();
    let parts: [&[u8]; 4] = [
        method.as_str().as_bytes(),
        uri.path().as_bytes(),
        uri.query().unwrap_or("").as_bytes(),
        body,
    ];
    for part in parts {
        // Each part with its length first, so that no two requests share
        // their concatenation.
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hex128(hasher.finalize().as_bytes())
}

/// Whose an idempotency key is when the request has no owner: a digest of
/// the credentials it carries (every value of each of `names`, in order),
/// so that a key sent with other credentials never names another caller's
/// job; `None` when it carries none. BLAKE3 (a cryptographic hash, since the
/// digest may be kept in a shared store), 128 bits in hex.
pub(crate) fn credentials_digest(headers: &HeaderMap, names: &[HeaderName]) -> Option<String> {
    let mut hasher = blake3::Hasher::new();
    let mut any = false;
    for name in names {
        for value in headers.get_all(name) {
            any = true;
            let name = name.as_str().as_bytes();
            hasher.update(&(name.len() as u64).to_le_bytes());
            hasher.update(name);
            hasher.update(&(value.len() as u64).to_le_bytes());
            hasher.update(value.as_bytes());
        }
    }
    any.then(|| hex128(hasher.finalize().as_bytes()))
}

/// The first 16 bytes of a digest, as 32 lower-case hex digits.
fn hex128(bytes: &[u8; 32]) -> String {
    let mut out = String::with_capacity(32);
    for byte in &bytes[..16] {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// `?limit=` and `?cursor=` of `GET /jobs`.
pub(crate) fn list_params(query: Option<&str>, max: usize) -> Result<(usize, Option<ListCursor>), Problem> {
    let mut limit = max;
    let mut cursor = None;
    let bad = |detail: &str| Problem::new(StatusCode::BAD_REQUEST).with_detail(detail.to_owned());
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*name {
            "limit" => {
                let valid = !value.is_empty() && value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit());
                let n: u64 = if valid { value.parse().unwrap_or(u64::MAX) } else { 0 };
                if n == 0 {
                    return Err(bad("`limit` is a whole number from 1"));
                }
                limit = usize::try_from(n).unwrap_or(usize::MAX).min(max);
            }
            "cursor" => {
                cursor = Some(
                    value
                        .parse::<ListCursor>()
                        .map_err(|_| bad("`cursor` is not one this server gave"))?,
                );
            }
            _ => {}
        }
    }
    Ok((limit, cursor))
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
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ]
    .contains(name)
        || name == "keep-alive"
        || name == "proxy-connection"
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document as `serde_json` writes [`StatusDocument`].
    fn serde_document(record: &JobRecord, result: Option<&str>, every_terminal_result: bool) -> Vec<u8> {
        serde_json::to_vec(&StatusDocument {
            id: record.id,
            status: record.status,
            created_at: rfc3339(record.created_at_ms),
            updated_at: rfc3339(record.updated_at_ms),
            progress: record.progress,
            message: record.message.as_deref(),
            result,
            result_status: record.result_status,
            error: record.error.as_ref(),
            resource_location: result.filter(|_| every_terminal_result),
        })
        .unwrap()
    }

    fn assert_same_document(record: &JobRecord, result: Option<&str>, every_terminal_result: bool) {
        let ours = status_document(record, result, every_terminal_result, None);
        let reference = serde_document(record, result, every_terminal_result);
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&reference),
            "{record:?}"
        );
    }

    #[test]
    fn status_documents_are_byte_compatible_with_serde() {
        let mut record = JobRecord::pending(JobId::new());
        assert_same_document(&record, None, false);
        record.status = JobStatus::Running;
        record.progress = Some(0.4);
        record.message = Some("rendering page 4 of 10".into());
        assert_same_document(&record, None, false);
        for message in [
            "quote \" backslash \\ slash /",
            "control \u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1b}\u{1f}\u{7f}",
            "non-ASCII: é ß 東京 🦀 \u{2028}",
            "",
        ] {
            record.message = Some(message.into());
            assert_same_document(&record, None, false);
        }
        for progress in [0.0, 1.0, 0.1, 1.0 / 3.0, 1e-7, 0.999_999_9] {
            record.progress = Some(progress);
            assert_same_document(&record, None, false);
        }
        record.status = JobStatus::Failed;
        record.result_status = Some(404);
        record.error = Some(JobError::new(
            JobError::HTTP_STATUS,
            "the handler answered 404 Not Found",
        ));
        assert_same_document(&record, Some("/jobs/x/result"), false);
        assert_same_document(&record, Some("https://api.example.com/v1/jobs/x/result"), true);
        record.result_status = None;
        record.error = Some(JobError::new("odd \"code\"\n", "a panic: \u{1}\\ é"));
        assert_same_document(&record, Some("/r"), true);
        record.status = JobStatus::Canceled;
        record.error = None;
        record.progress = None;
        record.message = None;
        assert_same_document(&record, Some("/r"), true);
        // Timestamps at the edges of the fast path.
        for ms in [0, 951_782_400_000, 253_402_300_799_999, 253_402_300_800_000, u64::MAX] {
            record.created_at_ms = ms;
            record.updated_at_ms = ms;
            assert_same_document(&record, None, false);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_message_is_encoded_as_serde_does(
            message in proptest::prelude::any::<String>(),
            code in "\\PC*",
            progress in proptest::prelude::any::<f32>(),
            created in proptest::prelude::any::<u64>(),
            result_status in proptest::prelude::any::<u16>(),
        ) {
            let mut record = JobRecord::pending(JobId::new());
            record.status = JobStatus::Failed;
            record.message = Some(message.clone());
            record.progress = Some(progress);
            record.created_at_ms = created;
            record.result_status = Some(result_status);
            record.error = Some(JobError::new(code, message));
            let ours = status_document(&record, Some("/jobs/x/result"), true, None);
            proptest::prop_assert_eq!(ours.to_vec(), serde_document(&record, Some("/jobs/x/result"), true));
        }
    }

    #[test]
    fn problem_documents_are_byte_compatible_with_serde() {
        let problems = [
            Problem::new(StatusCode::NOT_FOUND),
            Problem::new(StatusCode::BAD_REQUEST).with_detail("`wait` is \"bad\"\n\u{1} é"),
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
                .with_detail("the handler panicked")
                .with_code("panicked")
                .with_title("Oops \\")
                .with_type("https://example.com/problems/x"),
            Problem::new(StatusCode::from_u16(599).unwrap()).with_code("c"),
        ];
        for problem in problems {
            let title = problem
                .title
                .as_deref()
                .unwrap_or_else(|| problem.status.canonical_reason().unwrap_or("Error"));
            let reference = serde_json::to_vec(&ProblemBody {
                type_uri: problem.type_uri.as_deref().unwrap_or("about:blank"),
                title,
                status: problem.status.as_u16(),
                detail: problem.detail.as_deref(),
                code: problem.code.as_deref(),
            })
            .unwrap();
            assert_eq!(problem.to_json().to_vec(), reference, "{problem:?}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_341_603_000), "2026-11-22T10:00:03Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(253_402_300_799_999), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_800_000), "10000-01-01T00:00:00Z");
        assert_eq!(rfc3339_bytes(253_402_300_800_000), None);
    }

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
    fn fingerprints_are_stable_and_separate_their_parts() {
        let uri: http::Uri = "/orders?x=1".parse().unwrap();
        let a = fingerprint(&http::Method::POST, &uri, b"body");
        // A fixed value: the same on every replica, platform and version.
        // (Computed independently with the `blake3` package from PyPI.)
        assert_eq!(a, "ea18094a7cbfc75ddd6bfd01b191691a");
        assert_eq!(a.len(), 32);
        let other: http::Uri = "/orders?x=1b".parse().unwrap();
        assert_ne!(fingerprint(&http::Method::POST, &other, b"ody"), a);
        assert_ne!(fingerprint(&http::Method::PUT, &uri, b"body"), a);
    }

    #[test]
    fn credentials_digests_tell_callers_apart() {
        let names = [header::AUTHORIZATION, header::COOKIE];
        let digest = |pairs: &[(HeaderName, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.append(name.clone(), HeaderValue::from_static(value));
            }
            credentials_digest(&headers, &names)
        };
        assert_eq!(digest(&[]), None);
        assert_eq!(digest(&[(header::ACCEPT, "x")]), None);
        let alice = digest(&[(header::COOKIE, "session=a")]);
        assert!(alice.is_some());
        assert_eq!(alice, digest(&[(header::COOKIE, "session=a")]));
        assert_ne!(alice, digest(&[(header::COOKIE, "session=b")]));
        // The header a value came in counts too.
        assert_ne!(alice, digest(&[(header::AUTHORIZATION, "session=a")]));
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
    fn query_values_are_percent_decoded() {
        assert_eq!(query_wait(Some("wait=0%2E5")), Ok(Some(Duration::from_millis(500))));
        assert_eq!(query_wait(Some("w%61it=2")), Ok(Some(Duration::from_secs(2))));
        assert_eq!(query_wait(Some("wait=%2D1")), Err(InvalidWait));
        assert_eq!(list_params(Some("limit=%33"), 100).map(|p| p.0), Ok(3));
        assert!(list_params(Some("limit=%30"), 100).is_err());
    }

    #[test]
    fn wait_values() {
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_seconds(&"9".repeat(40)), Ok(Duration::MAX));
        for bad in ["", "-1", "1e3", "inf", "NaN", " 1", "1.2.3", ".", "+1"] {
            assert_eq!(parse_seconds(bad), Err(InvalidWait), "{bad:?}");
        }
        assert_eq!(query_wait(Some("a=1&wait=2")), Ok(Some(Duration::from_secs(2))));
        assert_eq!(query_wait(Some("wait=x")), Err(InvalidWait));
        assert_eq!(query_wait(None), Ok(None));
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

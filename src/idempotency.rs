//! `Idempotency-Key` (IETF httpapi draft): the header, the request's
//! fingerprint, and the digest of its credentials that scopes a key.

use std::fmt::Write as _;

use http::StatusCode;
use http::header::{HeaderMap, HeaderName};

use crate::problem::Problem;

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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http::header;

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
}

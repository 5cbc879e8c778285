//! Requests and responses as stores outside the process keep them: their
//! headers as bytes (a Redis hash field, a PostgreSQL `bytea` column), and
//! the parts read back into an `http` request or response.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};

/// Headers as `name:value` lines. Header values cannot hold control
/// characters, so a newline always ends one; names cannot hold `:`.
pub(crate) fn encode_headers(headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Headers from [`encode_headers`]' lines; lines that are not a valid
/// header are skipped.
pub(crate) fn decode_headers(bytes: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&line[colon + 1..]),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

/// A stored request from its parts; `None` when the method or the URI does
/// not parse (the store wrote them, so only a foreign write gets there).
pub(crate) fn request(method: &[u8], uri: &str, headers: &[u8], body: Vec<u8>) -> Option<Request<Bytes>> {
    let mut request = Request::new(Bytes::from(body));
    *request.method_mut() = Method::from_bytes(method).ok()?;
    *request.uri_mut() = uri.parse::<Uri>().ok()?;
    *request.headers_mut() = decode_headers(headers);
    Some(request)
}

/// A stored response from its parts; `None` when the status is not one.
pub(crate) fn response(status: u16, headers: &[u8], body: Vec<u8>) -> Option<Response<Bytes>> {
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = StatusCode::from_u16(status).ok()?;
    *response.headers_mut() = decode_headers(headers);
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let mut headers = HeaderMap::new();
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2: with colon"));
        headers.insert("x-bytes", HeaderValue::from_bytes(&[0xe2, 0x82, 0xac]).unwrap());
        assert_eq!(decode_headers(&encode_headers(&headers)), headers);
    }
}

//! Headers as bytes, for stores that keep requests and responses outside
//! the process (a Redis hash field, a PostgreSQL `bytea` column).

use http::{HeaderMap, HeaderName, HeaderValue};

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

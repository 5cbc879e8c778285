//! Records and headers as Redis keeps them.

use bytes::Bytes;
use http::Request;

use crate::store::stored_http;
use crate::store::{DeliveryState, JobCallback, JobError, JobId, JobRecord, JobStatus};

/// The fields of a record, in the order they are read (every `HMGET` of a
/// record reads these): status, created, updated, progress, message, result
/// status, error code, error message, owner, started, attempt, callback URL,
/// state and attempts.
pub(super) const FIELDS: [&str; 14] = [
    "st", "c", "u", "p", "m", "rs", "ec", "em", "o", "s", "at", "cu", "cs", "cn",
];

/// The fields of a durable job's request, in the order they are read:
/// method, URI, headers (as `stored_http` encodes them), body.
pub(super) const REQUEST_FIELDS: [&str; 4] = ["qm", "qu", "qh", "qb"];

/// A field's text, when it is there and UTF-8.
fn text(field: &Option<Vec<u8>>) -> Option<&str> {
    field.as_deref().and_then(|b| std::str::from_utf8(b).ok())
}

/// A status from its word ([`JobStatus::as_str`]).
pub(super) fn parse_status(word: &str) -> Option<JobStatus> {
    Some(match word {
        "pending" => JobStatus::Pending,
        "running" => JobStatus::Running,
        "succeeded" => JobStatus::Succeeded,
        "failed" => JobStatus::Failed,
        "canceled" => JobStatus::Canceled,
        _ => return None,
    })
}

/// A record from the fields of [`FIELDS`]; `None` when the job is not there.
pub(super) fn parse_record(id: JobId, fields: &[Option<Vec<u8>>]) -> Option<JobRecord> {
    let field = |i: usize| fields.get(i).and_then(text);
    let status = parse_status(field(0)?)?;
    let number = |i: usize| field(i).and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    // The code as it was written (`ErrorCode::as_str`): a known word is its
    // variant, any other text an `ErrorCode::Other` that keeps it.
    let error = match (field(6), field(7)) {
        (Some(code), message) => Some(JobError::new(code, message.unwrap_or(""))),
        _ => None,
    };
    // A literal rather than `JobRecord::new` (this crate may): a field
    // added to the record fails to compile here until it is read.
    Some(JobRecord {
        id,
        status,
        created_at_ms: number(1),
        updated_at_ms: number(2),
        started_at_ms: field(9).and_then(|t| t.parse::<u64>().ok()),
        progress: field(3).and_then(|t| t.parse().ok()),
        message: field(4).map(str::to_owned),
        result_status: field(5).and_then(|t| t.parse().ok()),
        error,
        owner: field(8).map(str::to_owned),
        // Jobs written before attempts were kept ran once.
        attempt: field(10).and_then(|t| t.parse().ok()).unwrap_or(1),
        // A callback whose state this version cannot read is kept as
        // given up rather than sent again.
        callback: field(11).map(|url| {
            JobCallback::new(url)
                .with_state(field(12).and_then(|t| t.parse().ok()).unwrap_or(DeliveryState::Failed))
                .with_attempts(field(13).and_then(|t| t.parse().ok()).unwrap_or(0))
        }),
    })
}

/// A request from the fields of [`REQUEST_FIELDS`]; `None` when the method
/// or the URI is missing or does not parse (the request was written by
/// this codec, so only a foreign write gets there).
pub(super) fn parse_request(fields: &[Option<Vec<u8>>]) -> Option<Request<Bytes>> {
    stored_http::request(
        fields.first()?.as_deref()?,
        text(fields.get(1)?)?,
        fields.get(2).and_then(Option::as_deref).unwrap_or_default(),
        fields.get(3).cloned().flatten().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, Method};

    use super::*;
    use crate::store::stored_http::encode_headers;

    #[test]
    fn requests_round_trip() {
        let mut headers = HeaderMap::new();
        headers.append("authorization", HeaderValue::from_static("Bearer t"));
        let fields = vec![
            Some(b"PUT".to_vec()),
            Some(b"http://example.com/a?b=c".to_vec()),
            Some(encode_headers(&headers)),
            Some(b"body".to_vec()),
        ];
        let request = parse_request(&fields).unwrap();
        assert_eq!(request.method(), Method::PUT);
        assert_eq!(request.uri(), "http://example.com/a?b=c");
        assert_eq!(request.headers(), &headers);
        assert_eq!(request.body(), "body");
        assert!(parse_request(&[None, None, None, None]).is_none());
    }

    #[test]
    fn records_parse() {
        let id = JobId::new();
        let fields: Vec<Option<Vec<u8>>> = ["failed", "1000", "2000", "0.5", "half", "500", "http_status", "oops"]
            .iter()
            .map(|s| Some(s.as_bytes().to_vec()))
            .collect();
        let record = parse_record(id, &fields).unwrap();
        assert_eq!(record.status, JobStatus::Failed);
        assert_eq!(record.progress, Some(0.5));
        assert_eq!(record.result_status, Some(500));
        let error = record.error.unwrap();
        assert_eq!(error.code, "http_status");
        assert_eq!(error.code, crate::store::ErrorCode::HttpStatus);
        assert_eq!(record.started_at_ms, None);
        assert!(parse_record(id, &[None, None]).is_none());
    }

    #[test]
    fn started_at_is_read_when_present() {
        let id = JobId::new();
        let mut fields: Vec<Option<Vec<u8>>> = vec![None; FIELDS.len()];
        fields[0] = Some(b"running".to_vec());
        fields[1] = Some(b"1000".to_vec());
        fields[2] = Some(b"1500".to_vec());
        fields[9] = Some(b"1500".to_vec());
        let record = parse_record(id, &fields).unwrap();
        assert_eq!(record.status, JobStatus::Running);
        assert_eq!(record.started_at_ms, Some(1500));
        fields[9] = Some(b"not a number".to_vec());
        assert_eq!(parse_record(id, &fields).unwrap().started_at_ms, None);
    }
}

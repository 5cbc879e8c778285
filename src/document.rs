//! The status document: its fields, its JSON (a small encoder, byte for
//! byte as `serde_json` writes it) and its RFC 3339 timestamps (`humantime`).

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;

use crate::json;
use crate::store::{DeliveryState, JobError, JobId, JobRecord, JobStatus};

/// A change to every status document, made by the user.
pub(crate) type MapDocument = Arc<dyn Fn(&JobRecord, &mut serde_json::Map<String, serde_json::Value>) + Send + Sync>;

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
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    callback: Option<CallbackDocument>,
    #[serde(rename = "resourceLocation", skip_serializing_if = "Option::is_none")]
    resource_location: Option<&'a str>,
}

/// The `callback` object: how the delivery stands, never where it goes
/// (the URL is the submitter's, and may carry a secret).
#[derive(Serialize)]
struct CallbackDocument {
    state: DeliveryState,
    attempts: u32,
}

impl<'a> StatusDocument<'a> {
    /// The document of `record`, naming `result` and `resource_location`.
    fn of(record: &'a JobRecord, result: Option<&'a str>, resource_location: Option<&'a str>) -> Self {
        StatusDocument {
            id: record.id,
            status: record.status,
            created_at: rfc3339(record.created_at_ms),
            updated_at: rfc3339(record.updated_at_ms),
            progress: record.progress,
            message: record.message.as_deref(),
            result,
            result_status: record.result_status,
            error: record.error.as_ref(),
            attempt: (record.attempt > 1).then_some(record.attempt),
            callback: record.callback.as_ref().map(|c| CallbackDocument {
                state: c.state,
                attempts: c.attempts,
            }),
            resource_location,
        }
    }
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
    let document = StatusDocument::of(record, result, resource_location);
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
            e.str("code", error.code.as_str());
            e.str("message", &error.message);
        });
    }
    if record.attempt > 1 {
        doc.uint("attempt", u64::from(record.attempt));
    }
    if let Some(callback) = &record.callback {
        doc.object("callback", |c| {
            c.plain("state", callback.state.as_str().as_bytes());
            c.uint("attempts", u64::from(callback.attempts));
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

/// `ms` as an RFC 3339 UTC timestamp of 20 bytes, for years 1970 to 9999
/// (all of them, in practice; `humantime` writes no others); `None` past
/// that.
pub(crate) fn rfc3339_bytes(ms: u64) -> Option<[u8; 20]> {
    let time = UNIX_EPOCH.checked_add(Duration::from_secs(ms / 1000))?;
    let mut text = String::with_capacity(20);
    // `humantime` refuses (with an error, not a panic) years past 9999.
    write!(text, "{}", humantime::format_rfc3339_seconds(time)).ok()?;
    text.as_bytes().try_into().ok()
}

/// `ms` since the Unix epoch as an RFC 3339 UTC timestamp, to the second.
pub(crate) fn rfc3339(ms: u64) -> String {
    if let Some(bytes) = rfc3339_bytes(ms) {
        return bytes.iter().map(|&b| char::from(b)).collect();
    }
    beyond_9999(ms / 1000)
}

/// A timestamp past year 9999 (a record's clock gone wrong, as `u64` allows
/// it), written as before with a year of five digits or more. The Gregorian
/// calendar repeats every 400 years (146,097 days to the day), so the date
/// is that of a time 400·k years earlier, which `humantime` writes, with
/// 400·k added to its year.
fn beyond_9999(secs: u64) -> String {
    const CYCLE_SECS: u64 = 146_097 * 86_400;
    // Into the second cycle after the epoch, years 2370 to 2769.
    let cycles = (secs / CYCLE_SECS).saturating_sub(1);
    let earlier = secs - cycles * CYCLE_SECS;
    let Some(text) = rfc3339_bytes(earlier * 1000) else {
        return String::new();
    };
    let (year, rest) = text.split_at(4);
    let year = year
        .iter()
        .fold(0u64, |year, digit| year * 10 + u64::from(digit - b'0'));
    let mut out = String::with_capacity(24);
    let _ = write!(out, "{}", year + 400 * cycles);
    out.extend(rest.iter().map(|&b| char::from(b)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ErrorCode, JobCallback};

    /// The document as `serde_json` writes [`StatusDocument`].
    fn serde_document(record: &JobRecord, result: Option<&str>, every_terminal_result: bool) -> Vec<u8> {
        serde_json::to_vec(&StatusDocument::of(
            record,
            result,
            result.filter(|_| every_terminal_result),
        ))
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
            ErrorCode::HttpStatus,
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
        // A callback shows its state and attempts, after the attempt.
        record.attempt = 2;
        for (state, attempts) in [
            (DeliveryState::Pending, 0),
            (DeliveryState::Delivered, 1),
            (DeliveryState::Failed, u32::MAX),
        ] {
            let callback = JobCallback::new("https://user:secret@hooks.example.com/done?token=t")
                .with_state(state)
                .with_attempts(attempts);
            record.callback = Some(callback);
            assert_same_document(&record, Some("/r"), true);
        }
        record.attempt = 1;
        assert_same_document(&record, None, false);
        record.callback = None;
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
    fn callbacks_show_their_state_never_their_url() {
        let callback = JobCallback::new("https://hooks.example.com/secret-path")
            .with_state(DeliveryState::Delivered)
            .with_attempts(3);
        let record = JobRecord::new(JobId::new(), JobStatus::Succeeded, 0, 0).with_callback(Some(callback));
        let document = status_document(&record, None, false, None);
        let value: serde_json::Value = serde_json::from_slice(&document).unwrap();
        assert_eq!(
            value["callback"],
            serde_json::json!({"state": "delivered", "attempts": 3})
        );
        assert!(!String::from_utf8_lossy(&document).contains("secret-path"));
        let plain = JobRecord::new(JobId::new(), JobStatus::Succeeded, 0, 0);
        let value: serde_json::Value = serde_json::from_slice(&status_document(&plain, None, false, None)).unwrap();
        assert!(value.get("callback").is_none(), "{value}");
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
}

//! One event of a stream, in the `text/event-stream` format, made once per
//! change and shared by every stream of the job.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

use super::hub::Frame;
use crate::config::Config;
use crate::response::monitor_document;
use crate::store::JobRecord;

/// The event of `record`: named by its status word, with the status
/// document the monitor answers (its links in the completion style) as
/// data.
pub(crate) fn frame_of(config: &Config, record: &JobRecord) -> Frame {
    let (document, _) = monitor_document(config, record);
    let mut out = BytesMut::with_capacity(document.len() + 64);
    // Made once per change of the job, whatever the number of streams.
    let _ = write!(out, "id: {}\nevent: {}\n", record.updated_at_ms, record.status.as_str());
    // A compact JSON document has no line breaks; a mapped one written
    // otherwise still makes a valid event, a `data:` line per line.
    for line in document.split(|&b| b == b'\n') {
        out.put_slice(b"data: ");
        out.put_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    Frame {
        id: record.updated_at_ms,
        terminal: record.status.is_terminal(),
        bytes: out.freeze(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{JobId, JobStatus};

    #[test]
    fn an_event_is_id_name_and_the_document() {
        let id = JobId::new();
        let record = JobRecord::new(id, JobStatus::Running, 1_000, 1_234).with_progress(Some(0.5));
        let frame = frame_of(&Config::default(), &record);
        let text = std::str::from_utf8(&frame.bytes).unwrap();
        let mut lines = text.split('\n');
        assert_eq!(lines.next(), Some("id: 1234"));
        assert_eq!(lines.next(), Some("event: running"));
        let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
        let document: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(document["progress"], 0.5);
        assert_eq!(document["id"], id.to_string());
        assert_eq!((lines.next(), lines.next(), lines.next()), (Some(""), Some(""), None));
        assert_eq!((frame.id, frame.terminal), (1_234, false));
    }
}

//! Status documents as the client reads them, whoever wrote them.

use serde_json::{Map, Value};

/// Where a job stands, as a status document says it.
///
/// The words of every common style are understood, in any case and with or
/// without `_`, `-` or spaces: this crate's (`pending`, `running`,
/// `succeeded`, `failed`, `canceled`), Microsoft's REST guidelines'
/// (`NotStarted`, `Running`, `Succeeded`, `Failed`, `Canceled`) and common
/// variants (`queued`, `InProgress`, `completed`, `cancelled`, …). A Google
/// AIP-151 operation (`"done": true|false`) is understood too.
///
/// ```
/// use tower_accepted::client::Status;
///
/// assert_eq!(Status::from_word("NotStarted"), Some(Status::NotStarted));
/// assert_eq!(Status::from_word("in_progress"), Some(Status::Running));
/// assert_eq!(Status::from_word("cancelled"), Some(Status::Canceled));
/// assert!(Status::Succeeded.is_terminal());
/// assert_eq!(Status::from_word("sleeping"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// Accepted, not started yet (`pending`, `NotStarted`, `queued`).
    NotStarted,
    /// Running (`running`, `InProgress`, `processing`).
    Running,
    /// Ended with a result (`succeeded`, `completed`, `done`).
    Succeeded,
    /// Ended without a result, or with an error response (`failed`).
    Failed,
    /// Canceled (`canceled`, `cancelled`).
    Canceled,
}

impl Status {
    /// The status named by `word`, if it is one this client knows.
    pub fn from_word(word: &str) -> Option<Self> {
        let mut key = [0u8; 24];
        let mut len = 0;
        for b in word.bytes().filter(|b| !matches!(b, b'_' | b'-' | b' ')) {
            *key.get_mut(len)? = b.to_ascii_lowercase();
            len += 1;
        }
        Some(match key.get(..len)? {
            b"notstarted" | b"pending" | b"queued" | b"accepted" | b"waiting" | b"scheduled" => Self::NotStarted,
            b"running" | b"inprogress" | b"started" | b"processing" | b"executing" | b"creating" | b"updating"
            | b"deleting" | b"canceling" | b"cancelling" => Self::Running,
            b"succeeded" | b"success" | b"successful" | b"completed" | b"complete" | b"done" => Self::Succeeded,
            b"failed" | b"failure" | b"error" | b"errored" => Self::Failed,
            b"canceled" | b"cancelled" | b"aborted" => Self::Canceled,
            _ => return None,
        })
    }

    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Canceled)
    }
}

/// The error a status document reports for a failed job: its `error`
/// member (`{"code": …, "message": …}`, as this crate and Microsoft's
/// guidelines write it, or a plain string).
///
/// ```
/// use tower_accepted::client::StatusDocument;
///
/// let doc = StatusDocument::parse(br#"{"status":"failed","error":{"code":"panicked","message":"boom"}}"#).unwrap();
/// let error = doc.error().unwrap();
/// assert_eq!(error.code(), Some("panicked"));
/// assert_eq!(error.message(), Some("boom"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct OperationError {
    code: Option<String>,
    message: Option<String>,
}

impl OperationError {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::String(message) => Some(Self {
                code: None,
                message: Some(message.clone()),
            }),
            Value::Object(object) => {
                let text = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_owned);
                // Google AIP-193 errors carry a numeric `code`.
                let code = text("code").or_else(|| object.get("code").and_then(Value::as_i64).map(|c| c.to_string()));
                Some(Self {
                    code,
                    message: text("message"),
                })
            }
            _ => None,
        }
    }

    /// The machine-readable code (`error.code`), such as `panicked` or
    /// `timeout`.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The human-readable message (`error.message`).
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }
}

impl std::fmt::Display for OperationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.code, &self.message) {
            (Some(code), Some(message)) => write!(f, "{code}: {message}"),
            (Some(text), None) | (None, Some(text)) => f.write_str(text),
            (None, None) => f.write_str("no details"),
        }
    }
}

/// A status document from a status monitor, read leniently: what the
/// following client understood of it, and the whole JSON object.
///
/// - `status`: see [`Status`] (or `done` for Google AIP-151 operations);
/// - `progress` from 0 to 1 (this crate), or `percentComplete` from 0 to 100
///   (Azure);
/// - `message`;
/// - `error` for failed jobs, see [`OperationError`];
/// - the result: `resourceLocation` (Microsoft's guidelines) or `result`
///   (this crate) when it is a link.
///
/// Progress callbacks ([`FollowLayer::on_status`](super::FollowLayer::on_status))
/// receive these, and so do the errors of failed and canceled jobs.
///
/// ```
/// use tower_accepted::client::{Status, StatusDocument};
///
/// let doc = StatusDocument::parse(br#"{"status":"Running","percentComplete":40}"#).unwrap();
/// assert_eq!(doc.status(), Status::Running);
/// assert_eq!(doc.progress(), Some(0.4));
///
/// let doc = StatusDocument::parse(br#"{"id":"9b2f","status":"succeeded","result":"/jobs/9b2f/result"}"#).unwrap();
/// assert_eq!(doc.result_link(), Some("/jobs/9b2f/result"));
/// assert_eq!(doc.json()["id"], "9b2f");
///
/// assert!(StatusDocument::parse(br#"{"words": 3500}"#).is_none());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct StatusDocument {
    status: Status,
    status_word: String,
    progress: Option<f64>,
    message: Option<String>,
    error: Option<OperationError>,
    result_link: Option<String>,
    result_status: Option<u16>,
    json: Map<String, Value>,
}

impl StatusDocument {
    /// Reads a status document from JSON bytes: `None` when they are not a
    /// JSON object with a `status` (or `done`) this client knows.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        match serde_json::from_slice(bytes).ok()? {
            Value::Object(json) => Self::from_json(json),
            _ => None,
        }
    }

    /// Reads a status document from a JSON object; see [`parse`](Self::parse).
    pub fn from_json(json: Map<String, Value>) -> Option<Self> {
        let (status, status_word) = match json.get("status") {
            Some(Value::String(word)) => (Status::from_word(word)?, word.clone()),
            // Google AIP-151: `done`, then `error` or `response`.
            _ => match json.get("done") {
                Some(Value::Bool(false)) => (Status::Running, "running".to_owned()),
                Some(Value::Bool(true)) if json.contains_key("error") => (Status::Failed, "failed".to_owned()),
                Some(Value::Bool(true)) => (Status::Succeeded, "succeeded".to_owned()),
                _ => return None,
            },
        };
        let number = |key: &str| json.get(key).and_then(Value::as_f64).filter(|n| n.is_finite());
        let progress = number("progress")
            .map(|p| if p > 1.0 { p / 100.0 } else { p })
            .or_else(|| number("percentComplete").map(|p| p / 100.0))
            .map(|p| p.clamp(0.0, 1.0));
        let text = |key: &str| json.get(key).and_then(Value::as_str).map(str::to_owned);
        let message = text("message");
        let error = json.get("error").and_then(OperationError::from_value);
        let result_link = text("resourceLocation").or_else(|| text("result"));
        let result_status = json
            .get("result_status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok());
        Some(Self {
            status,
            status_word,
            progress,
            message,
            error,
            result_link,
            result_status,
            json,
        })
    }

    /// Where the job stands.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The status word as the server wrote it (`"Running"`, `"succeeded"`).
    pub fn status_word(&self) -> &str {
        &self.status_word
    }

    /// Progress from 0 to 1, when the server reports it.
    pub fn progress(&self) -> Option<f64> {
        self.progress
    }

    /// The `message` member, when there is one.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The `error` member, when there is one.
    pub fn error(&self) -> Option<&OperationError> {
        self.error.as_ref()
    }

    /// The link to the result (`resourceLocation`, or `result` when it is a
    /// string), as written: possibly relative.
    pub fn result_link(&self) -> Option<&str> {
        self.result_link.as_deref()
    }

    /// The whole document.
    pub fn json(&self) -> &Map<String, Value> {
        &self.json
    }

    /// Whether the job, though `failed`, left a response to fetch: this
    /// crate's servers mark a handler's error response with `result_status`
    /// and `error.code = "http_status"`, and replay it at the result link.
    pub(crate) fn has_stored_response(&self) -> bool {
        self.result_status.is_some() || self.error.as_ref().and_then(OperationError::code) == Some("http_status")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_of_every_style() {
        for (word, status) in [
            ("pending", Status::NotStarted),
            ("NotStarted", Status::NotStarted),
            ("not_started", Status::NotStarted),
            ("RUNNING", Status::Running),
            ("In Progress", Status::Running),
            ("Succeeded", Status::Succeeded),
            ("failed", Status::Failed),
            ("Canceled", Status::Canceled),
            ("cancelled", Status::Canceled),
        ] {
            assert_eq!(Status::from_word(word), Some(status), "{word}");
        }
        for word in ["", "ok", "x".repeat(100).as_str(), "runningg"] {
            assert_eq!(Status::from_word(word), None, "{word}");
        }
    }

    #[test]
    fn documents() {
        let doc = StatusDocument::parse(br#"{"status":"running","progress":0.25,"message":"page 1"}"#).unwrap();
        assert_eq!(doc.progress(), Some(0.25));
        assert_eq!(doc.message(), Some("page 1"));
        assert!(!doc.has_stored_response());
        let doc = StatusDocument::parse(
            br#"{"status":"failed","result":"/r","result_status":500,"error":{"code":"http_status","message":"x"}}"#,
        )
        .unwrap();
        assert!(doc.has_stored_response());
        assert_eq!(doc.result_link(), Some("/r"));
        let doc = StatusDocument::parse(br#"{"done":true,"error":{"code":3,"message":"bad"}}"#).unwrap();
        assert_eq!(doc.status(), Status::Failed);
        assert_eq!(doc.error().unwrap().code(), Some("3"));
        let doc = StatusDocument::parse(br#"{"status":"Failed","error":"disk full","result":{"a":1}}"#).unwrap();
        assert_eq!(doc.error().unwrap().to_string(), "disk full");
        assert_eq!(doc.result_link(), None);
        for bad in [&b"[]"[..], b"not json", br#"{"status":7}"#, br#"{"status":"sleeping"}"#] {
            assert!(StatusDocument::parse(bad).is_none());
        }
    }
}

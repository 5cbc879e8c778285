//! Why a job failed: [`JobError`] and its typed [`ErrorCode`].

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a job failed: a machine-readable code and a human-readable message,
/// as the status document's `error` and the result route's problem document
/// show them.
///
/// `#[non_exhaustive]`: build one with [`JobError::new`]; its fields stay
/// readable (and writable) as they are.
///
/// ```
/// use tower_accepted::store::{ErrorCode, JobError};
///
/// let error = JobError::new(ErrorCode::Timeout, "the job ran longer than 30s");
/// assert_eq!(error.code, ErrorCode::Timeout);
/// assert_eq!(error.code, "timeout");
/// assert_eq!(error.message, "the job ran longer than 30s");
///
/// // A store reads back whatever code it kept, known or not.
/// let custom = JobError::new("quota_exceeded", "over quota");
/// assert_eq!(custom.code.as_str(), "quota_exceeded");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JobError {
    /// Machine-readable code, such as [`ErrorCode::Timeout`] (`"timeout"`).
    pub code: ErrorCode,
    /// Human-readable explanation, safe to show to the client.
    pub message: String,
}

impl JobError {
    /// An error with a code (an [`ErrorCode`], or its text) and a message.
    pub fn new(code: impl Into<ErrorCode>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The machine-readable code of a [`JobError`]: the `error.code` of status
/// and problem documents.
///
/// Each code is written as one word (see [`as_str`](Self::as_str)), on the
/// wire and in stores. A code this version does not know, read from a store
/// or written by an application, is [`Other`](Self::Other) and keeps its
/// text, so that any string round-trips; a known word always parses to its
/// own variant, never to `Other`. `#[non_exhaustive]`: codes may be added,
/// so a `match` needs a `_` arm (or compare [`as_str`](Self::as_str)).
///
/// ```
/// use tower_accepted::store::ErrorCode;
///
/// assert_eq!(ErrorCode::ResultTooLarge.as_str(), "result_too_large");
/// assert_eq!("panicked".parse::<ErrorCode>(), Ok(ErrorCode::Panicked));
/// let other = ErrorCode::from("quota_exceeded");
/// assert!(matches!(&other, ErrorCode::Other(code) if code.as_str() == "quota_exceeded"));
/// assert_eq!(other.to_string(), "quota_exceeded");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `http_status`: the handler answered with a status of 400 or above;
    /// its response is stored.
    HttpStatus,
    /// `panicked`: the handler panicked.
    Panicked,
    /// `error`: the wrapped service, or the response body, returned an
    /// error.
    Error,
    /// `timeout`: the job ran longer than the configured timeout.
    Timeout,
    /// `lost`: the process running the job went away (only stores shared
    /// between processes can tell).
    Lost,
    /// `result_too_large`: the response body was larger than the configured
    /// limit.
    ResultTooLarge,
    /// `shutdown`: the server shut down before the job finished.
    Shutdown,
    /// A code this version does not know, as it was written.
    Other(OtherCode),
}

/// The text of an [`ErrorCode::Other`]: never one of the known words, which
/// have variants of their own. Made by [`ErrorCode::from`] or by parsing.
///
/// ```
/// use tower_accepted::store::ErrorCode;
///
/// let ErrorCode::Other(code) = ErrorCode::from(String::from("quota_exceeded")) else {
///     unreachable!("not a known code")
/// };
/// assert_eq!(code.as_str(), "quota_exceeded");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OtherCode(Box<str>);

impl OtherCode {
    /// The code as it was written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OtherCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ErrorCode {
    /// The code as documents and stores spell it, such as `"timeout"`.
    ///
    /// ```
    /// use tower_accepted::store::ErrorCode;
    ///
    /// assert_eq!(ErrorCode::HttpStatus.as_str(), "http_status");
    /// assert_eq!(ErrorCode::from("x-custom").as_str(), "x-custom");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            Self::HttpStatus => "http_status",
            Self::Panicked => "panicked",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::Lost => "lost",
            Self::ResultTooLarge => "result_too_large",
            Self::Shutdown => "shutdown",
            Self::Other(code) => code.as_str(),
        }
    }

    /// The known code spelled `word`, if it is one.
    fn known(word: &str) -> Option<Self> {
        Some(match word {
            "http_status" => Self::HttpStatus,
            "panicked" => Self::Panicked,
            "error" => Self::Error,
            "timeout" => Self::Timeout,
            "lost" => Self::Lost,
            "result_too_large" => Self::ResultTooLarge,
            "shutdown" => Self::Shutdown,
            _ => return None,
        })
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ErrorCode {
    fn from(code: &str) -> Self {
        Self::known(code).unwrap_or_else(|| Self::Other(OtherCode(code.into())))
    }
}

impl From<String> for ErrorCode {
    fn from(code: String) -> Self {
        Self::known(&code).unwrap_or_else(|| Self::Other(OtherCode(code.into_boxed_str())))
    }
}

impl FromStr for ErrorCode {
    /// Every string is a code: a known word or an [`ErrorCode::Other`].
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::from(s))
    }
}

impl AsRef<str> for ErrorCode {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// As its word, a JSON string: what the status document's `error.code`
/// always was.
impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words of the string constants that `ErrorCode` replaced, which
    /// status documents, problem documents and Redis hashes already hold.
    const WIRE: [(ErrorCode, &str); 7] = [
        (ErrorCode::HttpStatus, "http_status"),
        (ErrorCode::Panicked, "panicked"),
        (ErrorCode::Error, "error"),
        (ErrorCode::Timeout, "timeout"),
        (ErrorCode::Lost, "lost"),
        (ErrorCode::ResultTooLarge, "result_too_large"),
        (ErrorCode::Shutdown, "shutdown"),
    ];

    #[test]
    fn known_codes_keep_their_words() {
        for (code, word) in WIRE {
            assert_eq!(code.as_str(), word);
            assert_eq!(code.to_string(), word);
            assert_eq!(ErrorCode::from(word), code);
            assert_eq!(ErrorCode::from(word.to_owned()), code);
            assert_eq!(word.parse::<ErrorCode>(), Ok(code.clone()));
            assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{word}\""));
            assert_eq!(serde_json::from_str::<ErrorCode>(&format!("\"{word}\"")).unwrap(), code);
        }
    }

    #[test]
    fn any_other_string_round_trips() {
        for word in ["", "custom_code", "Timeout", "timeout ", "odd \"code\"\n", "ünï"] {
            let code = ErrorCode::from(word);
            assert!(
                matches!(&code, ErrorCode::Other(other) if other.as_str() == word),
                "{word:?}"
            );
            assert_eq!(code.as_str(), word);
            assert_eq!(code, word);
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, serde_json::to_string(word).unwrap());
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn job_errors_serialize_as_before() {
        let error = JobError::new(ErrorCode::Timeout, "slow");
        assert_eq!(
            serde_json::to_string(&error).unwrap(),
            r#"{"code":"timeout","message":"slow"}"#
        );
        let back: JobError = serde_json::from_str(r#"{"code":"x","message":"y"}"#).unwrap();
        assert_eq!(back, JobError::new("x", "y"));
    }
}

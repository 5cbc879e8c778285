//! [`FollowError`]: every way following a job can end without its result.

use std::borrow::Cow;
use std::time::Duration;

use http::Uri;

use super::document::StatusDocument;
use crate::BoxError;

/// Why [`Follow`](super::Follow) could not give the final response.
///
/// Every outcome is an error of its own, never a hang: the job failed or was
/// canceled, its monitor expired or forgot it, the deadline or the poll
/// limit was reached, the monitor answered something this client does not
/// understand or sent it round in circles, or the wrapped client itself
/// failed (`E` is its error type).
///
/// A job whose handler answered an error status (a `500`, a `404`) is not an
/// error here: its response is the final response, as a synchronous call
/// would have given it.
///
/// ```
/// use tower_accepted::client::FollowError;
///
/// fn explain(error: &FollowError<std::io::Error>) -> String {
///     match error {
///         FollowError::Failed(doc) => format!("the job failed: {:?}", doc.error().and_then(|e| e.code())),
///         FollowError::Canceled(_) => "the job was canceled".into(),
///         FollowError::Expired { .. } => "the job expired; submit it again".into(),
///         FollowError::DeadlineExceeded { monitor, .. } => format!("still running; see {monitor}"),
///         other => other.to_string(),
///     }
/// }
/// let error = FollowError::<std::io::Error>::Expired { url: "/jobs/1".parse().unwrap() };
/// assert_eq!(explain(&error), "the job expired; submit it again");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum FollowError<E> {
    /// The wrapped client failed (connection refused, timeout, …).
    Service(E),
    /// The body of a monitor's answer could not be read.
    Body(BoxError),
    /// The job ended as failed without a response to replay; the status
    /// document says why ([`StatusDocument::error`]).
    Failed(Box<StatusDocument>),
    /// The job was canceled.
    Canceled(Box<StatusDocument>),
    /// The job, or its result, expired: the server answered `410 Gone`.
    /// Submit the request again.
    Expired {
        /// The URL that answered `410`.
        url: Uri,
    },
    /// The status monitor does not know the job (`404`): it was forgotten,
    /// or belongs to someone else.
    NotFound {
        /// The URL that answered `404`.
        url: Uri,
    },
    /// The job did not end before the deadline
    /// ([`FollowLayer::deadline`](super::FollowLayer::deadline)). It may
    /// still be running: its monitor is in `monitor`.
    DeadlineExceeded {
        /// The deadline that passed.
        deadline: Duration,
        /// The status monitor, to look again later.
        monitor: Uri,
    },
    /// The monitor was polled [`max_polls`](super::FollowLayer::max_polls)
    /// times and the job had not ended.
    TooManyPolls {
        /// How many polls were made.
        polls: u32,
        /// The status monitor, to look again later.
        monitor: Uri,
    },
    /// A monitor answered something this client does not understand: an
    /// unexpected status, a body that is no status document, a link that is
    /// no URL, a redirect without `Location`.
    Malformed {
        /// The URL whose answer was not understood.
        url: Uri,
        /// What was wrong with it.
        reason: Cow<'static, str>,
    },
    /// The monitor's redirects came back to a URL already visited, or were
    /// more than [`max_redirects`](super::FollowLayer::max_redirects).
    RedirectLoop {
        /// The URL the last redirect pointed to.
        url: Uri,
        /// Redirects followed in a row.
        redirects: u32,
    },
}

impl<E> FollowError<E> {
    /// The status document of a failed or canceled job.
    pub fn status_document(&self) -> Option<&StatusDocument> {
        match self {
            Self::Failed(doc) | Self::Canceled(doc) => Some(doc),
            _ => None,
        }
    }

    pub(crate) fn malformed(url: &Uri, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Malformed {
            url: url.clone(),
            reason: reason.into(),
        }
    }
}

impl<E: std::fmt::Display> std::fmt::Display for FollowError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Service(e) => write!(f, "the HTTP client failed: {e}"),
            Self::Body(e) => write!(f, "reading a status monitor's answer failed: {e}"),
            Self::Failed(doc) => match doc.error() {
                Some(error) => write!(f, "the job failed: {error}"),
                None => f.write_str("the job failed"),
            },
            Self::Canceled(_) => f.write_str("the job was canceled"),
            Self::Expired { url } => write!(f, "the job expired ({url} answered 410 Gone)"),
            Self::NotFound { url } => write!(f, "the status monitor {url} does not know the job (404)"),
            Self::DeadlineExceeded { deadline, monitor } => {
                write!(f, "the job did not end within {deadline:?}; its monitor is {monitor}")
            }
            Self::TooManyPolls { polls, monitor } => {
                write!(f, "the job did not end after {polls} polls; its monitor is {monitor}")
            }
            Self::Malformed { url, reason } => write!(f, "the answer of {url} was not understood: {reason}"),
            Self::RedirectLoop { url, redirects } => {
                write!(
                    f,
                    "redirects went round in a circle ({redirects} in a row, last to {url})"
                )
            }
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for FollowError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Service(e) => Some(e),
            Self::Body(e) => Some(&**e),
            _ => None,
        }
    }
}

//! Problem documents (RFC 9457): the body of every error the layer answers.

use bytes::Bytes;
use http::header;
use http::{Response, StatusCode};
#[cfg(test)]
use serde::Serialize;

use crate::headers::{NO_STORE, PROBLEM_JSON, seconds_value};
use crate::json;

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

/// The problem as an axum response (feature `axum`), so that a handler or
/// an extractor can return it as it is.
///
/// ```
/// use axum_core::response::IntoResponse;
/// use http::StatusCode;
/// use tower_accepted::Problem;
///
/// let response = Problem::new(StatusCode::CONFLICT).with_detail("already shipped").into_response();
/// assert_eq!(response.status(), StatusCode::CONFLICT);
/// assert_eq!(response.headers()["content-type"], "application/problem+json");
/// ```
#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for Problem {
    fn into_response(self) -> axum_core::response::Response {
        Problem::into_response(self).map(axum_core::body::Body::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! Path templates of the job routes, and which job route a path is.

use std::fmt;

use http::Method;

use crate::store::JobId;

/// A path with one `{id}` segment, such as `/jobs/{id}/result`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathTemplate {
    /// Everything before `{id}`; always ends with `/`.
    prefix: Box<str>,
    /// Everything after `{id}`; empty or starting with `/`.
    suffix: Box<str>,
}

/// Why a path template was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidTemplate(&'static str);

impl fmt::Display for InvalidTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl PathTemplate {
    pub(crate) fn parse(template: &str) -> Result<Self, InvalidTemplate> {
        if !template.starts_with('/') {
            return Err(InvalidTemplate("a path template starts with `/`"));
        }
        let Some((prefix, suffix)) = template.split_once("{id}") else {
            return Err(InvalidTemplate("a path template has one `{id}` segment"));
        };
        if suffix.contains("{id}") {
            return Err(InvalidTemplate("a path template has only one `{id}` segment"));
        }
        if !prefix.ends_with('/') || !(suffix.is_empty() || suffix.starts_with('/')) {
            return Err(InvalidTemplate("`{id}` must be a whole path segment"));
        }
        let bad = |s: &str| {
            s.contains(['{', '}', '?', '#', '%', ' '])
                || s.contains("//")
                || s.split('/').any(|seg| seg == "." || seg == "..")
                || !s.is_ascii()
        };
        if bad(prefix) || bad(suffix) || suffix.ends_with('/') {
            return Err(InvalidTemplate(
                "a path template is plain ASCII segments, without `.`/`..`, empty segments, `%`, `?`, `#` or braces",
            ));
        }
        Ok(Self {
            prefix: prefix.into(),
            suffix: suffix.into(),
        })
    }

    /// The id text of `path` when it has this template's shape.
    pub(crate) fn match_path<'p>(&self, path: &'p str) -> Option<&'p str> {
        let rest = path.strip_prefix(&*self.prefix)?;
        let id = rest.strip_suffix(&*self.suffix)?;
        (!id.is_empty() && !id.contains('/')).then_some(id)
    }

    /// Whether `path` lies in this template's part of the URL space (under
    /// its prefix).
    pub(crate) fn covers(&self, path: &str) -> bool {
        path.starts_with(&*self.prefix)
    }

    /// The collection path: the prefix without its last `/` (`/jobs`), unless
    /// that is the root.
    pub(crate) fn collection(&self) -> Option<&str> {
        let trimmed = self.prefix.strip_suffix('/').unwrap_or(&self.prefix);
        (!trimmed.is_empty()).then_some(trimmed)
    }

    /// The length of a rendered path.
    pub(crate) fn len(&self) -> usize {
        self.prefix.len() + 36 + self.suffix.len()
    }

    /// The path of job `id`.
    pub(crate) fn render(&self, id: JobId, out: &mut String) {
        let mut buffer = uuid::Uuid::encode_buffer();
        out.reserve(self.prefix.len() + 36 + self.suffix.len());
        out.push_str(&self.prefix);
        out.push_str(id.as_uuid().hyphenated().encode_lower(&mut buffer));
        out.push_str(&self.suffix);
    }
}

/// What the path of a job's event stream adds to its monitor's.
pub(crate) const EVENTS: &str = "/events";

/// A request for one of the layer's own routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobRoute {
    /// The status monitor of a job.
    Monitor(JobId),
    /// The stored result of a job.
    Result(JobId),
    /// The event stream of a job: the monitor's path and `/events`.
    Events(JobId),
    /// The collection of jobs (`/jobs`).
    Collection,
    /// A path in the layer's URL space that is no job route, or names a
    /// malformed id.
    NotFound,
}

/// The monitor and result templates together.
#[derive(Debug, Clone)]
pub(crate) struct Routes {
    pub(crate) monitor: PathTemplate,
    pub(crate) result: PathTemplate,
}

impl Routes {
    /// Which job route a request for `path` is, or `None` when it is not
    /// the layer's. The layer claims its routes themselves: the monitor and
    /// result of a well-formed id (any method: others get `405`), and the
    /// collection path for `GET` and `HEAD`. Other paths under the prefix
    /// (`/jobs/stats`, `POST /jobs`, a malformed id) reach the application,
    /// unless `whole_prefix` claims everything under it (they get `404` or
    /// `405` from the layer).
    pub(crate) fn classify(&self, method: &Method, path: &str, whole_prefix: bool) -> Option<JobRoute> {
        let parse = |id: &str| id.parse::<JobId>().ok();
        let claimed = |route: Option<JobRoute>| route.or(whole_prefix.then_some(JobRoute::NotFound));
        if let Some(id) = self.monitor.match_path(path) {
            return claimed(parse(id).map(JobRoute::Monitor));
        }
        // The monitor's path and `/events`, for clients that cannot ask for
        // a stream with `Accept` (a browser's `EventSource`, with no
        // headers of its own).
        if let Some(id) = path
            .strip_suffix(EVENTS)
            .and_then(|monitor| self.monitor.match_path(monitor))
            .and_then(parse)
        {
            return Some(JobRoute::Events(id));
        }
        if let Some(id) = self.result.match_path(path) {
            return claimed(parse(id).map(JobRoute::Result));
        }
        if self.monitor.collection() == Some(path) {
            let listing = method == Method::GET || method == Method::HEAD || whole_prefix;
            return listing.then_some(JobRoute::Collection);
        }
        if self.monitor.covers(path) || self.result.covers(path) {
            return claimed(None);
        }
        None
    }

    /// Like [`classify`](Self::classify), for a service mounted with
    /// `Router::nest_service` at the monitor's collection path, which sees
    /// the path with that prefix taken off; every path is a job route.
    pub(crate) fn classify_nested(&self, method: &Method, path: &str) -> JobRoute {
        if let Some(route) = self.classify(method, path, true) {
            return route;
        }
        let Some(mount) = self.monitor.collection() else {
            return JobRoute::NotFound;
        };
        if path.is_empty() || path == "/" {
            return JobRoute::Collection;
        }
        let mut full = String::with_capacity(mount.len() + path.len());
        full.push_str(mount);
        full.push_str(path);
        self.classify(method, &full, true).unwrap_or(JobRoute::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(monitor: &str, result: &str) -> Routes {
        Routes {
            monitor: PathTemplate::parse(monitor).unwrap(),
            result: PathTemplate::parse(result).unwrap(),
        }
    }

    #[test]
    fn templates_are_validated() {
        for bad in [
            "jobs/{id}",
            "/jobs",
            "/jobs/{id}/{id}",
            "/jobs/x{id}",
            "/jobs/{id}x",
            "/a/../{id}",
            "/a//{id}",
            "/a/{id}/",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad} should be refused");
        }
        assert!(PathTemplate::parse("/{id}").is_ok());
        assert!(PathTemplate::parse("/v1/jobs/{id}/result").is_ok());
    }

    #[test]
    fn default_layout() {
        let r = routes("/jobs/{id}", "/jobs/{id}/result");
        let id = JobId::new();
        assert_eq!(
            r.classify(&Method::GET, &format!("/jobs/{id}"), false),
            Some(JobRoute::Monitor(id))
        );
        assert_eq!(
            r.classify(&Method::GET, &format!("/jobs/{id}/result"), true),
            Some(JobRoute::Result(id))
        );
        assert_eq!(r.classify(&Method::GET, "/jobs", true), Some(JobRoute::Collection));
        assert_eq!(r.classify(&Method::GET, "/jobs/", true), Some(JobRoute::NotFound));
        assert_eq!(r.classify(&Method::GET, "/jobs/nope", true), Some(JobRoute::NotFound));
        assert_eq!(
            r.classify(&Method::GET, &format!("/jobs/{id}/other"), true),
            Some(JobRoute::NotFound)
        );
        assert_eq!(
            r.classify(&Method::GET, &format!("/jobs/{id}/"), true),
            Some(JobRoute::NotFound)
        );
        assert_eq!(r.classify(&Method::GET, "/jobsx", true), None);
        assert_eq!(r.classify(&Method::GET, "/reports", true), None);
        let mut out = String::new();
        r.result.render(id, &mut out);
        assert_eq!(out, format!("/jobs/{id}/result"));
    }

    #[test]
    fn only_the_job_routes_are_claimed_by_default() {
        let r = routes("/jobs/{id}", "/jobs/{id}/result");
        let id = JobId::new();
        let get = |path: &str| r.classify(&Method::GET, path, false);
        assert_eq!(get(&format!("/jobs/{id}")), Some(JobRoute::Monitor(id)));
        assert_eq!(get(&format!("/jobs/{id}/result")), Some(JobRoute::Result(id)));
        assert_eq!(get("/jobs"), Some(JobRoute::Collection));
        assert_eq!(r.classify(&Method::HEAD, "/jobs", false), Some(JobRoute::Collection));
        assert_eq!(
            r.classify(&Method::PUT, &format!("/jobs/{id}"), false),
            Some(JobRoute::Monitor(id))
        );
        for path in [
            "/jobs/stats",
            "/jobs/",
            "/jobs/nope/result",
            &format!("/jobs/{id}/other"),
        ] {
            assert_eq!(get(path), None, "{path}");
        }
        assert_eq!(r.classify(&Method::POST, "/jobs", false), None);
        assert_eq!(r.classify(&Method::POST, "/jobs", true), Some(JobRoute::Collection));
        assert_eq!(r.classify(&Method::GET, "/jobs/stats", true), Some(JobRoute::NotFound));
    }

    #[test]
    fn two_oh_two_layout() {
        let r = routes("/monitor/{id}", "/result/{id}");
        let id = JobId::new();
        assert_eq!(
            r.classify(&Method::GET, &format!("/monitor/{id}"), true),
            Some(JobRoute::Monitor(id))
        );
        assert_eq!(
            r.classify(&Method::GET, &format!("/result/{id}"), true),
            Some(JobRoute::Result(id))
        );
        assert_eq!(r.classify(&Method::GET, "/deferredjob", true), None);
        assert_eq!(r.classify(&Method::GET, "/monitoring", true), None);
    }

    #[test]
    fn nested_paths() {
        let r = routes("/jobs/{id}", "/jobs/{id}/result");
        let id = JobId::new();
        assert_eq!(
            r.classify_nested(&Method::GET, &format!("/{id}")),
            JobRoute::Monitor(id)
        );
        assert_eq!(
            r.classify_nested(&Method::GET, &format!("/{id}/result")),
            JobRoute::Result(id)
        );
        assert_eq!(r.classify_nested(&Method::GET, "/"), JobRoute::Collection);
        assert_eq!(r.classify_nested(&Method::GET, "/x/y"), JobRoute::NotFound);
        assert_eq!(
            r.classify_nested(&Method::GET, &format!("/jobs/{id}")),
            JobRoute::Monitor(id)
        );
    }
}

//! Path templates of the job routes, and which job route a path is.

use std::fmt;

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

/// A request for one of the layer's own routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobRoute {
    /// The status monitor of a job.
    Monitor(JobId),
    /// The stored result of a job.
    Result(JobId),
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
    /// Which job route `path` is, or `None` when the path is not the
    /// layer's.
    pub(crate) fn classify(&self, path: &str) -> Option<JobRoute> {
        let parse = |id: &str| id.parse::<JobId>().ok();
        if let Some(id) = self.monitor.match_path(path) {
            return Some(parse(id).map_or(JobRoute::NotFound, JobRoute::Monitor));
        }
        if let Some(id) = self.result.match_path(path) {
            return Some(parse(id).map_or(JobRoute::NotFound, JobRoute::Result));
        }
        if self.monitor.collection() == Some(path) {
            return Some(JobRoute::Collection);
        }
        if self.monitor.covers(path) || self.result.covers(path) {
            return Some(JobRoute::NotFound);
        }
        None
    }

    /// Like [`classify`](Self::classify), for a service mounted with
    /// `Router::nest_service` at the monitor's collection path, which sees
    /// the path with that prefix taken off; every path is a job route.
    pub(crate) fn classify_nested(&self, path: &str) -> JobRoute {
        if let Some(route) = self.classify(path) {
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
        self.classify(&full).unwrap_or(JobRoute::NotFound)
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
        assert_eq!(r.classify(&format!("/jobs/{id}")), Some(JobRoute::Monitor(id)));
        assert_eq!(r.classify(&format!("/jobs/{id}/result")), Some(JobRoute::Result(id)));
        assert_eq!(r.classify("/jobs"), Some(JobRoute::Collection));
        assert_eq!(r.classify("/jobs/"), Some(JobRoute::NotFound));
        assert_eq!(r.classify("/jobs/nope"), Some(JobRoute::NotFound));
        assert_eq!(r.classify(&format!("/jobs/{id}/other")), Some(JobRoute::NotFound));
        assert_eq!(r.classify(&format!("/jobs/{id}/")), Some(JobRoute::NotFound));
        assert_eq!(r.classify("/jobsx"), None);
        assert_eq!(r.classify("/reports"), None);
        let mut out = String::new();
        r.result.render(id, &mut out);
        assert_eq!(out, format!("/jobs/{id}/result"));
    }

    #[test]
    fn two_oh_two_layout() {
        let r = routes("/monitor/{id}", "/result/{id}");
        let id = JobId::new();
        assert_eq!(r.classify(&format!("/monitor/{id}")), Some(JobRoute::Monitor(id)));
        assert_eq!(r.classify(&format!("/result/{id}")), Some(JobRoute::Result(id)));
        assert_eq!(r.classify("/deferredjob"), None);
        assert_eq!(r.classify("/monitoring"), None);
    }

    #[test]
    fn nested_paths() {
        let r = routes("/jobs/{id}", "/jobs/{id}/result");
        let id = JobId::new();
        assert_eq!(r.classify_nested(&format!("/{id}")), JobRoute::Monitor(id));
        assert_eq!(r.classify_nested(&format!("/{id}/result")), JobRoute::Result(id));
        assert_eq!(r.classify_nested("/"), JobRoute::Collection);
        assert_eq!(r.classify_nested("/x/y"), JobRoute::NotFound);
        assert_eq!(r.classify_nested(&format!("/jobs/{id}")), JobRoute::Monitor(id));
    }
}

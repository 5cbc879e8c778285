//! Links in `Location`, `Operation-Location` and status documents, resolved
//! against the URL of the answer that carried them (RFC 3986 §5.2).

use http::Uri;
use http::uri::{Authority, Scheme};

/// `reference` resolved against `base`; `None` when it is no URI.
///
/// `base` may be absolute (`http://host/a/b`) or, for services called
/// in-process, an origin-form path (`/a/b`): links then stay paths.
pub(crate) fn resolve(base: &Uri, reference: &str) -> Option<Uri> {
    let reference = reference.trim();
    // Fragments are for the client alone.
    let reference = reference.split_once('#').map_or(reference, |(r, _)| r);
    if has_scheme(reference) {
        let uri: Uri = reference.parse().ok()?;
        let (scheme, authority) = (uri.scheme()?.clone(), uri.authority()?.clone());
        let (path, query) = split_query(uri.path_and_query().map_or("/", |pq| pq.as_str()));
        return build(Some(scheme), Some(authority), &remove_dot_segments(path), query);
    }
    if let Some(rest) = reference.strip_prefix("//") {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority: Authority = rest[..end].parse().ok()?;
        let (path, query) = split_query(&rest[end..]);
        let path = if path.is_empty() { "/" } else { path };
        let scheme = base.scheme().cloned().unwrap_or(Scheme::HTTP);
        return build(Some(scheme), Some(authority), &remove_dot_segments(path), query);
    }
    let (scheme, authority) = (base.scheme().cloned(), base.authority().cloned());
    let (ref_path, ref_query) = split_query(reference);
    let base_path = base.path();
    let path = if ref_path.is_empty() {
        let query = ref_query.or(base.query());
        return build(scheme, authority, base_path, query);
    } else if ref_path.starts_with('/') {
        remove_dot_segments(ref_path)
    } else {
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        let dir = if dir.is_empty() { "/" } else { dir };
        remove_dot_segments(&format!("{dir}{ref_path}"))
    };
    build(scheme, authority, &path, ref_query)
}

/// Whether a request to `target` goes to the origin of the request that
/// started the job (`origin`, with the `Host` it was sent with, if any).
pub(crate) fn same_origin(origin: &Uri, origin_host: Option<&str>, target: &Uri) -> bool {
    let Some(target_authority) = target.authority() else {
        // A path: the same server as the original request.
        return true;
    };
    let authority = origin.authority().map(Authority::as_str).or(origin_host);
    let same_host = authority.is_some_and(|a| a.eq_ignore_ascii_case(target_authority.as_str()));
    let same_scheme = match (origin.scheme(), target.scheme()) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    same_host && same_scheme
}

fn has_scheme(reference: &str) -> bool {
    let Some((scheme, _)) = reference.split_once(':') else {
        return false;
    };
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !scheme.contains('/')
}

fn split_query(text: &str) -> (&str, Option<&str>) {
    match text.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (text, None),
    }
}

fn build(scheme: Option<Scheme>, authority: Option<Authority>, path: &str, query: Option<&str>) -> Option<Uri> {
    let mut path_and_query = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    path_and_query.push_str(if path.is_empty() { "/" } else { path });
    if let Some(query) = query {
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    let mut builder = Uri::builder();
    if let (Some(scheme), Some(authority)) = (scheme, authority) {
        builder = builder.scheme(scheme).authority(authority);
    }
    builder.path_and_query(path_and_query).build().ok()
}

/// RFC 3986 §5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {
                if i == last {
                    output.push("");
                }
            }
            ".." => {
                if output.len() > 1 {
                    output.pop();
                }
                if i == last {
                    output.push("");
                }
            }
            s => output.push(s),
        }
    }
    let joined = output.join("/");
    if path.starts_with('/') && !joined.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(base: &str, reference: &str) -> String {
        resolve(&base.parse().unwrap(), reference).unwrap().to_string()
    }

    #[test]
    fn rfc3986_examples() {
        let base = "http://a/b/c/d;p?q";
        for (reference, expected) in [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("g/../h", "http://a/b/c/h"),
            ("https://other:8443/x/../y?z", "https://other:8443/y?z"),
        ] {
            assert_eq!(r(base, reference), expected, "{reference}");
        }
    }

    #[test]
    fn paths_stay_paths() {
        assert_eq!(r("/reports", "/jobs/1"), "/jobs/1");
        assert_eq!(r("/jobs/1", "1/result"), "/jobs/1/result");
        assert_eq!(r("/jobs/1", "http://h:1/jobs/1/result"), "http://h:1/jobs/1/result");
        assert!(resolve(&"/x".parse().unwrap(), "http://bad host/").is_none());
        assert!(resolve(&"/x".parse().unwrap(), "/a b").is_none());
    }

    #[test]
    fn origins() {
        let origin: Uri = "http://127.0.0.1:80/reports".parse().unwrap();
        assert!(same_origin(&origin, None, &"/jobs/1".parse().unwrap()));
        assert!(same_origin(
            &origin,
            None,
            &"http://127.0.0.1:80/jobs/1".parse().unwrap()
        ));
        assert!(!same_origin(
            &origin,
            None,
            &"http://evil.example/jobs/1".parse().unwrap()
        ));
        assert!(!same_origin(
            &origin,
            None,
            &"https://127.0.0.1:80/jobs/1".parse().unwrap()
        ));
        let path: Uri = "/reports".parse().unwrap();
        assert!(same_origin(
            &path,
            Some("api.example"),
            &"https://api.example/jobs/1".parse().unwrap()
        ));
        assert!(!same_origin(
            &path,
            None,
            &"https://api.example/jobs/1".parse().unwrap()
        ));
    }
}

//! Links in `Location`, `Operation-Location` and status documents, resolved
//! against the URL of the answer that carried them (RFC 3986 §5.2, by
//! `iri-string`), into the `http::Uri` of the next request.

use std::borrow::Cow;

use http::Uri;
use http::uri::{Authority, PathAndQuery};
use iri_string::format::ToDedicatedString;
use iri_string::types::{UriAbsoluteStr, UriReferenceStr, UriReferenceString};
use percent_encoding::{AsciiSet, utf8_percent_encode};

/// Characters that `http::Uri` lets through in paths and queries, for
/// parity with clients that send them as they are (`?a=b|c`, `/{id}`,
/// `?filter[name]=x`), though RFC 3986 has no place for them there. Links
/// and request URLs holding them are percent-encoded before resolution (as
/// is anything not ASCII, RFC 3987 §3.1), so that they are followed as
/// before. Spaces, controls, `<` and `>` are not: `http::Uri` refuses them
/// too. `[` and `]` are apart: an IPv6 host holds them.
const HTTP_ONLY: &AsciiSet = &AsciiSet::EMPTY
    .add(b'"')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// [`HTTP_ONLY`], and `[` and `]` outside an IPv6 host.
const HTTP_ONLY_BRACKETS: &AsciiSet = &HTTP_ONLY.add(b'[').add(b']');

/// The stand-in origin of a base that is only a path (a service called
/// in-process). `.invalid` names no host (RFC 6761); `http` is the scheme
/// a network-path link (`//host/x`) gets then.
const IN_PROCESS: &str = "http://in-process.invalid";

/// `reference` resolved against `base` (RFC 3986 §5.2, by `iri-string`);
/// `None` when it is no URI, or none a request can go to (`mailto:x`).
///
/// `base` may be absolute (`http://host/a/b`) or, for services called
/// in-process, an origin-form path (`/a/b`): links then stay paths.
pub(crate) fn resolve(base: &Uri, reference: &str) -> Option<Uri> {
    let reference = parse_reference(reference.trim())?;
    // The path and query of the base: `http::Uri` holds `*` too, which
    // names no resource; links resolve against `/` then.
    let path_and_query = base
        .path_and_query()
        .map(PathAndQuery::as_str)
        .filter(|pq| pq.starts_with('/'))
        .unwrap_or("/");
    let origin = match (base.scheme(), base.authority()) {
        (Some(scheme), Some(authority)) => Some(format!("{scheme}://{authority}")),
        _ => None,
    };
    // In-process, a link that names no origin of its own stays a path.
    let path_only = origin.is_none() && reference.scheme_str().is_none() && reference.authority_str().is_none();
    let path_and_query = utf8_percent_encode(path_and_query, HTTP_ONLY_BRACKETS);
    let base_text = format!("{}{path_and_query}", origin.as_deref().unwrap_or(IN_PROCESS));
    let base = UriAbsoluteStr::new(&base_text).ok()?;
    let resolved = reference.resolve_against(base).to_dedicated_string();
    // Fragments are for the client alone.
    let resolved = resolved.to_absolute();
    if path_only {
        let path = resolved.path_str();
        let mut text = String::from(if path.is_empty() { "/" } else { path });
        if let Some(query) = resolved.query_str() {
            text.push('?');
            text.push_str(query);
        }
        return text.parse().ok();
    }
    // `urn:`, `mailto:` and the like name no server to ask.
    resolved.authority_str()?;
    resolved.as_str().parse().ok()
}

/// `text` as a URI reference: as it is when RFC 3986 allows it, or else
/// with what only `http::Uri` allows percent-encoded: first all but `[` and
/// `]` (an IPv6 host's), then those too.
fn parse_reference(text: &str) -> Option<Cow<'_, UriReferenceStr>> {
    if let Ok(reference) = UriReferenceStr::new(text) {
        return Some(Cow::Borrowed(reference));
    }
    [HTTP_ONLY, HTTP_ONLY_BRACKETS].into_iter().find_map(|set| {
        let encoded = utf8_percent_encode(text, set).to_string();
        UriReferenceString::try_from(encoded).ok().map(Cow::Owned)
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_resolves(base: &str, reference: &str, expected: Option<&str>) {
        let resolved = resolve(&base.parse().unwrap(), reference).map(|u| u.to_string());
        assert_eq!(resolved.as_deref(), expected, "{reference}");
    }

    fn r(base: &str, reference: &str) -> String {
        resolve(&base.parse().unwrap(), reference).unwrap().to_string()
    }

    /// RFC 3986 §5.4.1, every normal example, as `http::Uri` can hold the
    /// result: it has no fragment (a fragment is for the client alone, and
    /// is dropped), always writes a path (`http://g/` for `http://g`), and
    /// holds no URI without an authority (`g:h`: no request can go there).
    #[test]
    fn rfc3986_normal_examples() {
        let base = "http://a/b/c/d;p?q";
        for (reference, expected) in [
            ("g:h", None),
            ("g", Some("http://a/b/c/g")),
            ("./g", Some("http://a/b/c/g")),
            ("g/", Some("http://a/b/c/g/")),
            ("/g", Some("http://a/g")),
            ("//g", Some("http://g/")),
            ("?y", Some("http://a/b/c/d;p?y")),
            ("g?y", Some("http://a/b/c/g?y")),
            ("#s", Some("http://a/b/c/d;p?q")),
            ("g#s", Some("http://a/b/c/g")),
            ("g?y#s", Some("http://a/b/c/g?y")),
            (";x", Some("http://a/b/c/;x")),
            ("g;x", Some("http://a/b/c/g;x")),
            ("g;x?y#s", Some("http://a/b/c/g;x?y")),
            ("", Some("http://a/b/c/d;p?q")),
            (".", Some("http://a/b/c/")),
            ("./", Some("http://a/b/c/")),
            ("..", Some("http://a/b/")),
            ("../", Some("http://a/b/")),
            ("../g", Some("http://a/b/g")),
            ("../..", Some("http://a/")),
            ("../../", Some("http://a/")),
            ("../../g", Some("http://a/g")),
        ] {
            assert_resolves(base, reference, expected);
        }
    }

    /// RFC 3986 §5.4.2, the abnormal examples, read strictly (`http:g` is
    /// no relative reference, and holds no authority: no request can go
    /// there).
    #[test]
    fn rfc3986_abnormal_examples() {
        let base = "http://a/b/c/d;p?q";
        for (reference, expected) in [
            ("../../../g", Some("http://a/g")),
            ("../../../../g", Some("http://a/g")),
            ("/./g", Some("http://a/g")),
            ("/../g", Some("http://a/g")),
            ("g.", Some("http://a/b/c/g.")),
            (".g", Some("http://a/b/c/.g")),
            ("g..", Some("http://a/b/c/g..")),
            ("..g", Some("http://a/b/c/..g")),
            ("./../g", Some("http://a/b/g")),
            ("./g/.", Some("http://a/b/c/g/")),
            ("g/./h", Some("http://a/b/c/g/h")),
            ("g/../h", Some("http://a/b/c/h")),
            ("g;x=1/./y", Some("http://a/b/c/g;x=1/y")),
            ("g;x=1/../y", Some("http://a/b/c/y")),
            ("g?y/./x", Some("http://a/b/c/g?y/./x")),
            ("g?y/../x", Some("http://a/b/c/g?y/../x")),
            ("g#s/./x", Some("http://a/b/c/g")),
            ("g#s/../x", Some("http://a/b/c/g")),
            ("http:g", None),
        ] {
            assert_resolves(base, reference, expected);
        }
    }

    #[test]
    fn absolute_links() {
        assert_eq!(
            r("http://a/b/c/d;p?q", "https://other:8443/x/../y?z"),
            "https://other:8443/y?z"
        );
        assert_eq!(r("http://a/b", " http://[::1]:8080/m/1 "), "http://[::1]:8080/m/1");
    }

    #[test]
    fn paths_stay_paths() {
        assert_eq!(r("/reports", "/jobs/1"), "/jobs/1");
        assert_eq!(r("/jobs/1", "1/result"), "/jobs/1/result");
        assert_eq!(r("/jobs/1", "http://h:1/jobs/1/result"), "http://h:1/jobs/1/result");
        assert_eq!(r("/jobs/1?x", ""), "/jobs/1?x");
        assert_eq!(r("/a/b", "../../../g?y#s"), "/g?y");
        assert_eq!(r("/a/b", "//g"), "http://g/");
        // CONNECT's authority-form names no path: links are paths.
        assert_eq!(r("a:443", "/jobs/1"), "/jobs/1");
        assert!(resolve(&"/x".parse().unwrap(), "http://bad host/").is_none());
        assert!(resolve(&"/x".parse().unwrap(), "/a b").is_none());
    }

    /// What `http::Uri` holds but RFC 3986 does not still resolves, spelt
    /// as RFC 3986 has it; what `http::Uri` refuses is no link.
    #[test]
    fn characters_http_uri_lets_through() {
        assert_eq!(r("http://a/items?filter[name]=x", "/jobs/1"), "http://a/jobs/1");
        assert_eq!(r("http://a/items?a=b|c", "jobs/1"), "http://a/jobs/1");
        assert_eq!(r("http://a/items?a=b|c", ""), "http://a/items?a=b%7Cc");
        assert_eq!(r("http://a/x/{id}/y", "z"), "http://a/x/%7Bid%7D/z");
        assert_eq!(r("http://a/x", "/jobs?page[size]=2"), "http://a/jobs?page%5Bsize%5D=2");
        assert_eq!(r("http://a/x", "/jobs/caf\u{e9}"), "http://a/jobs/caf%C3%A9");
        assert_eq!(
            r("http://a/x", "http://[::1]:8080/m?q=a|b"),
            "http://[::1]:8080/m?q=a%7Cb"
        );
        for bad in [
            "/a b",
            "/a<b",
            "/a\u{7f}",
            "/jobs/%zz",
            "foo:80",
            "mailto:x@y",
            "urn:x:y",
        ] {
            assert!(resolve(&"http://a/x".parse().unwrap(), bad).is_none(), "{bad:?}");
        }
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

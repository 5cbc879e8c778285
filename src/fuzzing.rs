//! Entry points for fuzzing and property tests: compiled only for
//! `cargo fuzz` (`--cfg fuzzing`, see `fuzz/`) and for this crate's unit
//! tests, so never part of the API.

use http::HeaderValue;
use http::header::HeaderMap;

use crate::routes::{JobRoute, PathTemplate, Routes};
use crate::store::{JobId, ListCursor};

/// Runs every parser of untrusted input on pieces of `data` (split at
/// `0xff`) and checks their invariants; panics only when one is broken.
pub fn parse_everything(data: &[u8]) {
    let mut parts = data.split(|b| *b == 0xff);
    let mut next = || parts.next().unwrap_or(&[]);
    let (template, path, prefer, key, query) = (next(), next(), next(), next(), next());
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();

    // Templates: accepted ones render and match their own paths.
    let default = Routes {
        monitor: parse_template("/jobs/{id}"),
        result: parse_template("/jobs/{id}/result"),
    };
    let mut routes = vec![default];
    if let Ok(template) = PathTemplate::parse(&text(template)) {
        let id = JobId::new();
        let mut rendered = String::new();
        template.render(id, &mut rendered);
        assert_eq!(template.match_path(&rendered), Some(id.to_string().as_str()));
        routes.push(Routes {
            result: parse_template("/other/{id}/result"),
            monitor: template,
        });
    }

    // Paths: a job route names a parsable id that renders back to the path.
    let path = text(path);
    for routes in &routes {
        for route in [
            routes.classify(&http::Method::GET, &path, false),
            routes.classify(&http::Method::POST, &path, true),
            Some(routes.classify_nested(&http::Method::GET, &path)),
        ]
        .into_iter()
        .flatten()
        {
            if let JobRoute::Monitor(id) | JobRoute::Result(id) = route {
                assert_eq!(id.to_string().parse::<JobId>().ok(), Some(id));
            }
        }
    }
    if let Ok(id) = path.parse::<JobId>() {
        assert_eq!(id.to_string(), path, "one spelling per id");
    }
    if let Ok(cursor) = path.parse::<ListCursor>() {
        assert_eq!(cursor.to_string(), path);
    }

    // Headers: any bytes a header may hold.
    let mut headers = HeaderMap::new();
    for (name, value) in [("prefer", prefer), ("idempotency-key", key)] {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    let prefs = crate::headers::preferences(&headers);
    if let Some(wait) = prefs.wait {
        assert!(wait >= std::time::Duration::ZERO);
    }
    if let Ok(Some(key)) = crate::idempotency::idempotency_key(&headers) {
        assert!(!key.is_empty() && key.len() <= 255 && key.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }

    // Query strings.
    let query = text(query);
    let _ = crate::query::query_wait(Some(&query));
    if let Ok((limit, _)) = crate::query::list_params(Some(&query), 100) {
        assert!((1..=100).contains(&limit));
    }
    let _ = crate::headers::parse_seconds(&query);
}

fn parse_template(text: &str) -> PathTemplate {
    match PathTemplate::parse(text) {
        Ok(template) => template,
        Err(e) => unreachable!("the built-in template {text} is valid: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::parse_everything;

    /// Input of every part (a template, a job path, `Prefer`, a key and a
    /// query), and the fuzz target's seeds.
    #[test]
    fn parses_the_seeds() {
        parse_everything(b"/jobs/{id}\xff/jobs/x\xffwait=1\xff\"k\"\xffwait=1&limit=2");
        parse_everything(include_bytes!("../fuzz/seeds/parsers/default"));
        parse_everything(include_bytes!("../fuzz/seeds/parsers/empty"));
        parse_everything(include_bytes!("../fuzz/seeds/parsers/hostile"));
        parse_everything(include_bytes!("../fuzz/seeds/parsers/twooh"));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

        /// What `cargo fuzz run parsers` checks, on every `cargo test`.
        #[test]
        fn every_parser_takes_any_bytes(data in prop::collection::vec(any::<u8>(), 0..300)) {
            parse_everything(&data);
        }
    }
}

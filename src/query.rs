//! Query parameters of the job routes: `?wait=` on the monitor, `?limit=`
//! and `?cursor=` on the listing, percent-decoded.

use std::time::Duration;

use http::StatusCode;

use crate::headers::{InvalidWait, parse_seconds};
use crate::problem::Problem;
use crate::store::ListCursor;

/// The `wait` query parameter, if there is one (percent-decoded).
pub(crate) fn query_wait(query: Option<&str>) -> Result<Option<Duration>, InvalidWait> {
    let Some(query) = query else { return Ok(None) };
    match form_urlencoded::parse(query.as_bytes()).find(|(name, _)| name == "wait") {
        Some((_, value)) => parse_seconds(&value).map(Some),
        None => Ok(None),
    }
}

/// `?limit=` and `?cursor=` of `GET /jobs`.
pub(crate) fn list_params(query: Option<&str>, max: usize) -> Result<(usize, Option<ListCursor>), Problem> {
    let mut limit = max;
    let mut cursor = None;
    let bad = |detail: &str| Problem::new(StatusCode::BAD_REQUEST).with_detail(detail.to_owned());
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*name {
            "limit" => {
                let valid = !value.is_empty() && value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit());
                let n: u64 = if valid { value.parse().unwrap_or(u64::MAX) } else { 0 };
                if n == 0 {
                    return Err(bad("`limit` is a whole number from 1"));
                }
                limit = usize::try_from(n).unwrap_or(usize::MAX).min(max);
            }
            "cursor" => {
                cursor = Some(
                    value
                        .parse::<ListCursor>()
                        .map_err(|_| bad("`cursor` is not one this server gave"))?,
                );
            }
            _ => {}
        }
    }
    Ok((limit, cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(query_wait(Some("wait=0%2E5")), Ok(Some(Duration::from_millis(500))));
        assert_eq!(query_wait(Some("w%61it=2")), Ok(Some(Duration::from_secs(2))));
        assert_eq!(query_wait(Some("wait=%2D1")), Err(InvalidWait));
        assert_eq!(list_params(Some("limit=%33"), 100).map(|p| p.0), Ok(3));
        assert!(list_params(Some("limit=%30"), 100).is_err());
    }

    #[test]
    fn wait_values() {
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_seconds(&"9".repeat(40)), Ok(Duration::MAX));
        for bad in ["", "-1", "1e3", "inf", "NaN", " 1", "1.2.3", ".", "+1"] {
            assert_eq!(parse_seconds(bad), Err(InvalidWait), "{bad:?}");
        }
        assert_eq!(query_wait(Some("a=1&wait=2")), Ok(Some(Duration::from_secs(2))));
        assert_eq!(query_wait(Some("wait=x")), Err(InvalidWait));
        assert_eq!(query_wait(None), Ok(None));
    }
}

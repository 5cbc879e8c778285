//! `GET /jobs`: the caller's jobs, newest first, a page at a time.

use bytes::{BufMut, Bytes, BytesMut};
use http::header;
use http::{Response, StatusCode, Uri};

use crate::config::{Completion, LayerState};
use crate::document::{result_link_shown, status_document};
use crate::headers::{JSON, NO_STORE};
use crate::problem::Problem;
use crate::response::unavailable;
use crate::store::JobStore;

/// The listing for `caller`: only with an owner function and an owner,
/// since without one ids are capabilities and a list would leak them.
pub(crate) async fn list<St: JobStore>(shared: &LayerState<St>, caller: Option<&str>, uri: &Uri) -> Response<Bytes> {
    let config = &shared.config;
    let Some(owner) = caller else {
        return Problem::new(StatusCode::NOT_FOUND)
            .with_detail("listing jobs needs an owner; job ids are the only way to a job")
            .into_response();
    };
    let (limit, after) = match crate::query::list_params(uri.query(), config.max_list) {
        Ok(params) => params,
        Err(problem) => return problem.into_response(),
    };
    let page = match crate::telemetry::store(
        &shared.telemetry.meters,
        crate::telemetry::StoreOp::List,
        shared.store.list(owner, limit, after),
    )
    .await
    {
        Ok(page) => page,
        Err(e) => return unavailable(config, &e),
    };
    let mut body = BytesMut::with_capacity(64 + page.jobs.len() * 256);
    body.put_slice(b"{\"jobs\":[");
    for (i, record) in page.jobs.iter().enumerate() {
        if i > 0 {
            body.put_u8(b',');
        }
        let every_terminal_result = config.completion == Completion::Ok;
        let result =
            result_link_shown(record, every_terminal_result).then(|| config.link(&config.routes.result, record.id));
        body.put_slice(&status_document(
            record,
            result.as_deref(),
            every_terminal_result,
            config.map_document.as_ref(),
        ));
    }
    body.put_slice(b"],\"next\":");
    match page.next {
        Some(next) => {
            body.put_u8(b'"');
            body.put_slice(next.to_string().as_bytes());
            body.put_u8(b'"');
        }
        None => body.put_slice(b"null"),
    }
    body.put_u8(b'}');
    let mut response = Response::new(body.freeze());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, JSON);
    headers.insert(header::CACHE_CONTROL, NO_STORE);
    response
}

//! The HTTP contract of DESIGN.md section 2, over real HTTP: submission,
//! status monitor (GET and HEAD), completion styles, long polling, result
//! route, cancel, errors, `Prefer`, deferral selection, the pre-acceptance
//! check, path templates and the ways to mount the layer in axum.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::http::{Method, StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use common::{Answer, HttpClient, Server, serve};
use serde_json::Value;
use tower_accepted::{AcceptedLayer, Completion, Job, Problem};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

/// Sleeps `ms` milliseconds, then answers `200` with a text body.
async fn sleep_then(Path(ms): Path<u64>) -> String {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("slept {ms} ms")
}

/// The bytes `/replay` answers with: not UTF-8, so that a lossy copy shows.
const REPLAY_BODY: &[u8] = &[0x00, 0x9f, 0x92, 0x96, 0xff, b'\n', b'o', b'k'];

/// A response with an unusual status, repeated headers and a binary body.
async fn replayable() -> Response {
    tokio::time::sleep(Duration::from_millis(50)).await;
    (
        StatusCode::NON_AUTHORITATIVE_INFORMATION,
        [(header::CONTENT_TYPE, "application/x-custom")],
        AppendHeaders([("x-report", "42"), ("x-multi", "first"), ("x-multi", "second")]),
        Bytes::from_static(REPLAY_BODY),
    )
        .into_response()
}

/// Answers with the status in the path, after a short while.
async fn with_status(Path(code): Path<u16>) -> Response {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let status = StatusCode::from_u16(code).expect("a valid status code");
    (status, [("x-handler", "status")], format!("the handler says {code}")).into_response()
}

/// Panics after a short while.
async fn panics() -> String {
    tokio::time::sleep(Duration::from_millis(20)).await;
    panic!("deliberate panic in a contract test handler");
}

/// Never ends (within any test).
async fn forever() -> &'static str {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    "never"
}

/// Reports progress at once, works a while, reports completion, answers.
async fn progress(Extension(job): Extension<Job>) -> String {
    job.set_progress(0.25);
    job.set_message("rendering page 1 of 4");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    job.set_progress(1.0);
    job.set_message("all 4 pages rendered");
    format!("report {}", job.id())
}

/// Echoes the request body.
async fn echo(body: Bytes) -> Response {
    tokio::time::sleep(Duration::from_millis(50)).await;
    ([(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

pub(crate) fn routes() -> Router {
    Router::new()
        .route("/sleep/{ms}", post(sleep_then))
        .route("/replay", post(replayable))
        .route("/status/{code}", post(with_status))
        .route("/panic", post(panics))
        .route("/forever", post(forever))
        .route("/progress", post(progress))
        .route("/echo", post(echo))
}

/// A server of [`routes`] with `layer` applied by `Router::layer`.
async fn start(layer: AcceptedLayer) -> (Server, HttpClient) {
    let server = serve(routes().layer(layer)).await;
    let client = HttpClient::new(&server);
    (server, client)
}

// ---------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------

const STATUSES: [&str; 5] = ["pending", "running", "succeeded", "failed", "canceled"];

/// Asserts an RFC 3339 timestamp (`2026-11-22T10:00:03Z`, with an optional
/// fraction and `Z` or a numeric offset) of a plausible year.
fn assert_rfc3339(text: &str) {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| b.len() >= range.end && b[range].iter().all(u8::is_ascii_digit);
    let num = |range: std::ops::Range<usize>| text[range].parse::<u32>().unwrap();
    let shape = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && matches!(b.get(10), Some(b'T' | b't'))
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19);
    assert!(shape, "not an RFC 3339 date-time: {text:?}");
    assert!((2020..3000).contains(&num(0..4)), "implausible year: {text:?}");
    assert!(
        (1..=12).contains(&num(5..7)) && (1..=31).contains(&num(8..10)),
        "bad date: {text:?}"
    );
    assert!(
        num(11..13) < 24 && num(14..16) < 60 && num(17..19) <= 60,
        "bad time: {text:?}"
    );
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        assert!(n > 0, "empty fraction: {text:?}");
        rest = &fraction[n..];
    }
    let offset_ok = rest.eq_ignore_ascii_case("z")
        || (rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':'
            && rest[1..3].bytes().chain(rest[4..6].bytes()).all(|c| c.is_ascii_digit()));
    assert!(offset_ok, "bad offset in {text:?}");
}

/// Asserts the shape of a status document; returns its id.
fn assert_status_document(doc: &Value) -> String {
    let id = doc["id"].as_str().unwrap_or_else(|| panic!("no string `id`: {doc}"));
    let uuid = Uuid::parse_str(id).unwrap_or_else(|e| panic!("`id` is not a UUID ({e}): {doc}"));
    assert_eq!(uuid.get_version_num(), 4, "`id` is not a random (v4) UUID: {doc}");
    assert_eq!(
        uuid.hyphenated().to_string(),
        id,
        "`id` is not the lower-case hyphenated form: {doc}"
    );
    let status = doc["status"]
        .as_str()
        .unwrap_or_else(|| panic!("no string `status`: {doc}"));
    assert!(STATUSES.contains(&status), "unknown status word {status:?}");
    let created = doc["created_at"]
        .as_str()
        .unwrap_or_else(|| panic!("no `created_at`: {doc}"));
    let updated = doc["updated_at"]
        .as_str()
        .unwrap_or_else(|| panic!("no `updated_at`: {doc}"));
    assert_rfc3339(created);
    assert_rfc3339(updated);
    if created.ends_with('Z') && updated.ends_with('Z') && created.len() == updated.len() {
        assert!(created <= updated, "updated_at before created_at: {doc}");
    }
    id.to_owned()
}

/// Asserts an integer `Retry-After` of at least one second; returns it.
pub(crate) fn retry_after(answer: &Answer) -> u64 {
    let value = answer
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {answer:?}"));
    let seconds: u64 = value
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is not whole seconds: {value:?}"));
    assert!(seconds >= 1, "Retry-After below 1 s: {seconds}");
    seconds
}

/// A job as its `202 Accepted` introduced it.
pub(crate) struct Accepted {
    pub(crate) id: String,
    /// The path of the monitor (`Location` without scheme and authority).
    pub(crate) monitor: String,
}

/// Asserts a `202 Accepted` for a new job per DESIGN.md §2 Submission:
/// what [`common::assert_accepted`] checks, a whole status document, and
/// none of the fields of an ended job.
pub(crate) fn assert_accepted(answer: &Answer) -> Accepted {
    let monitor = common::assert_accepted(answer);
    retry_after(answer);
    let doc = answer.json();
    let id = assert_status_document(&doc);
    for absent in ["result", "result_status", "error"] {
        assert!(doc.get(absent).is_none(), "a new job has no `{absent}`: {doc}");
    }
    let location = answer.header("location").expect("202 has a Location");
    assert!(location.contains(&id), "Location {location:?} names the job {id}");
    Accepted { id, monitor }
}

/// Submits `POST path` and asserts the `202`.
async fn submit(client: &HttpClient, path: &str) -> Accepted {
    assert_accepted(&client.post(path, Bytes::new()).await)
}

/// Polls the monitor until `until` holds for its status document (see
/// [`common::poll_until`]).
async fn poll_until(client: &HttpClient, monitor: &str, until: impl Fn(&Value) -> bool) -> Answer {
    common::poll_until(client, monitor, "the awaited state", until).await
}

/// The methods an `Allow` header lists.
fn allowed(answer: &Answer) -> BTreeSet<String> {
    answer
        .header("allow")
        .unwrap_or_else(|| panic!("405 without Allow: {answer:?}"))
        .split(',')
        .map(|m| m.trim().to_owned())
        .collect()
}

fn set(methods: &[&str]) -> BTreeSet<String> {
    methods.iter().map(|m| (*m).to_owned()).collect()
}

async fn head(client: &HttpClient, path: &str) -> Answer {
    client.send(Method::HEAD, path, &[], Bytes::new()).await
}

/// Asserts that `HEAD path` answers as `GET path` did, without a body.
async fn assert_head_mirrors_get(client: &HttpClient, path: &str, get: &Answer) {
    let head = head(client, path).await;
    assert_eq!(head.status, get.status, "HEAD {path}");
    assert!(head.body.is_empty(), "HEAD {path} has a body: {:?}", head.body);
    let names = |a: &Answer| -> BTreeSet<String> {
        a.headers
            .keys()
            .map(|n| n.as_str().to_owned())
            .filter(|n| n != "date")
            .collect()
    };
    assert_eq!(names(&head), names(get), "HEAD {path}: header names differ");
    for name in names(get) {
        if name == "content-length" {
            continue;
        }
        let values = |a: &Answer| a.headers.get_all(name.as_str()).iter().cloned().collect::<Vec<_>>();
        assert_eq!(values(&head), values(get), "HEAD {path}: header {name} differs");
    }
    if let Some(length) = head.header("content-length") {
        assert_eq!(
            length,
            get.body.len().to_string(),
            "HEAD {path}: Content-Length is the GET body's"
        );
    }
}

// ---------------------------------------------------------------------------
// Submission
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_answers_202_with_relative_links_and_status_document() {
    let (_server, client) = start(AcceptedLayer::new()).await;
    let answer = client.post("/sleep/200", "some body").await;
    let job = assert_accepted(&answer);
    assert_eq!(
        answer.header("location"),
        Some(format!("/jobs/{}", job.id).as_str()),
        "relative by default"
    );
    assert_eq!(job.monitor, format!("/jobs/{}", job.id));

    // Two submissions are two jobs with different ids.
    let other = submit(&client, "/sleep/200").await;
    assert_ne!(other.id, job.id);

    // The link works: the monitor knows the job.
    let monitor = client.get(&job.monitor).await;
    assert_eq!(monitor.json()["id"], job.id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_url_makes_every_link_absolute() {
    let layer = AcceptedLayer::new().base_url("https://api.example.com");
    let (_server, client) = start(layer).await;
    let answer = client.post("/sleep/100", Bytes::new()).await;
    let job = assert_accepted(&answer);
    let monitor_url = format!("https://api.example.com/jobs/{}", job.id);
    assert_eq!(answer.header("location"), Some(monitor_url.as_str()));
    assert_eq!(answer.header("operation-location"), Some(monitor_url.as_str()));

    let done = client.until_done(&job.monitor).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let result_url = format!("https://api.example.com/jobs/{}/result", job.id);
    assert_eq!(done.header("location"), Some(result_url.as_str()));
    assert_eq!(done.json()["result"], result_url.as_str());

    let result = client.get(&done.location()).await;
    assert_eq!(result.status, StatusCode::OK);
    assert_eq!(result.body, "slept 100 ms");

    // The monitor link of a result that is not ready is absolute too.
    let pending = submit(&client, "/forever").await;
    let not_ready = client.get(&format!("/jobs/{}/result", pending.id)).await;
    not_ready.assert_problem(StatusCode::NOT_FOUND);
    let link = not_ready.header("link").expect("a Link to the monitor");
    assert!(
        link.contains(&format!("<https://api.example.com/jobs/{}>", pending.id)),
        "{link}"
    );
}

// ---------------------------------------------------------------------------
// Monitor
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_shows_progress_and_message_while_running() {
    let (_server, client) = start(AcceptedLayer::new()).await;
    let job = submit(&client, "/progress").await;

    let running = poll_until(&client, &job.monitor, |doc| doc.get("progress").is_some()).await;
    assert_eq!(running.status, StatusCode::OK);
    assert_eq!(running.header("content-type"), Some("application/json"));
    let seconds = retry_after(&running);
    assert!(seconds <= 30, "Retry-After within the default maximum: {seconds}");
    let doc = running.json();
    assert_eq!(assert_status_document(&doc), job.id);
    assert_eq!(doc["status"], "running");
    assert_eq!(doc["progress"].as_f64(), Some(0.25));
    assert_eq!(doc["message"], "rendering page 1 of 4");
    for absent in ["result", "result_status", "error"] {
        assert!(doc.get(absent).is_none(), "a running job has no `{absent}`: {doc}");
    }
    assert_head_mirrors_get(&client, &job.monitor, &running).await;

    // The last report before the handler returned is kept.
    let done = client.until_done(&job.monitor).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let doc = done.json();
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(doc["progress"].as_f64(), Some(1.0));
    assert_eq!(doc["message"], "all 4 pages rendered");
    let result = client.get(&done.location()).await;
    assert_eq!(result.body, format!("report {}", job.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_job_redirects_with_303_to_its_replayed_result() {
    let (_server, client) = start(AcceptedLayer::new()).await;
    let job = submit(&client, "/replay").await;

    let done = client.until_done(&job.monitor).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let result_path = format!("/jobs/{}/result", job.id);
    assert_eq!(done.header("location"), Some(result_path.as_str()));
    assert_eq!(done.header("content-type"), Some("application/json"));
    assert!(
        done.header("retry-after").is_none(),
        "a finished job needs no more polling"
    );
    let doc = done.json();
    assert_eq!(assert_status_document(&doc), job.id);
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(doc["result"], result_path.as_str());
    assert_eq!(doc["result_status"], 203);
    assert!(doc.get("error").is_none(), "{doc}");
    assert_head_mirrors_get(&client, &job.monitor, &done).await;

    // The result is the handler's own response: status, headers, bytes.
    let result = client.get(&result_path).await;
    assert_eq!(result.status, StatusCode::NON_AUTHORITATIVE_INFORMATION);
    assert_eq!(result.header("content-type"), Some("application/x-custom"));
    assert_eq!(result.header("x-report"), Some("42"));
    let multi: Vec<_> = result
        .headers
        .get_all("x-multi")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(multi, ["first", "second"]);
    assert_eq!(&result.body[..], REPLAY_BODY);
    assert_head_mirrors_get(&client, &result_path, &result).await;

    // Replaying does not consume it.
    let again = client.get(&result_path).await;
    assert_eq!(again.status, result.status);
    assert_eq!(again.body, result.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_error_status_is_a_failed_job_that_still_leads_to_its_response() {
    let (_server, client) = start(AcceptedLayer::new()).await;
    for code in [400u16, 422, 500, 503] {
        let job = submit(&client, &format!("/status/{code}")).await;
        let done = client.until_done(&job.monitor).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "handler answered {code}");
        let result_path = format!("/jobs/{}/result", job.id);
        assert_eq!(done.header("location"), Some(result_path.as_str()));
        let doc = done.json();
        assert_status_document(&doc);
        assert_eq!(doc["status"], "failed", "{doc}");
        assert_eq!(doc["error"]["code"], "http_status", "{doc}");
        assert!(doc["error"]["message"].is_string(), "{doc}");
        assert_eq!(doc["result_status"], code, "{doc}");
        assert_eq!(doc["result"], result_path.as_str());

        let result = client.get(&result_path).await;
        assert_eq!(result.status.as_u16(), code);
        assert_eq!(result.header("x-handler"), Some("status"));
        assert_eq!(result.body, format!("the handler says {code}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicked_job_is_failed_in_monitor_and_500_from_result() {
    let (_server, client) = start(AcceptedLayer::new()).await;
    let job = submit(&client, "/panic").await;
    let done = client.until_done(&job.monitor).await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(done.header("location").is_none(), "no result to go to: {done:?}");
    let doc = done.json();
    assert_eq!(assert_status_document(&doc), job.id);
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["error"]["code"], "panicked");
    let message = doc["error"]["message"].as_str().expect("an error message");
    assert!(!message.contains("deliberate"), "the panic payload leaks: {message}");
    assert!(doc.get("result_status").is_none(), "{doc}");
    assert_head_mirrors_get(&client, &job.monitor, &done).await;

    let result_path = format!("/jobs/{}/result", job.id);
    let result = client.get(&result_path).await;
    let problem = result.assert_problem(StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(problem["code"], "panicked");
    assert!(
        !result.body.windows(10).any(|w| w == b"deliberate"),
        "the panic payload leaks"
    );
    assert_head_mirrors_get(&client, &result_path, &result).await;

    // The server goes on.
    let next = submit(&client, "/sleep/10").await;
    assert_eq!(client.until_done(&next.monitor).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_job_is_failed_with_504_from_result() {
    let (_server, client) = start(AcceptedLayer::new().timeout(Duration::from_millis(100))).await;
    let job = submit(&client, "/forever").await;
    let done = client.until_done(&job.monitor).await;
    assert_eq!(done.status, StatusCode::OK);
    let doc = done.json();
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["error"]["code"], "timeout");
    assert!(doc.get("result_status").is_none(), "{doc}");

    let result = client.get(&format!("/jobs/{}/result", job.id)).await;
    let problem = result.assert_problem(StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(problem["code"], "timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_ids_get_404_problem() {
    // Every path under the prefix is the layer's: malformed ids get the
    // layer's 404 rather than the application's.
    let (_server, client) = start(AcceptedLayer::new().claim_prefix(true)).await;
    // A real, finished job, so that other spellings of its id are tested
    // against something that exists.
    let job = submit(&client, "/sleep/10").await;
    assert_eq!(client.until_done(&job.monitor).await.status, StatusCode::SEE_OTHER);
    let id = &job.id;
    let unknown = Uuid::new_v4().to_string();

    let paths = [
        format!("/jobs/{unknown}"),
        format!("/jobs/{unknown}/result"),
        "/jobs/00000000-0000-0000-0000-000000000000".to_owned(),
        "/jobs/not-a-uuid".to_owned(),
        "/jobs/not-a-uuid/result".to_owned(),
        format!("/jobs/{id}/extra"),
        format!("/jobs/{id}/result/extra"),
        format!("/jobs/{id}/"),
        format!("/jobs/%7B{id}%7D"),
        format!("/jobs/{{{id}}}"),
        format!("/jobs/urn:uuid:{id}"),
        format!("/jobs/{}", id.replace('-', "")),
        format!("/jobs/{id}x"),
        format!("/jobs/x/{id}"),
        "/jobs/".to_owned(),
    ];
    for path in &paths {
        assert_not_found(&client, path).await;
    }
    // The real spelling still works.
    assert_eq!(client.get(&format!("/jobs/{id}")).await.status, StatusCode::SEE_OTHER);
}

/// Asserts that `GET` and `HEAD` of `path` get a `404` problem document.
async fn assert_not_found(client: &HttpClient, path: &str) {
    let answer = client.get(path).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "GET {path}: {answer:?}");
    answer.assert_problem(StatusCode::NOT_FOUND);
    let head = head(client, path).await;
    assert_eq!(head.status, StatusCode::NOT_FOUND, "HEAD {path}");
    assert!(head.body.is_empty(), "HEAD {path} has a body");
    assert_eq!(
        head.header("content-type"),
        Some("application/problem+json"),
        "HEAD {path}"
    );
}

/// Ids are parsed only in their lower-case hyphenated form, so that one job
/// has one URL: an upper-case spelling of an existing id is a malformed id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uppercase_spelling_of_an_existing_id_is_404() {
    let (_server, client) = start(AcceptedLayer::new().claim_prefix(true)).await;
    let job = submit(&client, "/sleep/10").await;
    assert_eq!(client.until_done(&job.monitor).await.status, StatusCode::SEE_OTHER);
    let upper = job.id.to_uppercase();
    assert_ne!(upper, job.id);
    let mixed: String = job
        .id
        .chars()
        .enumerate()
        .map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c })
        .collect();
    for path in [
        format!("/jobs/{upper}"),
        format!("/jobs/{upper}/result"),
        format!("/jobs/{mixed}"),
    ] {
        assert_not_found(&client, &path).await;
    }
    // Nor can it cancel or forget the job.
    client
        .delete(&format!("/jobs/{upper}"))
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    assert_eq!(client.get(&job.monitor).await.status, StatusCode::SEE_OTHER);
}

// ---------------------------------------------------------------------------
// Completion styles
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_created_answers_201_with_location_of_the_result() {
    let (_server, client) = start(AcceptedLayer::new().completion(Completion::Created)).await;
    for (path, code, status) in [("/sleep/20", 200, "succeeded"), ("/status/409", 409, "failed")] {
        let job = submit(&client, path).await;
        let done = client.until_done(&job.monitor).await;
        assert_eq!(done.status, StatusCode::CREATED, "{path}");
        let result_path = format!("/jobs/{}/result", job.id);
        assert_eq!(done.header("location"), Some(result_path.as_str()));
        let doc = done.json();
        assert_eq!(doc["status"], status);
        assert_eq!(doc["result"], result_path.as_str());
        assert_eq!(doc["result_status"], code);
        let result = client.get(&result_path).await;
        assert_eq!(result.status.as_u16(), code);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_ok_names_the_result_for_every_terminal_state() {
    let (_server, client) = start(AcceptedLayer::new().completion(Completion::Ok)).await;

    // While running: 200, Retry-After, no result yet.
    let canceled = submit(&client, "/forever").await;
    let running = client.get(&canceled.monitor).await;
    assert_eq!(running.status, StatusCode::OK);
    retry_after(&running);
    let doc = running.json();
    assert!(
        doc.get("result").is_none() && doc.get("resourceLocation").is_none(),
        "{doc}"
    );
    assert_eq!(client.delete(&canceled.monitor).await.status, StatusCode::NO_CONTENT);

    let succeeded = submit(&client, "/sleep/20").await;
    let failed_with_response = submit(&client, "/status/500").await;
    let failed_without = submit(&client, "/panic").await;

    let cases = [
        (&succeeded, "succeeded", None, StatusCode::OK),
        (
            &failed_with_response,
            "failed",
            Some("http_status"),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (
            &failed_without,
            "failed",
            Some("panicked"),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (&canceled, "canceled", None, StatusCode::CONFLICT),
    ];
    for (job, status, code, result_status) in cases {
        let done = client.until_done(&job.monitor).await;
        assert_eq!(done.status, StatusCode::OK, "{status}: {done:?}");
        assert_eq!(done.header("content-type"), Some("application/json"));
        let doc = done.json();
        assert_eq!(assert_status_document(&doc), job.id);
        assert_eq!(doc["status"], status);
        let result_path = format!("/jobs/{}/result", job.id);
        assert_eq!(doc["result"], result_path.as_str(), "{doc}");
        assert_eq!(doc["resourceLocation"], result_path.as_str(), "{doc}");
        match code {
            Some(code) => assert_eq!(doc["error"]["code"], code, "{doc}"),
            None => assert!(doc.get("error").is_none(), "{doc}"),
        }
        let result = client.get(&result_path).await;
        assert_eq!(result.status, result_status, "{status}: {result:?}");
    }
}

// ---------------------------------------------------------------------------
// Long polling
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_wait_in_query_is_400_problem() {
    let (_server, client) = start(AcceptedLayer::new()).await;
    let job = submit(&client, "/forever").await;
    for wait in ["abc", "-1", "", "1e3", "+1", "inf", "1.2.3"] {
        let path = format!("{}?wait={wait}", job.monitor);
        let started = Instant::now();
        let answer = client.get(&path).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "wait={wait:?} was waited for"
        );
        answer.assert_problem(StatusCode::BAD_REQUEST);
    }
    // In `Prefer` an invalid wait is ignored (RFC 7240): no wait, no
    // Preference-Applied.
    let started = Instant::now();
    let answer = client
        .send(Method::GET, &job.monitor, &[("prefer", "wait=abc")], Bytes::new())
        .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.header("preference-applied").is_none(), "{answer:?}");
    // A valid fraction is fine.
    let answer = client.get(&format!("{}?wait=0.1", job.monitor)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["status"], "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_job_is_pending_and_can_be_canceled_before_it_runs() {
    let (_server, client) = start(AcceptedLayer::new().max_running(1)).await;
    let busy = submit(&client, "/forever").await;
    poll_until(&client, &busy.monitor, |doc| doc["status"] == "running").await;

    let queued = submit(&client, "/sleep/10").await;
    let answer = client.get(&queued.monitor).await;
    assert_eq!(answer.status, StatusCode::OK);
    retry_after(&answer);
    let doc = answer.json();
    assert_eq!(assert_status_document(&doc), queued.id);
    assert_eq!(doc["status"], "pending", "{doc}");
    let result = client.get(&format!("/jobs/{}/result", queued.id)).await;
    result.assert_problem(StatusCode::NOT_FOUND);
    retry_after(&result);

    assert_eq!(client.delete(&queued.monitor).await.status, StatusCode::NO_CONTENT);
    assert_eq!(client.get(&queued.monitor).await.json()["status"], "canceled");
    client
        .get(&format!("/jobs/{}/result", queued.id))
        .await
        .assert_problem(StatusCode::CONFLICT);

    // Canceling the running job frees the runner for the next one.
    assert_eq!(client.delete(&busy.monitor).await.status, StatusCode::NO_CONTENT);
    let next = submit(&client, "/sleep/10").await;
    let done = client.until_done(&next.monitor).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(client.get(&done.location()).await.body, "slept 10 ms");
}

// ---------------------------------------------------------------------------
// Result route
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_not_ready_is_404_with_retry_after_and_monitor_link() {
    let (_server, client) = start(AcceptedLayer::new()).await;
    let job = submit(&client, "/forever").await;
    let result_path = format!("/jobs/{}/result", job.id);
    let answer = client.get(&result_path).await;
    let problem = answer.assert_problem(StatusCode::NOT_FOUND);
    assert!(problem["detail"].as_str().unwrap().contains("not ready"), "{problem}");
    retry_after(&answer);
    let link = answer.header("link").expect("a Link header");
    let expected = format!("</jobs/{}>", job.id);
    assert!(link.starts_with(&expected), "Link {link:?} names the monitor");
    let rel = link[expected.len()..]
        .split(';')
        .map(str::trim)
        .find(|p| p.starts_with("rel="))
        .unwrap_or_else(|| panic!("Link without rel: {link:?}"));
    assert!(rel == "rel=\"monitor\"" || rel == "rel=monitor", "{link:?}");
    // The linked monitor is the job's.
    assert_eq!(
        client.get(&format!("/jobs/{}", job.id)).await.json()["id"],
        job.id.as_str()
    );
    assert_head_mirrors_get(&client, &result_path, &answer).await;
}

// ---------------------------------------------------------------------------
// DELETE
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_cancels_a_running_job_and_signals_the_handler() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let cancellable = post(move |Extension(job): Extension<Job>| {
        let tx = tx.clone();
        async move {
            let watcher = job.clone();
            tokio::spawn(async move {
                watcher.cancelled().await;
                let _ = tx.send(watcher.id().to_string());
            });
            job.set_message("started");
            tokio::time::sleep(Duration::from_secs(3600)).await;
            "never"
        }
    });
    let app = routes().route("/cancellable", cancellable).layer(AcceptedLayer::new());
    let server = serve(app).await;
    let client = HttpClient::new(&server);

    let job = submit(&client, "/cancellable").await;
    poll_until(&client, &job.monitor, |doc| doc["message"] == "started").await;

    let deleted = client.delete(&job.monitor).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.body.is_empty());

    let canceled_id = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the handler's cancellation signal fired")
        .expect("a canceled job id");
    assert_eq!(canceled_id, job.id);

    let monitor = client.get(&job.monitor).await;
    assert_eq!(monitor.status, StatusCode::OK);
    assert!(
        monitor.header("retry-after").is_none(),
        "a canceled job needs no polling"
    );
    let doc = monitor.json();
    assert_eq!(assert_status_document(&doc), job.id);
    assert_eq!(doc["status"], "canceled");
    assert!(
        doc.get("result").is_none() && doc.get("result_status").is_none(),
        "{doc}"
    );
    assert_head_mirrors_get(&client, &job.monitor, &monitor).await;

    let result = client.get(&format!("/jobs/{}/result", job.id)).await;
    result.assert_problem(StatusCode::CONFLICT);

    // A long poll on it answers at once.
    let started = Instant::now();
    let polled = client.get(&format!("{}?wait=20", job.monitor)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(polled.json()["status"], "canceled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_forgets_a_finished_job_and_unknown_ids_are_404() {
    let layer = AcceptedLayer::new().claim_prefix(true);
    let store = layer.clone();
    let (_server, client) = start(layer).await;
    let job = submit(&client, "/sleep/10").await;
    assert_eq!(client.until_done(&job.monitor).await.status, StatusCode::SEE_OTHER);
    assert_eq!(store.job_store().len(), 1);

    let deleted = client.delete(&job.monitor).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.body.is_empty());
    assert_eq!(store.job_store().len(), 0, "the record is removed");

    client.get(&job.monitor).await.assert_problem(StatusCode::NOT_FOUND);
    client
        .get(&format!("/jobs/{}/result", job.id))
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    client.delete(&job.monitor).await.assert_problem(StatusCode::NOT_FOUND);
    client
        .delete(&format!("/jobs/{}", Uuid::new_v4()))
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    client
        .delete("/jobs/not-a-uuid")
        .await
        .assert_problem(StatusCode::NOT_FOUND);

    // A canceled job keeps its record until it expires: a second DELETE
    // (another client canceling it too) answers 204 and changes nothing.
    let canceled = submit(&client, "/forever").await;
    assert_eq!(client.delete(&canceled.monitor).await.status, StatusCode::NO_CONTENT);
    assert_eq!(client.get(&canceled.monitor).await.json()["status"], "canceled");
    assert_eq!(client.delete(&canceled.monitor).await.status, StatusCode::NO_CONTENT);
    assert_eq!(client.get(&canceled.monitor).await.json()["status"], "canceled");
    assert_eq!(store.job_store().len(), 1, "the canceled record is kept");
}

// ---------------------------------------------------------------------------
// Everything else
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_on_job_routes_get_405_with_allow() {
    let (_server, client) = start(AcceptedLayer::new()).await;
    let job = submit(&client, "/sleep/10").await;
    let result_path = format!("/jobs/{}/result", job.id);
    let cases = [
        (Method::POST, job.monitor.clone(), set(&["GET", "HEAD", "DELETE"])),
        (Method::PUT, job.monitor.clone(), set(&["GET", "HEAD", "DELETE"])),
        (Method::PATCH, job.monitor.clone(), set(&["GET", "HEAD", "DELETE"])),
        (Method::OPTIONS, job.monitor.clone(), set(&["GET", "HEAD", "DELETE"])),
        (Method::POST, result_path.clone(), set(&["GET", "HEAD"])),
        (Method::PUT, result_path.clone(), set(&["GET", "HEAD"])),
        (Method::DELETE, result_path.clone(), set(&["GET", "HEAD"])),
    ];
    for (method, path, allow) in cases {
        let answer = client.send(method.clone(), &path, &[], "{}").await;
        answer.assert_problem(StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(allowed(&answer), allow, "{method} {path}");
    }
    // None of these touched the job.
    let done = client.until_done(&job.monitor).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(client.get(&result_path).await.body, "slept 10 ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_jobs_without_an_owner_is_404() {
    let (_server, client) = start(AcceptedLayer::new()).await;
    let job = submit(&client, "/sleep/10").await;
    let answer = client.get("/jobs").await;
    let problem = answer.assert_problem(StatusCode::NOT_FOUND);
    let text = String::from_utf8_lossy(&answer.body);
    assert!(!text.contains(&job.id), "the listing leaks a job id: {problem}");
    let head = head(&client, "/jobs").await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    assert!(head.body.is_empty());
}

// ---------------------------------------------------------------------------
// Prefer at submission
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respond_async_only_defers_only_when_asked() {
    let layer = AcceptedLayer::new().respond_async_only();
    let store = layer.clone();
    let (_server, client) = start(layer).await;

    let answer = client.post("/sleep/100", Bytes::new()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "slept 100 ms");
    assert!(answer.header("location").is_none() && answer.header("preference-applied").is_none());
    assert_eq!(store.job_store().len(), 0, "no job for a synchronous answer");

    let answer = client
        .send(Method::POST, "/sleep/100", &[("prefer", "respond-async")], Bytes::new())
        .await;
    let job = assert_accepted(&answer);
    assert_eq!(answer.header("preference-applied"), Some("respond-async"));
    assert_eq!(store.job_store().len(), 1);
    let done = client.until_done(&job.monitor).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(client.get(&done.location()).await.body, "slept 100 ms");
}

// ---------------------------------------------------------------------------
// Deferral selection and the pre-acceptance check
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defer_if_passes_unselected_requests_through() {
    let layer = AcceptedLayer::new().defer_if(|parts| parts.method == Method::POST);
    let store = layer.clone();
    let app = Router::new()
        .route("/thing", get(|| async { "got it at once" }).post(echo))
        .layer(layer);
    let server = serve(app).await;
    let client = HttpClient::new(&server);

    let answer = client.get("/thing").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "got it at once");
    assert!(answer.header("location").is_none());
    // An unselected request for an unknown route gets the router's own 404.
    let missing = client.get("/missing").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(store.job_store().len(), 0);

    let job = assert_accepted(&client.post("/thing", "posted body").await);
    assert_eq!(store.job_store().len(), 1);
    let done = client.until_done(&job.monitor).await;
    let result = client.get(&done.location()).await;
    assert_eq!(result.body, "posted body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_a_request_before_any_job_exists() {
    let layer = AcceptedLayer::new().check(|parts, body| {
        if body.as_ref() == b"bad" {
            Err(Problem::new(StatusCode::BAD_REQUEST)
                .with_title("Invalid report request")
                .with_type("https://example.com/problems/invalid-report")
                .with_detail(format!("{} {} wants a good body", parts.method, parts.uri.path())))
        } else {
            Ok(())
        }
    });
    let store = layer.clone();
    let (_server, client) = start(layer).await;

    let answer = client.post("/echo", "bad").await;
    let problem = answer.assert_problem(StatusCode::BAD_REQUEST);
    assert_eq!(problem["title"], "Invalid report request");
    assert_eq!(problem["type"], "https://example.com/problems/invalid-report");
    assert_eq!(problem["detail"], "POST /echo wants a good body");
    assert!(answer.header("location").is_none());
    assert_eq!(store.job_store().len(), 0, "a refused request is no job");

    let job = assert_accepted(&client.post("/echo", "good").await);
    assert_eq!(store.job_store().len(), 1);
    let done = client.until_done(&job.monitor).await;
    assert_eq!(client.get(&done.location()).await.body, "good");
}

// ---------------------------------------------------------------------------
// Path templates
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_oh_two_layout_works_end_to_end() {
    let layer = AcceptedLayer::new()
        .monitor_path("/monitor/{id}")
        .result_path("/result/{id}")
        .completion(Completion::Created)
        .claim_prefix(true);
    let (_server, client) = start(layer).await;

    let answer = client.post("/sleep/600", Bytes::new()).await;
    let job = assert_accepted(&answer);
    assert_eq!(job.monitor, format!("/monitor/{}", job.id));
    assert_eq!(answer.header("location"), Some(job.monitor.as_str()));

    let pending = client.get(&job.monitor).await;
    assert_eq!(pending.status, StatusCode::OK);
    retry_after(&pending);
    assert!(matches!(pending.json()["status"].as_str(), Some("pending" | "running")));
    let result_path = format!("/result/{}", job.id);
    let not_ready = client.get(&result_path).await;
    not_ready.assert_problem(StatusCode::NOT_FOUND);
    assert!(
        not_ready
            .header("link")
            .unwrap_or_default()
            .contains(&format!("</monitor/{}>", job.id))
    );

    let done = client.until_done(&job.monitor).await;
    assert_eq!(done.status, StatusCode::CREATED);
    assert_eq!(done.header("location"), Some(result_path.as_str()));
    assert_eq!(done.json()["result"], result_path.as_str());

    let result = client.get(&done.location()).await;
    assert_eq!(result.status, StatusCode::OK);
    assert_eq!(result.body, "slept 600 ms");

    assert_eq!(client.delete(&job.monitor).await.status, StatusCode::NO_CONTENT);
    client.get(&job.monitor).await.assert_problem(StatusCode::NOT_FOUND);
    client
        .get("/monitor/not-a-uuid")
        .await
        .assert_problem(StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------
// axum integration
// ---------------------------------------------------------------------------

/// Drives one job through `app` and the external `/jobs/{id}` links.
async fn assert_full_round_trip(client: &HttpClient, submit_path: &str, body: &'static str) {
    let job = assert_accepted(&client.post(submit_path, body).await);
    assert_eq!(job.monitor, format!("/jobs/{}", job.id), "links are the external paths");
    let first = client.get(&job.monitor).await;
    assert_eq!(first.json()["id"], job.id.as_str());
    let done = client.until_done(&job.monitor).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let result_path = format!("/jobs/{}/result", job.id);
    assert_eq!(done.header("location"), Some(result_path.as_str()));
    assert_eq!(done.json()["result"], result_path.as_str());
    let result = client.get(&result_path).await;
    assert_eq!(result.status, StatusCode::OK);
    assert_eq!(result.body, body);
    assert_head_mirrors_get(client, &job.monitor, &done).await;

    // The other job routes answer through the same mount.
    client.get("/jobs").await.assert_problem(StatusCode::NOT_FOUND);
    client
        .get("/jobs/not-a-uuid")
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    client
        .get(&format!("/jobs/{}", Uuid::new_v4()))
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    let not_allowed = client.send(Method::PUT, &job.monitor, &[], Bytes::new()).await;
    not_allowed.assert_problem(StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(allowed(&not_allowed), set(&["GET", "HEAD", "DELETE"]));

    let running = assert_accepted(&client.post("/report/slow", Bytes::new()).await);
    assert_eq!(client.delete(&running.monitor).await.status, StatusCode::NO_CONTENT);
    assert_eq!(client.get(&running.monitor).await.json()["status"], "canceled");
    assert_eq!(client.delete(&job.monitor).await.status, StatusCode::NO_CONTENT);
    client.get(&job.monitor).await.assert_problem(StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_with_router_layer() {
    let app = Router::new()
        .route("/report", post(echo))
        .route("/report/slow", post(forever))
        // Under `Router::layer` a path no route matches reaches the layer
        // through the fallback: claimed, malformed ids get the layer's 404.
        .layer(AcceptedLayer::new().claim_prefix(true));
    let server = serve(app).await;
    let client = HttpClient::new(&server);
    assert_full_round_trip(&client, "/report", "router layer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_with_route_layer_and_nested_job_routes() {
    let layer = AcceptedLayer::new();
    let app = Router::new()
        .route("/report", post(echo))
        .route("/report/slow", post(forever))
        .route_layer(layer.clone())
        .nest_service("/jobs", layer.job_routes());
    let server = serve(app).await;
    let client = HttpClient::new(&server);
    assert_full_round_trip(&client, "/report", "route layer").await;
    // Unmatched paths never reach a route layer: no job for them.
    assert_eq!(
        client.post("/nowhere", Bytes::new()).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(layer.job_store().len(), 1, "only the canceled job is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_with_method_router_layer_and_nested_job_routes() {
    let layer = AcceptedLayer::new();
    let app = Router::new()
        .route("/report", post(echo).layer(layer.clone()).get(|| async { "plain get" }))
        .route("/report/slow", post(forever).layer(layer.clone()))
        .nest_service("/jobs", layer.job_routes());
    let server = serve(app).await;
    let client = HttpClient::new(&server);
    assert_full_round_trip(&client, "/report", "method router layer").await;
    // A method the layer was not applied to is answered as usual.
    let plain = client.get("/report").await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.body, "plain get");
    assert_eq!(layer.job_store().len(), 1, "only the canceled job is left");
}

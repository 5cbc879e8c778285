//! The demo application (`examples/demo/app.rs`) over real HTTP: what
//! `cargo run --example demo` serves is what these tests drive.

use crate::common;

use crate::demo_app as app;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tower_accepted::{AcceptedLayer, Completion};

use common::{Answer, HttpClient, Server, serve};

/// The demo served with `completion`; the layer is returned too, to look
/// into its job store.
pub(crate) async fn demo(completion: Completion) -> (Server, HttpClient, AcceptedLayer) {
    let layer = app::layer(completion);
    let server = serve(app::app(layer.clone())).await;
    let client = HttpClient::new(&server);
    (server, client, layer)
}

fn json_body(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap())
}

/// POSTs `body` to `path` as JSON and asserts a well-formed `202 Accepted`.
async fn submit(client: &HttpClient, path: &str, body: impl Into<Bytes>) -> Answer {
    let answer = client
        .send(Method::POST, path, &[("content-type", "application/json")], body)
        .await;
    assert_accepted(&answer);
    answer
}

/// Asserts a `202 Accepted` as DESIGN.md §2 describes it.
fn assert_accepted(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::ACCEPTED, "body: {:?}", answer.body);
    let location = answer.location();
    assert!(location.starts_with("/jobs/"), "Location {location}");
    assert_eq!(answer.header("operation-location"), answer.header("location"));
    let retry: u64 = answer
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!(retry >= 1);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let doc = answer.json();
    assert_eq!(format!("/jobs/{}", doc["id"].as_str().unwrap()), location);
    assert!(matches!(doc["status"].as_str(), Some("pending" | "running")), "{doc}");
}

/// A client that knows RFC 9110 and nothing of this crate: it submits,
/// polls the 202's `Location` for as long as answers carry `Retry-After`
/// (sleeping that long), follows a `303`/`201` to the result, and returns
/// the final answer with the number of polls it made.
async fn rfc9110_fetch(client: &HttpClient, path: &str, body: Bytes) -> (Answer, usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answer = client
        .send(Method::POST, path, &[("content-type", "application/json")], body)
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "body: {:?}", answer.body);
    let monitor = answer.location();
    let mut polls = 0;
    loop {
        match answer.status {
            StatusCode::SEE_OTHER | StatusCode::CREATED => return (client.get(&answer.location()).await, polls),
            StatusCode::ACCEPTED | StatusCode::OK if answer.headers.contains_key("retry-after") => {
                let secs: u64 = answer
                    .header("retry-after")
                    .unwrap()
                    .parse()
                    .expect("Retry-After in seconds");
                assert!((1..=10).contains(&secs), "Retry-After {secs} out of the demo's bounds");
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(
                    !left.is_zero(),
                    "the job did not end within 20 s; last answer {} {:?}",
                    answer.status,
                    answer.body
                );
                tokio::time::sleep(Duration::from_secs(secs).min(left)).await;
                polls += 1;
                answer = client.get(&monitor).await;
            }
            _ => return (answer, polls),
        }
    }
}

#[tokio::test]
async fn an_rfc_9110_client_gets_the_report() {
    let (_server, client, layer) = demo(Completion::SeeOther).await;
    let started = Instant::now();
    let (answer, polls) = rfc9110_fetch(&client, "/reports", json_body(&json!({ "pages": 3 }))).await;
    assert_eq!(answer.status, StatusCode::OK, "body: {:?}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let report = answer.json();
    assert_eq!(report["pages"], 3);
    assert_eq!(report["words"], 3 * 350);
    assert!(report["report"].is_string());
    assert!(polls >= 1, "a 900 ms report is not done at once");
    // Three pages of 300 ms, polled every second or so.
    assert!(started.elapsed() >= app::PAGE * 3);
    assert_eq!(layer.job_store().len(), 1);
}

#[tokio::test]
async fn progress_and_message_show_while_running() {
    let (_server, client, _layer) = demo(Completion::SeeOther).await;
    let accepted = submit(&client, "/reports", json_body(&json!({ "pages": 5 }))).await;
    let monitor = accepted.location();

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "no progress seen within 10 s: {seen:?}");
        let answer = client.get(&monitor).await;
        let doc = answer.json();
        match doc["status"].as_str() {
            Some("running") => {
                assert_eq!(answer.status, StatusCode::OK);
                assert!(answer.header("retry-after").is_some(), "Retry-After while running");
                if let (Some(progress), Some(message)) = (doc["progress"].as_f64(), doc["message"].as_str()) {
                    seen.push((progress, message.to_owned()));
                    if progress > 0.0 && progress < 1.0 {
                        break;
                    }
                }
            }
            Some("pending") => {}
            other => panic!("the job ended before any progress was seen: {other:?} {doc}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (progress, message) = seen.last().unwrap();
    assert!(*progress > 0.0 && *progress < 1.0, "{progress}");
    let page: u64 = message
        .strip_prefix("rendering page ")
        .and_then(|rest| rest.strip_suffix(" of 5"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected message {message:?}"));
    assert!((1..=5).contains(&page), "{message}");

    let done = client.until_done(&monitor).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let doc = done.json();
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(doc["progress"], 1.0);
    assert_eq!(doc["message"], "rendering page 5 of 5");
    let result = client.get(&done.location()).await;
    assert_eq!(result.status, StatusCode::OK);
    assert_eq!(result.json()["pages"], 5);
}

#[tokio::test]
async fn invalid_report_requests_are_refused_without_a_job() {
    let (_server, client, layer) = demo(Completion::SeeOther).await;
    let cases: [(&str, Bytes, &str); 5] = [
        ("not JSON", Bytes::from_static(b"{\"pages\": "), "not JSON"),
        ("zero pages", json_body(&json!({ "pages": 0 })), "`pages`"),
        ("too many pages", json_body(&json!({ "pages": 101 })), "`pages`"),
        ("pages as text", json_body(&json!({ "pages": "3" })), "`pages`"),
        ("negative pages", json_body(&json!({ "pages": -1 })), "`pages`"),
    ];
    for (what, body, detail) in cases {
        let answer = client
            .send(Method::POST, "/reports", &[("content-type", "application/json")], body)
            .await;
        let doc = answer.assert_problem(StatusCode::BAD_REQUEST);
        assert!(doc["detail"].as_str().unwrap().contains(detail), "{what}: {doc}");
        assert_eq!(answer.header("location"), None, "{what}");
        assert_eq!(answer.header("operation-location"), None, "{what}");
    }
    assert_eq!(layer.job_store().len(), 0, "no job was created");

    // A valid one does create a job: the count above means something.
    submit(&client, "/reports", json_body(&json!({ "pages": 1 }))).await;
    assert_eq!(layer.job_store().len(), 1);
}

#[tokio::test]
async fn echo_replays_body_content_type_and_length() {
    let (_server, client, _layer) = demo(Completion::SeeOther).await;
    let body: Bytes = (0..20_000u32).map(|i| (i * 7 % 256) as u8).collect::<Vec<u8>>().into();
    let content_type = "application/x-demo-binary; charset=binary";
    let accepted = client
        .send(
            Method::POST,
            "/echo?delay_ms=50",
            &[("content-type", content_type)],
            body.clone(),
        )
        .await;
    assert_accepted(&accepted);

    let done = client.until_done(&accepted.location()).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let doc = done.json();
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(doc["result_status"], 200);
    assert_eq!(done.location(), doc["result"].as_str().unwrap());

    let result = client.get(&done.location()).await;
    assert_eq!(result.status, StatusCode::OK);
    assert_eq!(result.header("content-type"), Some(content_type));
    assert_eq!(result.header("x-echo-len"), Some("20000"));
    assert_eq!(result.body.len(), body.len());
    assert!(result.body == body, "the body came back changed");

    // The result can be fetched again, the same.
    let again = client.get(&done.location()).await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(again.body == body);
}

#[tokio::test]
async fn a_panicking_handler_fails_its_job_and_the_server_goes_on() {
    let (_server, client, _layer) = demo(Completion::SeeOther).await;
    for _ in 0..2 {
        let accepted = submit(&client, "/fail?mode=panic&delay_ms=10", Bytes::new()).await;
        let done = client.until_done(&accepted.location()).await;
        assert_eq!(done.status, StatusCode::OK, "no result to be sent to");
        assert_eq!(done.header("location"), None);
        let doc = done.json();
        assert_eq!(doc["status"], "failed");
        assert_eq!(doc["error"]["code"], "panicked");
        assert!(doc.get("result_status").is_none(), "{doc}");
        let message = doc["error"]["message"].as_str().unwrap();
        assert!(!message.contains("on purpose"), "the panic payload leaked: {message}");

        let result = client.get(&format!("{}/result", accepted.location())).await;
        let problem = result.assert_problem(StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(problem["code"], "panicked");
    }

    // The server still serves, and still runs jobs.
    let accepted = client
        .send(
            Method::POST,
            "/echo?delay_ms=0",
            &[("content-type", "text/plain")],
            "still here",
        )
        .await;
    assert_accepted(&accepted);
    let done = client.until_done(&accepted.location()).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let result = client.get(&done.location()).await;
    assert_eq!(result.status, StatusCode::OK);
    assert_eq!(result.body, "still here");
}

#[tokio::test]
async fn an_error_status_fails_the_job_and_is_replayed() {
    let (_server, client, _layer) = demo(Completion::SeeOther).await;
    let accepted = submit(&client, "/fail?mode=status&delay_ms=10", Bytes::new()).await;
    let done = client.until_done(&accepted.location()).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "a stored response is led to");
    let doc = done.json();
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["error"]["code"], "http_status");
    assert_eq!(doc["result_status"], 500);
    assert_eq!(done.location(), format!("{}/result", accepted.location()));

    let result = client.get(&done.location()).await;
    assert_eq!(result.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(result.header("content-type"), Some("application/json"));
    assert_eq!(
        result.json(),
        json!({ "error": "the demo's /fail endpoint fails on purpose" })
    );
}

/// Drives a one-page report to its result with the completion style's own
/// rules; returns the result and the job's id.
async fn drive(client: &HttpClient, completion: Completion) -> (Answer, String) {
    let accepted = submit(client, "/reports", json_body(&json!({ "pages": 1 }))).await;
    let monitor = accepted.location();
    let id = accepted.json()["id"].as_str().unwrap().to_owned();
    let done = client.until_done(&monitor).await;
    let doc = done.json();
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(doc["result_status"], 200);
    let result_link = format!("{monitor}/result");
    assert_eq!(doc["result"], result_link.as_str());
    let next = match completion {
        Completion::SeeOther => {
            assert_eq!(done.status, StatusCode::SEE_OTHER);
            assert!(doc.get("resourceLocation").is_none(), "{doc}");
            done.location()
        }
        Completion::Created => {
            assert_eq!(done.status, StatusCode::CREATED);
            assert!(doc.get("resourceLocation").is_none(), "{doc}");
            done.location()
        }
        Completion::Ok => {
            assert_eq!(done.status, StatusCode::OK);
            assert_eq!(done.header("location"), None);
            doc["resourceLocation"].as_str().expect("resourceLocation").to_owned()
        }
        other => panic!("a completion style this test does not know: {other:?}"),
    };
    assert_eq!(next, result_link);
    (client.get(&next).await, id)
}

#[tokio::test]
async fn every_completion_style_leads_to_the_same_result() {
    let mut results = Vec::new();
    for completion in [Completion::SeeOther, Completion::Created, Completion::Ok] {
        let (_server, client, _layer) = demo(completion).await;
        let (result, id) = drive(&client, completion).await;
        assert_eq!(result.status, StatusCode::OK, "{completion:?}");
        assert_eq!(result.header("content-type"), Some("application/json"));
        let mut report = result.json();
        assert_eq!(
            report["report"],
            id.as_str(),
            "{completion:?}: the report names its job"
        );
        report.as_object_mut().unwrap().remove("report");
        results.push(report);
    }
    assert_eq!(results[0], json!({ "pages": 1, "words": 350 }));
    assert_eq!(results[1], results[0]);
    assert_eq!(results[2], results[0]);
}

#[tokio::test]
async fn an_rfc_9110_client_also_drives_the_created_style() {
    let (_server, client, _layer) = demo(Completion::Created).await;
    let (answer, _) = rfc9110_fetch(&client, "/reports", json_body(&json!({ "pages": 1 }))).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["pages"], 1);
}

#[tokio::test]
async fn get_is_not_deferred() {
    let (_server, client, layer) = demo(Completion::SeeOther).await;
    for path in ["/reports", "/echo", "/fail"] {
        let answer = client.get(path).await;
        assert_eq!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{path}: {:?}",
            answer.body
        );
        assert_ne!(answer.status, StatusCode::ACCEPTED);
        assert_eq!(answer.header("location"), None);
        assert_eq!(answer.header("allow"), Some("POST"), "axum's own 405");
    }
    let unknown = client.get("/nowhere").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(layer.job_store().len(), 0);
}

#[tokio::test]
async fn prefer_wait_returns_the_response_itself() {
    let (_server, client, layer) = demo(Completion::SeeOther).await;
    let answer = client
        .send(
            Method::POST,
            "/echo?delay_ms=50",
            &[("prefer", "wait=5"), ("content-type", "text/plain")],
            "hello",
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "done in time: the response itself");
    assert_eq!(answer.header("preference-applied"), Some("wait=5"));
    assert_eq!(answer.header("location"), None);
    assert_eq!(answer.header("content-type"), Some("text/plain"));
    assert_eq!(answer.header("x-echo-len"), Some("5"));
    assert_eq!(answer.body, "hello");
    assert_eq!(
        layer.job_store().len(),
        0,
        "answered directly without a key: its id was never given out, so it is not kept"
    );

    // With an Idempotency-Key it is kept, for the key's retries: the same
    // response again, and the handler did not run twice.
    let keyed = [
        ("prefer", "wait=5"),
        ("content-type", "text/plain"),
        ("idempotency-key", "k-1"),
    ];
    let first = client.send(Method::POST, "/echo?delay_ms=50", &keyed, "again").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(layer.job_store().len(), 1, "kept for its key");
    let retry = client.send(Method::POST, "/echo?delay_ms=50", &keyed, "again").await;
    // The original job's 202, whose document says it already succeeded.
    assert_eq!(retry.status, StatusCode::ACCEPTED);
    assert_eq!(retry.json()["status"], "succeeded");
    let done = client.until_done(&retry.location()).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(layer.job_store().len(), 1, "the retry found the kept job");

    // Not done in time: a 202 after the wait.
    let started = Instant::now();
    let answer = client
        .send(Method::POST, "/echo?delay_ms=3000", &[("prefer", "wait=1")], "slow")
        .await;
    assert_accepted(&answer);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

// DESIGN.md §2 "The demo's configuration": the demo switches on
// `Idempotency-Key` and an owner function taken from `Authorization`.

#[tokio::test]
async fn idempotency_key_returns_the_original_job() {
    let (_server, client, layer) = demo(Completion::SeeOther).await;
    let body = json_body(&json!({ "pages": 1 }));
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", "\"order-42\""),
    ];
    let first = client.send(Method::POST, "/reports", &headers, body.clone()).await;
    assert_accepted(&first);
    let second = client.send(Method::POST, "/reports", &headers, body).await;
    assert_accepted(&second);
    assert_eq!(
        second.location(),
        first.location(),
        "a repeated key returns the original job"
    );
    assert_eq!(layer.job_store().len(), 1, "one job for one key");

    let other = client
        .send(Method::POST, "/reports", &headers, json_body(&json!({ "pages": 2 })))
        .await;
    other.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_bearer_lists_its_own_jobs() {
    let (_server, client, _layer) = demo(Completion::SeeOther).await;
    let auth = [("content-type", "application/json"), ("authorization", "Bearer alice")];
    let accepted = client
        .send(Method::POST, "/reports", &auth, json_body(&json!({ "pages": 1 })))
        .await;
    assert_accepted(&accepted);
    let id = accepted.json()["id"].as_str().unwrap().to_owned();

    let list = client.send(Method::GET, "/jobs", &auth[1..], Bytes::new()).await;
    assert_eq!(list.status, StatusCode::OK, "body: {:?}", list.body);
    let doc = list.json();
    let ids: Vec<&str> = doc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    assert_eq!(doc["next"], Value::Null);

    let anonymous = client.get("/jobs").await;
    anonymous.assert_problem(StatusCode::NOT_FOUND);
}

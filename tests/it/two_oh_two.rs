//! The two-oh-two example follows the original's documented flow, step by
//! step, over real HTTP: `GET /deferredjob` → `GET /monitor/{id}` (200, then
//! 201 + Location) → `GET /result/{id}`; its timing (done exactly 2 s after
//! the acceptance) is tested on the paused clock, in process.

use crate::common;

#[path = "../../examples/two_oh_two.rs"]
#[allow(dead_code)]
mod example;

use std::time::{Duration, Instant};

use http::StatusCode;

#[tokio::test]
async fn the_original_flow_step_by_step() {
    let server = common::serve(example::app()).await;
    let client = common::HttpClient::new(&server);

    // 1-2. client: GET /deferredjob; server: 202, location: /monitor/:job_id.
    let started = Instant::now();
    let accepted = client.get("/deferredjob").await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let monitor = accepted.location();
    let job_id = accepted.json()["job_id"]
        .as_str()
        .expect("a job_id in the body")
        .to_owned();
    assert_eq!(monitor, format!("/monitor/{job_id}"));

    // 3-4. client: GET /monitor/:job_id until 201; 200 means not complete.
    let mut polls = 0;
    let done = loop {
        let answer = client.get(&monitor).await;
        polls += 1;
        match answer.status {
            StatusCode::OK => {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "the 2 s job never finished"
                );
                let seconds: u64 = answer.header("retry-after").unwrap().parse().unwrap();
                assert!(seconds >= 1);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            StatusCode::CREATED => break answer,
            other => panic!("unexpected {other} from the monitor: {:?}", answer.body),
        }
    };
    assert!(
        polls > 1,
        "the job takes 2 s, so the monitor answered 200 at least once"
    );

    // 5. client: GET /result/:job_id, found in the Location header.
    let result_path = done.location();
    assert_eq!(result_path, format!("/result/{job_id}"));
    let result = client.get(&result_path).await;
    assert_eq!(result.status, StatusCode::OK);
    assert_eq!(
        result.json(),
        serde_json::json!({ "result": format!("Result of long-running process {job_id}.") })
    );
}

/// The original's promise, timed: a job of 2 s is done 2 s after its
/// acceptance, so a client that looks at the monitor at once and again
/// exactly 2 s after that first look finds it done; a millisecond earlier,
/// it is still running. On tokio's paused clock, in process: the first look
/// comes at the very instant of the acceptance, the clock moves only as the
/// test moves it, and the claim holds to the millisecond on any machine.
///
/// The clock is moved by hand (`advance`): the example waits out the last
/// millisecond before its deadline by yielding (tokio's timer would round
/// the deadline up to its next millisecond), and a task that yields keeps
/// the paused clock from moving by itself.
#[tokio::test(start_paused = true)]
async fn a_look_exactly_two_seconds_after_the_first_finds_the_job_done() {
    use common::oneshot::call;
    use http::Method;
    use tokio::time::Instant;

    let app = example::app();
    let submitted = Instant::now();
    let (accepted, _) = call(&app, Method::GET, "/deferredjob", &[]).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{accepted:?}");
    let monitor = accepted.location();
    let job_id = accepted.json()["job_id"].as_str().expect("a job_id").to_owned();

    let (first, _) = call(&app, Method::GET, &monitor, &[]).await;
    let first_look = Instant::now();
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    assert_eq!(first_look, submitted, "the first look came at the acceptance");

    // A millisecond before the 2 s, the job still runs.
    tokio::time::advance(Duration::from_millis(1999)).await;
    let (early, _) = call(&app, Method::GET, &monitor, &[]).await;
    assert_eq!(early.status, StatusCode::OK, "1 ms before the 2 s: {early:?}");
    assert_eq!(first_look.elapsed(), Duration::from_millis(1999));

    // At the 2 s, it ends: a long poll from there answers at once, with the
    // clock exactly 2 s after the first look.
    tokio::time::advance(Duration::from_millis(1)).await;
    let (second, _) = call(&app, Method::GET, &format!("{monitor}?wait=5"), &[]).await;
    assert_eq!(
        first_look.elapsed(),
        Duration::from_secs(2),
        "the job ended at {:?}, not at the 2 s",
        first_look.elapsed()
    );
    assert_eq!(
        second.status,
        StatusCode::CREATED,
        "2 s after the first look: {second:?}"
    );
    assert_eq!(second.location(), format!("/result/{job_id}"));
}

//! The two-oh-two example follows the original's documented flow, step by
//! step, over real HTTP: `GET /deferredjob` → `GET /monitor/{id}` (200, then
//! 201 + Location) → `GET /result/{id}`.

mod common;

#[path = "../examples/two_oh_two.rs"]
#[allow(dead_code)]
mod two_oh_two;

use std::time::{Duration, Instant};

use http::StatusCode;

#[tokio::test]
async fn the_original_flow_step_by_step() {
    let server = common::serve(two_oh_two::app()).await;
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
    assert!(started.elapsed() >= Duration::from_secs(2), "the job took its 2 s");

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

//! The two-oh-two example follows the original's documented flow, step by
//! step, over real HTTP: `GET /deferredjob` → `GET /monitor/{id}` (200, then
//! 201 + Location) → `GET /result/{id}`.

use crate::common;

#[path = "../../examples/two_oh_two.rs"]
#[allow(dead_code, clippy::module_inception)]
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

/// The original's promise, timed: a job of 2 s is done 2 s after its
/// acceptance, so a client that looks at the monitor at once and again
/// exactly 2 s after that first look (which came after the acceptance)
/// finds it done, every time. Over real HTTP, on the real clock.
///
/// 50 runs, under way together but started 20 ms apart, so that each meets
/// an idle server as a lone client does: its first look comes one round
/// trip (under a millisecond) after the acceptance, the margin that a job
/// ending late, even by tokio's rounding of a deadline to its next
/// millisecond, does not have. (Runs that all start at once queue behind one
/// another, their first looks come tens of milliseconds after their
/// acceptance, and nothing could fail.) About 3 s in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_look_exactly_two_seconds_after_the_first_finds_the_job_done() {
    const RUNS: u32 = 50;
    const APART: Duration = Duration::from_millis(20);
    let server = ServerApart::start();
    let client = common::HttpClient::new(&server.server);
    let start = tokio::time::Instant::now();
    let runs: Vec<_> = (0..RUNS)
        .map(|run| {
            let client = client.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(start + APART * run).await;
                look_twice(&client).await.map_err(|e| format!("run {run}: {e}"))
            })
        })
        .collect();
    let mut failures = Vec::new();
    for (run, outcome) in runs.into_iter().enumerate() {
        match outcome.await {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => failures.push(failure),
            Err(panicked) => failures.push(format!("run {run}: {panicked}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {RUNS} runs did not find the job done 2 s after their first look:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The example served on a runtime of its own, as by a process of its own:
/// with its own timer, whose millisecond ticks do not line up with the
/// client's, so that the client's timer may fire before the server's as it
/// may against a real server. (On the client's runtime, the two deadlines
/// would be rounded to the same ticks, and the job's, the earlier, would
/// always fire first or with the client's.)
struct ServerApart {
    server: common::Server,
    runtime: Option<tokio::runtime::Runtime>,
}

impl ServerApart {
    fn start() -> Self {
        // Built on a thread of its own: a runtime cannot be started from
        // within another's task.
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the server");
            let server = runtime.block_on(common::serve(two_oh_two::app()));
            Self {
                server,
                runtime: Some(runtime),
            }
        })
        .join()
        .expect("the server started")
    }
}

impl Drop for ServerApart {
    fn drop(&mut self) {
        // Without waiting: dropped within the client's runtime, where a
        // runtime may not block to shut down.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One client of the original: submits, looks at the monitor at once, then
/// again exactly 2 s after that first answer arrived.
async fn look_twice(client: &common::HttpClient) -> Result<(), String> {
    let accepted = client.get("/deferredjob").await;
    if accepted.status != StatusCode::ACCEPTED {
        return Err(format!("/deferredjob answered {}, not 202", accepted.status));
    }
    let monitor = accepted.location();
    let job_id = accepted.json()["job_id"].as_str().unwrap_or_default().to_owned();

    let first = client.get(&monitor).await;
    let first_look = tokio::time::Instant::now();
    if first.status != StatusCode::OK {
        return Err(format!("the first look answered {}, not 200", first.status));
    }

    let again = first_look + Duration::from_secs(2);
    tokio::time::sleep_until(again).await;
    let late = again.elapsed();
    let second = client.get(&monitor).await;
    if second.status != StatusCode::CREATED {
        return Err(format!(
            "the look 2 s after the first (sent {late:?} after the 2 s) answered {}, not 201: {}",
            second.status,
            String::from_utf8_lossy(&second.body)
        ));
    }
    let result = second.location();
    if result != format!("/result/{job_id}") {
        return Err(format!("201 with Location {result:?}, not /result/{job_id}"));
    }
    Ok(())
}
